//! The transports: how bytes carrying MQTT reach a connection and leave it. A transport is a
//! thin adapter (TCP in [`tcp`], TLS over TCP in [`tls`], WebSocket messages in [`ws`]) behind
//! the [`Transport`] trait; every MQTT rule that does not need the broker's state (CONNECT
//! first, the connect and write timeouts, decoding, backpressure) lives once, in
//! [`crate::connection`], for all of them. [`write_coalesced`] is the batching of writes that
//! the byte-stream transports share.
//!
//! Invariants each adapter keeps: `read` is cancel safe (the connection task races it against
//! its outbox in a `select!`); `write` takes a whole batch and keeps its frames in order; neither
//! keeps a buffer between calls that an idle connection would pay for. Accepting connections is
//! not a transport's business either: see [`crate::listeners`] and [`crate::http`].

pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod ws;

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A byte stream carrying MQTT packets (TCP, TLS, WebSocket...).
pub(crate) trait Transport: Send {
    /// Waits until bytes arrive and appends them to `buf`, returning how many; `Ok(0)` at the
    /// end of the stream. Must be cancel safe: dropping the future loses no data.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes every frame, in order, as one batch (one WebSocket message, one TCP write where
    /// possible), returning the number of bytes written.
    fn write(&mut self, frames: VecDeque<Bytes>) -> impl Future<Output = io::Result<usize>> + Send;

    /// Flushes and closes the stream.
    fn close(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// The Common Name of the client certificate the TLS handshake verified, if any.
    fn certificate_name(&self) -> Option<String> {
        None
    }

    /// Whether a quiet connection over this transport can park its socket (see
    /// [`crate::parking`]): plain TCP only, whose state between packets is the socket alone.
    const PARKABLE: bool = false;

    /// The socket, taken off tokio's reactor, for parking; only called where `PARKABLE`.
    fn into_std(self) -> io::Result<std::net::TcpStream>
    where
        Self: Sized,
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot park",
        ))
    }
}

/// Writes `frames` in order to a byte stream, copying runs of small frames into one buffer so
/// that many small packets take one write (one syscall; over TLS, one record) rather than one
/// each. Returns the number of bytes written. Does not flush.
// Not an `async fn`: those store their arguments twice, and this future is part of every
// connection's write.
#[allow(clippy::manual_async_fn)]
pub(crate) fn write_coalesced<W: AsyncWrite + Unpin + Send>(
    stream: &mut W,
    mut frames: VecDeque<Bytes>,
) -> impl Future<Output = io::Result<usize>> + Send {
    async move {
        let total: usize = frames.iter().map(Bytes::len).sum();
        // Frames are written from where they are in `frames` rather than moved out of it,
        // which keeps this future small.
        if frames.len() == 1 {
            stream.write_all(&frames[0]).await?;
            return Ok(total);
        }
        // Many small packets: one copy into a contiguous buffer beats one write each.
        let mut batch = BytesMut::with_capacity(total.min(256 * 1024));
        while let Some(frame) = frames.front() {
            if batch.len() + frame.len() > batch.capacity() && !batch.is_empty() {
                stream.write_all(&batch).await?;
                batch.clear();
                continue;
            }
            if frame.len() >= batch.capacity() {
                stream.write_all(frame).await?;
            } else {
                batch.extend_from_slice(frame);
            }
            frames.pop_front();
        }
        if !batch.is_empty() {
            stream.write_all(&batch).await?;
        }
        Ok(total)
    }
}
