//! MQTT over plain TCP: the accept loop and the [`Transport`] adapter over `TcpStream`.

use crate::connection::{self, ConnectionContext, Transport};
use crate::listeners::ConnectionLimiter;
use broker_core::{ConnectionInfo, Transport as TransportKind};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// A TCP connection carrying MQTT.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
}

impl TcpTransport {
    /// Wraps an accepted stream.
    pub fn new(stream: TcpStream) -> Self {
        TcpTransport { stream }
    }
}

impl Transport for TcpTransport {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // Wait for readiness before reserving, so an idle connection holds no read buffer.
            self.stream.readable().await?;
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8 * 1024);
            }
            match self.stream.try_read_buf(buf) {
                Ok(count) => return Ok(count),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    // Readiness is cached until a read fails, so after every burst `readable`
                    // answers at once and only this read finds the socket empty. Keeping the
                    // buffer reserved for it would pin 8 KiB on every idle connection.
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn write(&mut self, mut frames: VecDeque<Bytes>) -> io::Result<usize> {
        let total: usize = frames.iter().map(Bytes::len).sum();
        if frames.len() == 1 {
            let frame = frames.pop_front().expect("one frame");
            self.stream.write_all(&frame).await?;
            return Ok(total);
        }
        // Many small packets: one copy into a contiguous buffer beats one syscall each.
        let mut batch = BytesMut::with_capacity(total.min(256 * 1024));
        while let Some(mut frame) = frames.pop_front() {
            if batch.len() + frame.len() > batch.capacity() && !batch.is_empty() {
                self.stream.write_all(&batch).await?;
                batch.clear();
            }
            if frame.len() >= batch.capacity() {
                while frame.has_remaining() {
                    let written = self.stream.write(&frame).await?;
                    if written == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    frame.advance(written);
                }
            } else {
                batch.extend_from_slice(&frame);
            }
        }
        if !batch.is_empty() {
            self.stream.write_all(&batch).await?;
        }
        Ok(total)
    }

    async fn close(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

/// Accepts connections on `listener` until `shutdown` is cancelled.
pub async fn accept_loop(
    listener: TcpListener,
    context: ConnectionContext,
    limiter: ConnectionLimiter,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limiter.try_acquire(&peer.to_string()) else {
            continue;
        };
        // Small MQTT packets must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let context = context.clone();
        let connection = limiter.next_id();
        tracker.spawn(async move {
            let info = ConnectionInfo {
                transport: TransportKind::Tcp,
                remote_address: peer.to_string(),
            };
            connection::run(TcpTransport::new(stream), connection, info, context).await;
            drop(permit);
        });
    }
}
