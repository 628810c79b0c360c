//! MQTT over WebSocket: the `/mqtt` upgrade handler and the [`Transport`] adapter.
//!
//! The upgrade is refused before any MQTT happens when the page's `Origin` may not connect (403,
//! see [`crate::origin`]), when the client offers neither the `mqtt` nor the `mqttv3.1`
//! subprotocol (400), or at the connection limit (503). The chosen subprotocol is echoed, since
//! browsers fail a handshake whose answer names none.
//!
//! Past the upgrade the connection is served by the same [`connection::run`] as TCP: the adapter
//! only turns binary messages into a byte stream and back. A packet may span several messages and
//! a message may hold several packets, because the bytes are simply appended to the read buffer.
//! A text message is a protocol error: the connection is closed with code 1003. Pings are
//! answered by the WebSocket library itself.
//!
//! Writes coalesce: everything the broker queued for the connection since the last write leaves
//! as one binary message, since a browser pays per message rather than per byte. A message is
//! bounded by [`COALESCE_LIMIT`] bytes and never splits a packet; a lone packet goes out without a
//! copy and without waiting for company. A batch that cannot be written within [`WRITE_TIMEOUT`]
//! ends the connection.

use crate::connection::{self, Transport};
use crate::http::HttpState;
use crate::metrics::RefusedUpgrade;
use crate::origin::OriginRefusal;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker_core::{ConnectionInfo, Transport as TransportKind};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::{debug, warn};

/// Subprotocols accepted on `/mqtt`: `mqtt` (3.1.1 and 5.0) and `mqttv3.1` (older clients).
pub(crate) const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Largest coalesced WebSocket message, in bytes. Large enough that per-message costs vanish
/// next to per-byte ones, small enough not to hold a big copy per connection.
pub(crate) const COALESCE_LIMIT: usize = 256 * 1024;

/// Time one batch may take to be written. A peer that reads nothing for this long is not coming
/// back; without the bound its connection task would wait forever once its outbox is closed.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Picks the first subprotocol the client offers (its order is its preference, RFC 6455
/// 4.1) that MQTT over WebSocket uses. The header may be repeated and each is a comma list.
pub(crate) fn select_subprotocol(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .find(|token| SUBPROTOCOLS.iter().any(|known| known.as_bytes() == *token))
        .and_then(|token| HeaderValue::from_bytes(token).ok())
}

/// `GET /mqtt`: checks the origin, the subprotocol and the connection limit, then upgrades and
/// serves MQTT on the WebSocket until it ends.
pub(crate) async fn upgrade(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let mut upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let status = rejection.status();
            let why = rejection.body_text();
            return (
                status,
                format!("/mqtt is MQTT over WebSocket and needs a WebSocket upgrade: {why}\n"),
            )
                .into_response();
        }
    };
    let origin = headers.get(header::ORIGIN);
    if let Err(refusal) = state.origins.check(
        origin.map(HeaderValue::as_bytes),
        headers.get(header::HOST).map(HeaderValue::as_bytes),
    ) {
        let origin = String::from_utf8_lossy(origin.map_or(&[][..], HeaderValue::as_bytes));
        let why = match refusal {
            OriginRefusal::Malformed => "is not a valid origin",
            OriginRefusal::NotAllowed => {
                "is neither this gateway's origin, localhost, nor an --allowed-origin"
            }
        };
        warn!("refusing WebSocket from {peer}: origin {origin:?} {why}");
        state.metrics.record_refused_upgrade(RefusedUpgrade::Origin);
        return (
            StatusCode::FORBIDDEN,
            format!("origin {origin:?} may not connect to this gateway (see --allowed-origin)\n"),
        )
            .into_response();
    }
    let Some(protocol) = select_subprotocol(&headers) else {
        debug!("refusing WebSocket from {peer}: no MQTT subprotocol offered");
        state
            .metrics
            .record_refused_upgrade(RefusedUpgrade::Subprotocol);
        return (
            StatusCode::BAD_REQUEST,
            "MQTT over WebSocket needs the Sec-WebSocket-Protocol header to offer \"mqtt\" or \
             \"mqttv3.1\"\n",
        )
            .into_response();
    };
    let Some(permit) = state.limiter.try_acquire(&peer.to_string()) else {
        state
            .metrics
            .record_refused_upgrade(RefusedUpgrade::ConnectionLimit);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    upgrade.set_selected_protocol(protocol);
    let context = state.context.clone();
    let connection = state.limiter.next_id();
    // Counted from now, so that shutdown also waits for an upgrade still in progress.
    let tracked = state.tracker.token();
    // A message holds at least one packet, so the packet limit bounds messages as well; the
    // library refuses larger ones before buffering them.
    let max_size = context.settings.max_packet_size;
    upgrade
        .max_message_size(max_size)
        .max_frame_size(max_size)
        // The library zero-fills this much before every socket read: its default of 128 KiB
        // cost more than the read itself when reads bring a few kilobytes.
        .read_buffer_size(WS_READ_CHUNK)
        .on_failed_upgrade(move |error| debug!("WebSocket upgrade from {peer} failed: {error}"))
        .on_upgrade(move |socket| async move {
            let info = ConnectionInfo {
                transport: TransportKind::WebSocket,
                remote_address: peer.to_string().into(),
            };
            connection::run(WebSocketTransport::new(socket), connection, info, context).await;
            drop(permit);
            drop(tracked);
        })
}

