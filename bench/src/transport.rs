//! The three ways a benchmark client reaches the broker: plain TCP, MQTT over TLS (`--transport
//! tls` to `--addr`, trusting the CA in `--tls-ca`), or MQTT over WebSocket (`ws://HOST:PORT/mqtt`,
//! subprotocol `mqtt`, binary messages).
//!
//! The rest of `mqtt-bench` sees a byte stream either way: [`Reader::read_buf`] appends what
//! arrived to a buffer and [`Writer::write_all`] sends bytes. Over WebSocket every `write_all`
//! is one binary message, so a publisher's batch leaves as one message, and the payloads of the
//! messages that arrive are simply appended, so an MQTT packet may span messages and a message may
//! hold many packets. The kinds are a plain enum rather than trait objects: the TCP arm is one
//! `match` away from the bare `OwnedReadHalf`/`OwnedWriteHalf` calls, so TCP figures are what
//! they were before the other transports existed here.
//!
//! TLS is rustls with the aws-lc-rs provider and its safe defaults (TLS 1.3 or 1.2, the provider's
//! suites and key exchange groups), as the gateway builds it, over a TCP stream with Nagle off.
//! The server must present a certificate for the literal IP address of `--addr`, signed by the
//! CA; what the first handshake negotiated is reported with the figures ([`Target::negotiated`]).
//! Every TLS write is flushed: tokio-rustls may keep the last records of a write in its buffer
//! when the socket is full, and a publisher that then waits for its PINGRESP would wait forever.

use anyhow::{Context, Result, bail, ensure};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use rustls::ClientConfig;
use rustls::client::ClientConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A WebSocket over a plain TCP stream (`ws://` only: the TLS transport is MQTT over TLS).
type Ws = WebSocketStream<TcpStream>;

/// MQTT over TLS over TCP.
type Tls = TlsStream<TcpStream>;

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
    /// MQTT over TLS, at `--addr`, trusting the CA in `--tls-ca`.
    Tls,
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
    /// The TLS client, when a CA was given.
    tls: Option<TlsClient>,
}

/// The TLS side of a target: a connector that trusts one CA, the name (the IP address) the
/// server's certificate must bear, and what the first handshake negotiated.
#[derive(Clone)]
struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    negotiated: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("negotiated", &self.negotiated.get())
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A rustls client (aws-lc-rs provider, safe default versions) trusting the certificates in
    /// the PEM file `ca`, for a server at `address`.
    fn new(ca: &Path, address: SocketAddr) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading the CA file {}", ca.display()))?;
        for certificate in certificates {
            let certificate =
                certificate.with_context(|| format!("a certificate in {}", ca.display()))?;
            roots
                .add(certificate)
                .with_context(|| format!("a CA certificate in {}", ca.display()))?;
        }
        ensure!(
            !roots.is_empty(),
            "{}: no CERTIFICATE section in the file",
            ca.display()
        );
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: ServerName::IpAddress(address.ip().into()),
            negotiated: Arc::default(),
        })
    }
}

/// What a handshake settled on, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519MLKEM768`.
fn describe(connection: &ClientConnection) -> String {
    let version = connection
        .protocol_version()
        .map_or("?".to_string(), |version| format!("{version:?}"));
    let suite = connection
        .negotiated_cipher_suite()
        .map_or("?".to_string(), |suite| format!("{:?}", suite.suite()));
    let group = connection
        .negotiated_key_exchange_group()
        .map_or("?".to_string(), |group| format!("{:?}", group.name()));
    format!("{version} {suite} {group}")
}

impl Target {
    /// Checks that both addresses are loopback ones and that the URL is a plain `ws://` URL
    /// with a literal IP address (no name resolution, so nothing can leave the machine), and
    /// builds the TLS client when `tls_ca` is given (the `tls` transport needs it).
    pub fn new(kind: Kind, tcp: SocketAddr, ws_url: String, tls_ca: Option<&Path>) -> Result<Self> {
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
        ensure!(
            kind != Kind::Tls || tls_ca.is_some(),
            "--transport tls needs --tls-ca FILE (the CA that signed the broker's certificate)"
        );
        let tls = tls_ca.map(|ca| TlsClient::new(ca, tcp)).transpose()?;
        Ok(Target {
            kind,
            tcp,
            ws_url,
            ws_addr,
            tls,
        })
    }

    /// What the first TLS handshake negotiated (version, cipher suite, key exchange group);
    /// `None` before any, and for the other transports.
    pub fn negotiated(&self) -> Option<String> {
        if self.kind != Kind::Tls {
            return None;
        }
        self.tls.as_ref()?.negotiated.get().cloned()
    }

    /// The same broker reached over another transport.
    pub fn with_kind(&self, kind: Kind) -> Self {
        Target {
            kind,
            ..self.clone()
        }
    }

