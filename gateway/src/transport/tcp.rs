//! MQTT over plain TCP: the [`Transport`] adapter over `TcpStream`. Its reads keep no buffer
//! while the socket is idle and its writes batch small frames into one syscall; the accept loop
//! is in [`crate::listeners`].

use super::{Transport, write_coalesced};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// A TCP connection carrying MQTT.
#[derive(Debug)]
pub(crate) struct TcpTransport {
    stream: TcpStream,
}

impl TcpTransport {
    /// Wraps an accepted stream.
    pub(crate) fn new(stream: TcpStream) -> Self {
        TcpTransport { stream }
    }
}

impl Transport for TcpTransport {
    // Not `async fn`s: those store their arguments twice, and these futures are part of every
    // connection's task (see the `connection` module).
    #[allow(clippy::manual_async_fn)]
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send {
        async move {
            loop {
                // Wait for readiness before reserving, so an idle connection holds no read
                // buffer. `poll_read_ready` keeps the waker in the socket's registration, where
                // `readable()` would keep a waiter in this future.
                poll_fn(|cx| self.stream.poll_read_ready(cx)).await?;
                // The first read after a quiet spell gets a small buffer: most are one small
                // packet (CONNECT, a PINGREQ, a sensor reading), and thousands of connections
                // each touching 8 KiB leave the heap fragmented long after the buffers are
                // freed. A read that leaves a partial packet behind grows it to 8 KiB.
                if buf.capacity() == 0 {
                    buf.reserve(512);
                } else if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(8 * 1024);
                }
                let spare = buf.capacity() - buf.len();
                // A short read empties the socket: its cached readiness is then forgotten at
                // once, rather than learnt from one more read that fails, which would sit
                // between this message and its delivery. The read runs inside `try_io` so the
                // readiness cleared is the one seen before it: data arriving after the read
                // is a newer event and keeps the socket ready.
                let mut short_read = None;
                let result = self.stream.try_io(Interest::READABLE, || {
                    let count = self.stream.try_read_buf(buf)?;
                    if count > 0 && count < spare {
                        short_read = Some(count);
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(count)
                });
                if let Some(count) = short_read {
                    return Ok(count);
                }
                match result {
                    Ok(count) => return Ok(count),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        // After a read that filled the buffer (or a short one whose readiness
                        // a newer event kept), the wait above answers at once and this read
                        // finds the socket empty. Keeping the buffer reserved for it would pin
                        // it on every idle connection.
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    }

    fn write(&mut self, frames: VecDeque<Bytes>) -> impl Future<Output = io::Result<usize>> + Send {
        write_coalesced(&mut self.stream, frames)
    }

    async fn close(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    const PARKABLE: bool = true;

    fn into_std(self) -> io::Result<std::net::TcpStream> {
        self.stream.into_std()
    }
}