/// A WebSocket carrying MQTT in binary messages, over any message stream and sink (axum's
/// `WebSocket` in the gateway, a fake in tests).
#[derive(Debug)]
pub(crate) struct WebSocketTransport<S> {
    socket: S,
    /// The close frame to send when the connection ends (1003 after a text message).
    close_frame: Option<CloseFrame>,
    /// The peer sent its close frame (which the library has answered already).
    peer_closed: bool,
}

impl<S> WebSocketTransport<S> {
    /// Wraps an upgraded socket.
    pub(crate) fn new(socket: S) -> Self {
        WebSocketTransport {
            socket,
            close_frame: None,
            peer_closed: false,
        }
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
            match message.map_err(io::Error::other)? {
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
                    debug!("closing WebSocket: a text message, but MQTT uses binary messages");
                    self.close_frame = Some(CloseFrame {
                        code: close_code::UNSUPPORTED,
                        reason: "MQTT over WebSocket uses binary messages only".into(),
                    });
                    return Ok(0);
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
        let socket = &mut self.socket;
        let send = async move {
            while !frames.is_empty() {
                let message = coalesce(&mut frames, COALESCE_LIMIT);
                socket.feed(Message::Binary(message)).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, send).await {
            Ok(result) => result.map_err(io::Error::other)?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer read nothing for {WRITE_TIMEOUT:?}"),
                ));
            }
        }
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
}

/// How much the WebSocket library reads from the socket at a time.
const WS_READ_CHUNK: usize = 16 * 1024;

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
    fn subprotocol_selection_follows_the_client_order() {
        let select = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            select_subprotocol(&headers).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(select(&["mqtt"]).as_deref(), Some("mqtt"));
        assert_eq!(select(&["mqttv3.1, mqtt"]).as_deref(), Some("mqttv3.1"));
        assert_eq!(select(&["wamp,  mqtt "]).as_deref(), Some("mqtt"));
        assert_eq!(select(&["wamp", "mqtt"]).as_deref(), Some("mqtt"));
        assert_eq!(select(&["MQTT"]), None);
        assert_eq!(select(&["mqtt5"]), None);
        assert_eq!(select(&[]), None);
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
        assert_eq!(transport.read(&mut buf).await.unwrap(), 0);
        transport.close().await.unwrap();
        match &transport.socket.sent[..] {
            [Message::Close(Some(frame))] => assert_eq!(frame.code, close_code::UNSUPPORTED),
            other => panic!("expected one close frame, sent {other:?}"),
        }
    }

    #[tokio::test]
    async fn writes_send_one_message_per_batch() {
        let mut transport = transport(Vec::new());
        let frames: VecDeque<Bytes> = (0..1000).map(|_| Bytes::from_static(b"0123")).collect();
        assert_eq!(transport.write(frames).await.unwrap(), 4000);
        assert_eq!(transport.socket.sent.len(), 1);
    }
}