    /// Opens a byte stream to the broker (no MQTT yet): TCP with Nagle off, that plus the TLS
    /// handshake, or that plus the WebSocket handshake offering the `mqtt` subprotocol (which
    /// the library checks is echoed).
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
            Kind::Tls => {
                let tls = self
                    .tls
                    .as_ref()
                    .context("--transport tls needs --tls-ca")?;
                let stream = TcpStream::connect(self.tcp)
                    .await
                    .with_context(|| format!("connect to {}", self.tcp))?;
                stream.set_nodelay(true)?;
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .with_context(|| format!("TLS handshake with {}", self.tcp))?;
                tls.negotiated.get_or_init(|| describe(stream.get_ref().1));
                let (reader, writer) = tokio::io::split(stream);
                Ok((Reader::Tls(reader), Writer::Tls(writer)))
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
    /// TLS: decrypted bytes.
    Tls(ReadHalf<Tls>),
    /// WebSocket: binary messages.
    Ws(SplitStream<Ws>),
}

/// The sending half of a client's connection.
pub enum Writer {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS: each write encrypted and flushed.
    Tls(WriteHalf<Tls>),
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
            Reader::Tls(reader) => Ok(reader.read_buf(buf).await?),
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
    /// Sends `bytes`: one write on TCP, records written out on TLS (flushed, so that nothing
    /// stays in the TLS buffer), one binary message on WebSocket.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Writer::Tcp(writer) => Ok(writer.write_all(bytes).await?),
            Writer::Tls(writer) => {
                writer.write_all(bytes).await?;
                Ok(writer.flush().await?)
            }
            Writer::Ws(sink) => Ok(sink
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::PrivateKeyDer;
    use std::path::PathBuf;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// A CA, written as `ca.pem` in a directory of its own, and a server configuration whose
    /// certificate for 127.0.0.1 it signed.
    fn pki(name: &str) -> (PathBuf, Arc<rustls::ServerConfig>) {
        let directory =
            std::env::temp_dir().join(format!("mqtt-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_file = directory.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        (ca_file, Arc::new(config))
    }

    /// A write of several megabytes (more than the socket and TLS buffers hold) arrives whole,
    /// the answer is read back, and the handshake is reported.
    #[tokio::test]
    async fn tls_writes_arrive_whole_and_answers_are_read() {
        let (ca_file, config) = pki("tls-ok");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        const SIZE: usize = 4 << 20;
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let mut stream = acceptor.accept(socket).await.unwrap();
            let mut received = vec![0; SIZE];
            stream.read_exact(&mut received).await.unwrap();
            assert!(received.iter().all(|&byte| byte == 7));
            stream.write_all(b"done").await.unwrap();
            stream.flush().await.unwrap();
            // Open until the client goes.
            let _ = stream.read(&mut [0; 1]).await;
        });
        let url = "ws://127.0.0.1:1/mqtt".to_string();
        let target = Target::new(Kind::Tls, address, url, Some(&ca_file)).unwrap();
        assert_eq!(target.negotiated(), None);
        let (mut reader, mut writer) = target.open().await.unwrap();
        let exchange = async {
            writer.write_all(&vec![7; SIZE]).await.unwrap();
            let mut answer = BytesMut::new();
            while answer.len() < 4 {
                assert!(reader.read_buf(&mut answer).await.unwrap() > 0);
            }
            answer
        };
        let answer = tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .expect("the whole write reached the server and its answer came back");
        assert_eq!(&answer[..], b"done");
        let negotiated = target.negotiated().unwrap();
        assert!(negotiated.starts_with("TLSv1_3 TLS13_"), "{negotiated}");
        drop((reader, writer));
        server.await.unwrap();
        let _ = std::fs::remove_dir_all(ca_file.parent().unwrap());
    }

    /// A server whose certificate another CA signed is refused, and the tls transport without
    /// a CA is refused up front.
    #[tokio::test]
    async fn tls_refuses_a_certificate_from_another_ca() {
        let (other_ca, _) = pki("tls-other");
        let (server_ca, config) = pki("tls-server");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            acceptor.accept(socket).await.is_err()
        });
        let url = "ws://127.0.0.1:1/mqtt".to_string();
        assert!(Target::new(Kind::Tls, address, url.clone(), None).is_err());
        let target = Target::new(Kind::Tls, address, url, Some(&other_ca)).unwrap();
        let error = target.open().await.err().expect("refused");
        assert!(format!("{error:#}").contains("TLS handshake"), "{error:#}");
        assert!(server.await.unwrap());
        for file in [other_ca, server_ca] {
            let _ = std::fs::remove_dir_all(file.parent().unwrap());
        }
    }
}
