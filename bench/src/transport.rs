//! The two ways a benchmark client reaches the broker: plain TCP, or MQTT over WebSocket
//! (`ws://HOST:PORT/mqtt`, subprotocol `mqtt`, binary messages).
//!
//! The rest of `mqtt-bench` sees a byte stream either way: [`Reader::read_buf`] appends what
//! arrived to a buffer and [`Writer::write_all`] sends bytes. Over WebSocket every `write_all`
//! is one binary message, so a publisher's batch leaves as one message, and the payloads of the
//! messages that arrive are simply appended, so an MQTT packet may span messages and a message may
//! hold many packets. The two kinds are a plain enum rather than trait objects: the TCP arm is one
//! `match` away from the bare `OwnedReadHalf`/`OwnedWriteHalf` calls, so TCP figures are what
//! they were before WebSocket existed here.

use anyhow::{Context, Result, bail, ensure};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A WebSocket over a plain TCP stream (loopback only, so never TLS).
type Ws = WebSocketStream<TcpStream>;

/// Once one binary message arrived, [`Reader::read_buf`] also takes the messages that are
/// already there, up to this many bytes. A broker that sends one message per packet then costs
/// the caller one pass of its loop per burst rather than one per packet, so the generator is
/// not what limits the figure.
const DRAIN_LIMIT: usize = 256 * 1024;

/// Control frames (ping, pong) skipped in a row while waiting for data before giving up: the
/// wait for a binary message is bounded even against a broker that only pings.
const MAX_CONTROL_IN_A_ROW: usize = 1000;

/// Largest WebSocket message or frame accepted: well above the 1 MiB of the `big` mode and the
/// coalesced batches of the gateway (256 KiB), yet bounded.
const MAX_WS_MESSAGE: usize = 64 << 20;

/// Which transport the clients of a mode use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// MQTT over plain TCP, at `--addr`.
    Tcp,
    /// MQTT over WebSocket, at `--ws-url`.
    Ws,
}

/// Where and how the clients connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// The transport of the mode's clients.
    pub kind: Kind,
    /// The broker's MQTT-over-TCP address.
    pub tcp: SocketAddr,
    /// The broker's WebSocket URL, `ws://HOST:PORT/PATH`.
    pub ws_url: String,
    /// The TCP address the WebSocket URL names.
    pub ws_addr: SocketAddr,
}

impl Target {
    /// Checks that both addresses are loopback ones and that the URL is a plain `ws://` URL
    /// with a literal IP address (no name resolution, so nothing can leave the machine).
    pub fn new(kind: Kind, tcp: SocketAddr, ws_url: String) -> Result<Self> {
        ensure!(
            tcp.ip().is_loopback(),
            "mqtt-bench only loads loopback addresses, not {tcp}"
        );
        let authority = ws_url
            .strip_prefix("ws://")
            .with_context(|| format!("--ws-url must start with ws://, not {ws_url:?}"))?;
        let authority = authority.split('/').next().unwrap_or_default();
        let (host, port) = authority
            .rsplit_once(':')
            .with_context(|| format!("--ws-url needs an explicit port: {ws_url:?}"))?;
        let host: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| format!("--ws-url needs a literal loopback IP: {ws_url:?}"))?;
        ensure!(
            host.is_loopback(),
            "mqtt-bench only loads loopback addresses, not {ws_url}"
        );
        let ws_addr = SocketAddr::new(host, port.parse().context("--ws-url port")?);
        Ok(Target {
            kind,
            tcp,
            ws_url,
            ws_addr,
        })
    }

    /// The same broker reached over another transport.
    pub fn with_kind(&self, kind: Kind) -> Self {
        Target {
            kind,
            ..self.clone()
        }
    }

    /// Opens a byte stream to the broker (no MQTT yet): TCP with Nagle off, or that plus the
    /// WebSocket handshake offering the `mqtt` subprotocol (which the library checks is echoed).
    pub async fn open(&self) -> Result<(Reader, Writer)> {
        match self.kind {
            Kind::Tcp => {
                let stream = TcpStream::connect(self.tcp)
                    .await
                    .with_context(|| format!("connect to {}", self.tcp))?;
                stream.set_nodelay(true)?;
                let (reader, writer) = stream.into_split();
                Ok((Reader::Tcp(reader), Writer::Tcp(writer)))
            }
            Kind::Ws => {
                let stream = TcpStream::connect(self.ws_addr)
                    .await
                    .with_context(|| format!("connect to {}", self.ws_addr))?;
                stream.set_nodelay(true)?;
                let mut request = self.ws_url.as_str().into_client_request()?;
                request
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("mqtt"));
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_WS_MESSAGE))
                    .max_frame_size(Some(MAX_WS_MESSAGE));
                let (socket, _response) =
                    tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                        .await
                        .with_context(|| format!("WebSocket handshake with {}", self.ws_url))?;
                let (sink, stream) = socket.split();
                Ok((Reader::Ws(stream), Writer::Ws(sink)))
            }
        }
    }
}

/// The receiving half of a client's connection.
pub enum Reader {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// WebSocket: binary messages.
    Ws(SplitStream<Ws>),
}

/// The sending half of a client's connection.
pub enum Writer {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// WebSocket: one binary message per write.
    Ws(SplitSink<Ws, Message>),
}

impl Reader {
    /// Waits for bytes and appends them to `buf`; returns how many, 0 when the broker closed
    /// the connection. Over WebSocket, appends the payload of one binary message plus those of
    /// the messages already received (up to [`DRAIN_LIMIT`] bytes).
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> Result<usize> {
        match self {
            Reader::Tcp(reader) => Ok(reader.read_buf(buf).await?),
            Reader::Ws(stream) => {
                let start = buf.len();
                let mut first = None;
                for _ in 0..MAX_CONTROL_IN_A_ROW {
                    match stream.next().await {
                        None | Some(Ok(Message::Close(_))) => return Ok(0),
                        Some(Ok(Message::Binary(data))) => {
                            first = Some(data);
                            break;
                        }
                        Some(Ok(Message::Text(_))) => {
                            bail!("the broker sent a text message; MQTT over WebSocket is binary")
                        }
                        // Pings are answered by the library; pongs need nothing.
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Err(error.into()),
                    }
                }
                let first =
                    first.context("the broker sent only control frames, no MQTT, for a while")?;
                buf.extend_from_slice(&first);
                // Anything other than a ready binary message ends the draining. A close or a
                // failure ends the stream, which the next call then reports as closed.
                while buf.len() - start < DRAIN_LIMIT {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(Message::Binary(data)))) => buf.extend_from_slice(&data),
                        _ => break,
                    }
                }
                Ok(buf.len() - start)
            }
        }
    }
}

impl Writer {
    /// Sends `bytes`: one write on TCP, one binary message on WebSocket.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Writer::Tcp(writer) => Ok(writer.write_all(bytes).await?),
            Writer::Ws(sink) => Ok(sink
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await?),
        }
    }
}
