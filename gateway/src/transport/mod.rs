//! The transports: how bytes carrying MQTT reach a connection and leave it. A transport is a
//! thin adapter (TCP in [`tcp`], WebSocket messages in [`ws`]) behind the [`Transport`] trait;
//! every MQTT rule that does not need the broker's state (CONNECT first, the connect and write
//! timeouts, decoding, backpressure) lives once, in [`crate::connection`], for all of them.
//!
//! Invariants each adapter keeps: `read` is cancel safe (the connection task races it against
//! its outbox in a `select!`); `write` takes a whole batch and keeps its frames in order; neither
//! keeps a buffer between calls that an idle connection would pay for. Accepting connections is
//! not a transport's business either: see [`crate::listeners`] and [`crate::http`].

pub(crate) mod tcp;
pub(crate) mod ws;

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::io;

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
}
