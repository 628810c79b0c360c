//! MQTT over WebSocket, past the upgrade: the [`Transport`] adapter that turns binary messages
//! into a byte stream and back, generic over any `Stream + Sink` of messages (axum's `WebSocket`
//! in the gateway, a fake in tests). The upgrade itself (origin, subprotocol, limits) is
//! `http::upgrade`'s.
//!
//! A packet may span several messages and a message may hold several packets, because the bytes
//! are simply appended to the read buffer. A text message is a protocol error: the connection is
//! closed with code 1003. Pings are answered by the WebSocket library itself.
//!
//! Read errors keep the distinction the connection task logs by: the peer breaking the WebSocket
//! protocol (bad framing, a message beyond the size limit, a text message) is
//! [`io::ErrorKind::InvalidData`]; a socket that fails keeps its own kind; a peer that closes
//! the TCP connection without the closing handshake has merely gone, like a TCP client without
//! DISCONNECT, and reads as the end of the stream.
//!
//! Writes coalesce: everything the broker queued for the connection since the last write leaves
//! as one binary message, since a browser pays per message rather than per byte. A message is
//! bounded by [`COALESCE_LIMIT`] bytes and never splits a packet; a lone packet goes out without a
//! copy and without waiting for company. Like every transport's, a write is bounded by the
//! connection task's write timeout, not here.

use super::Transport;
use axum::extract::ws::{CloseFrame, Message, close_code};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use tracing::debug;
use tungstenite::error::ProtocolError;

/// Largest coalesced WebSocket message, in bytes. Large enough that per-message costs vanish
/// next to per-byte ones, small enough not to hold a big copy per connection.
pub(crate) const COALESCE_LIMIT: usize = 256 * 1024;

/// A WebSocket carrying MQTT in binary messages, over any message stream and sink (axum's
/// `WebSocket` in the gateway, a fake in tests).
#[derive(Debug)]
pub(crate) struct WebSocketTransport<S> {
    socket: S,
    /// The close frame to send when the connection ends (1003 after a text message).
    close_frame: Option<CloseFrame>,
    /// The peer sent its close frame (which the library has answered already).
    peer_closed: bool,
    /// The CN of the client certificate of the TLS connection below (`wss` only).
    certificate_name: Option<Arc<str>>,
}

impl<S> WebSocketTransport<S> {
    /// Wraps an upgraded socket.
    pub(crate) fn new(socket: S) -> Self {
        WebSocketTransport {
            socket,
            close_frame: None,
            peer_closed: false,
            certificate_name: None,
        }
    }

    /// Reports `name` as the CN of the client certificate that the TLS handshake below the
    /// WebSocket verified.
    pub(crate) fn with_certificate_name(mut self, name: Option<Arc<str>>) -> Self {
        self.certificate_name = name;
        self
    }
}

impl<S, E> Transport for WebSocketTransport<S>
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if self.peer_closed || self.close_frame.is_some() {
            return Ok(0);
        }
        loop {
            // `next` is cancel safe: a partly received message stays in the library's buffer.
            let Some(message) = self.socket.next().await else {
                return Ok(0);
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => return read_error(error),
            };
            match message {
                // An empty message carries nothing, and `Ok(0)` would mean the end.
                Message::Binary(data) if data.is_empty() => {}
                Message::Binary(data) => {
                    let count = data.len();
                    if buf.is_empty() {
                        // Take the message's buffer as is: payloads are sliced from it, not
                        // copied.
                        *buf = BytesMut::from(data);
                    } else {
                        buf.extend_from_slice(&data);
                    }
                    return Ok(count);
                }
                Message::Text(_) => {
                    self.close_frame = Some(CloseFrame {
                        code: close_code::UNSUPPORTED,
                        reason: "MQTT over WebSocket uses binary messages only".into(),
                    });
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a WebSocket text message, but MQTT over WebSocket uses binary messages only",
                    ));
                }
                Message::Close(_) => {
                    self.peer_closed = true;
                    return Ok(0);
                }
                // The library answers pings by itself; pongs need nothing.
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }

    async fn write(&mut self, mut frames: VecDeque<Bytes>) -> io::Result<usize> {
        let total = frames.iter().map(Bytes::len).sum();
        while !frames.is_empty() {
            let message = coalesce(&mut frames, COALESCE_LIMIT);
            self.socket
                .feed(Message::Binary(message))
                .await
                .map_err(io::Error::other)?;
        }
        self.socket.flush().await.map_err(io::Error::other)?;
        Ok(total)
    }

    async fn close(&mut self) -> io::Result<()> {
        if self.peer_closed {
            // The library answered the peer's close frame; just push it out.
            return self.socket.flush().await.map_err(io::Error::other);
        }
        let frame = self.close_frame.take().unwrap_or(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        });
        self.socket
            .send(Message::Close(Some(frame)))
            .await
            .map_err(io::Error::other)?;
        // Wait for the peer's close frame so that it sees a clean closing handshake; the
        // connection task bounds this wait with its close timeout.
        while let Some(Ok(message)) = self.socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        Ok(())
    }

    fn certificate_name(&self) -> Option<String> {
        self.certificate_name.as_deref().map(str::to_owned)
    }
}

/// What a failed read of the WebSocket means for the connection (see the module header).
fn read_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> io::Result<usize> {
    match failure_kind(&error) {
        None => {
            debug!("the WebSocket ended: {error}");
            Ok(0)
        }
        Some(kind) => Err(io::Error::new(kind, error)),
    }
}

/// The kind of error a read fails with, or `None` when the peer has just gone.
fn failure_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    // axum's error wraps tungstenite's, which wraps the socket's.
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(websocket) = cause.downcast_ref::<tungstenite::Error>() {
            return match websocket {
                tungstenite::Error::Io(io_error) => Some(io_error.kind()),
                tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                | tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed => None,
                _ => Some(io::ErrorKind::InvalidData),
            };
        }
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            return Some(io_error.kind());
        }
        source = cause.source();
    }
    Some(io::ErrorKind::Other)
}

/// Takes the next message's worth of frames: as many whole packets as fit in `limit` bytes, or
/// one packet alone if it is larger. One packet is returned as is, without a copy.
fn coalesce(frames: &mut VecDeque<Bytes>, limit: usize) -> Bytes {
    let first = frames.pop_front().unwrap_or_default();
    let mut size = first.len();
    let mut count = 0;
    for frame in frames.iter() {
        if size + frame.len() > limit {
            break;
        }
        size += frame.len();
        count += 1;
    }
    if count == 0 {
        return first;
    }
    let mut message = BytesMut::with_capacity(size);
    message.extend_from_slice(&first);
    for frame in frames.drain(..count) {
        message.extend_from_slice(&frame);
    }
    message.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket that yields scripted messages, then ends, and records what is sent.
    #[derive(Default)]
    struct FakeSocket {
        incoming: VecDeque<Message>,
        sent: Vec<Message>,
    }

    impl Stream for FakeSocket {
        type Item = Result<Message, io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.incoming.pop_front().map(Ok))
        }
    }

    impl Sink<Message> for FakeSocket {
        type Error = io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> io::Result<()> {
            self.sent.push(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn transport(incoming: Vec<Message>) -> WebSocketTransport<FakeSocket> {
        WebSocketTransport::new(FakeSocket {
            incoming: incoming.into(),
            sent: Vec::new(),
        })
    }

    #[test]
    fn coalesce_keeps_packets_whole_and_bounded() {
        let frame = |n: usize| Bytes::from(vec![n as u8; n]);
        let mut frames: VecDeque<Bytes> =
            [frame(4), frame(3), frame(5), frame(12), frame(2)].into();
        assert_eq!(
            coalesce(&mut frames, 10),
            Bytes::from([&[4u8; 4][..], &[3; 3]].concat())
        );
        assert_eq!(coalesce(&mut frames, 10), frame(5));
        // Larger than the limit: alone, untouched.
        assert_eq!(coalesce(&mut frames, 10), frame(12));
        assert_eq!(coalesce(&mut frames, 10), frame(2));
        assert!(frames.is_empty());
    }

    #[tokio::test]
    async fn reads_append_binary_messages_and_skip_control_ones() {
        let mut transport = transport(vec![
            Message::Binary(Bytes::from_static(b"ab")),
            Message::Ping(Bytes::new()),
            Message::Binary(Bytes::new()),
            Message::Binary(Bytes::from_static(b"cde")),
        ]);
        let mut buf = BytesMut::new();
        assert_eq!(transport.read(&mut buf).await.unwrap(), 2);
        assert_eq!(transport.read(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..], b"abcde");
        assert_eq!(transport.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_text_message_closes_with_1003() {
        let mut transport = transport(vec![Message::Text("hello".into())]);
        let mut buf = BytesMut::new();
        let error = transport.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert_eq!(transport.read(&mut buf).await.unwrap(), 0);
        transport.close().await.unwrap();
        match &transport.socket.sent[..] {
            [Message::Close(Some(frame))] => assert_eq!(frame.code, close_code::UNSUPPORTED),
            other => panic!("expected one close frame, sent {other:?}"),
        }
    }

    #[test]
    fn read_errors_tell_a_bad_peer_from_a_lost_one() {
        use tungstenite::error::CapacityError;
        // Wrapped as axum hands them over: tungstenite's error inside axum's.
        let kind =
            |error: tungstenite::Error| read_error(axum::Error::new(error)).map_err(|e| e.kind());
        // The peer broke the protocol: the connection task warns.
        assert_eq!(
            kind(tungstenite::Error::Capacity(
                CapacityError::MessageTooLong {
                    size: 16 << 20,
                    max_size: 1 << 20,
                }
            )),
            Err(io::ErrorKind::InvalidData)
        );
        assert_eq!(
            kind(tungstenite::Error::Protocol(
                ProtocolError::UnmaskedFrameFromClient
            )),
            Err(io::ErrorKind::InvalidData)
        );
        // The socket failed: its own kind.
        assert_eq!(
            kind(tungstenite::Error::Io(
                io::ErrorKind::ConnectionReset.into()
            )),
            Err(io::ErrorKind::ConnectionReset)
        );
        // Gone without the closing handshake: the end of the stream, like TCP without DISCONNECT.
        assert_eq!(
            kind(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            Ok(0)
        );
    }

    #[tokio::test]
    async fn writes_send_one_message_per_batch() {
        let mut transport = transport(Vec::new());
        let frames: VecDeque<Bytes> = (0..1000).map(|_| Bytes::from_static(b"0123")).collect();
        assert_eq!(transport.write(frames).await.unwrap(), 4000);
        assert_eq!(transport.socket.sent.len(), 1);
    }
}
