//! MQTT over TLS: the [`Transport`] adapter over a rustls server stream, once its handshake is
//! done (the handshake, bounded by the connect timeout, is the accept loop's, in
//! [`crate::listeners`]).
//!
//! Reads take the plaintext that rustls has already decrypted into its own buffer
//! (`poll_fill_buf`), so waiting holds no buffer of ours, and nothing is consumed from rustls
//! before it is in the caller's buffer: a read dropped while waiting loses nothing. Writes
//! coalesce small frames as over TCP, which here also means one TLS record for many packets
//! rather than one each, and then flush, since rustls may keep encrypted bytes the socket did
//! not take yet.

use super::{Transport, write_coalesced};
use crate::security::tls::common_name;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The most plaintext one read hands over: enough to batch a burst of small packets, bounded
/// so that one busy connection returns to its other work (and the broker) regularly.
const READ_LIMIT: usize = 64 * 1024;

/// A TLS connection carrying MQTT.
#[derive(Debug)]
pub(crate) struct TlsTransport {
    stream: TlsStream<TcpStream>,
}

impl TlsTransport {
    /// Wraps a stream whose handshake completed.
    pub(crate) fn new(stream: TlsStream<TcpStream>) -> Self {
        TlsTransport { stream }
    }
}

/// Moves the plaintext rustls holds (up to [`READ_LIMIT`] bytes) into `buf`: `Pending` while
/// there is none, `Ready(Ok(0))` at the end of the stream.
fn poll_read_plaintext(
    stream: &mut TlsStream<TcpStream>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let mut stream = Pin::new(stream);
    let mut total = 0;
    while total < READ_LIMIT {
        let data = match stream.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(data)) => data,
            // What was read so far goes first; the error comes back with the next read.
            Poll::Ready(Err(_)) | Poll::Pending if total > 0 => break,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        };
        if data.is_empty() {
            break;
        }
        let count = data.len().min(READ_LIMIT - total);
        // At least a small buffer, as over TCP, so that a few tiny packets in a row do not
        // grow it byte by byte.
        if buf.capacity() - buf.len() < count {
            buf.reserve(count.max(512));
        }
        buf.extend_from_slice(&data[..count]);
        stream.as_mut().consume(count);
        total += count;
    }
    Poll::Ready(Ok(total))
}

impl Transport for TlsTransport {
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send {
        poll_fn(move |cx| poll_read_plaintext(&mut self.stream, cx, buf))
    }

    // Not an `async fn`, which would store `frames` twice (see the `connection` module).
    #[allow(clippy::manual_async_fn)]
    fn write(&mut self, frames: VecDeque<Bytes>) -> impl Future<Output = io::Result<usize>> + Send {
        async move {
            let written = write_coalesced(&mut self.stream, frames).await?;
            self.stream.flush().await?;
            Ok(written)
        }
    }

    async fn close(&mut self) -> io::Result<()> {
        // Sends close_notify, then closes the TCP stream.
        self.stream.shutdown().await
    }

    fn certificate_name(&self) -> Option<String> {
        let (_, connection) = self.stream.get_ref();
        connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(common_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A TLS connection over loopback TCP: the gateway's side as a transport, and the client.
    async fn pair() -> (TlsTransport, tokio_rustls::client::TlsStream<TcpStream>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accept = async {
            let (stream, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(stream)
                .await
                .unwrap()
        };
        let connect = async {
            let stream = TcpStream::connect(address).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(ServerName::try_from("localhost").unwrap(), stream)
                .await
                .unwrap()
        };
        let (server, client) = tokio::join!(accept, connect);
        (TlsTransport::new(server), client)
    }

    #[tokio::test]
    async fn a_read_holds_no_buffer_while_waiting_and_loses_nothing_when_dropped() {
        let (mut transport, mut client) = pair().await;
        let mut buf = BytesMut::new();
        let waited = tokio::time::timeout(Duration::from_millis(50), transport.read(&mut buf));
        assert!(waited.await.is_err(), "nothing was sent");
        assert_eq!(buf.capacity(), 0, "no buffer while waiting");

        client.write_all(b"hello ").await.unwrap();
        client.flush().await.unwrap();
        // Dropped after its first poll, whatever it found: nothing may be lost.
        {
            let mut read = std::pin::pin!(transport.read(&mut buf));
            let _ = poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        }
        client.write_all(b"world").await.unwrap();
        client.flush().await.unwrap();
        while buf.len() < 11 {
            assert!(transport.read(&mut buf).await.unwrap() > 0);
        }
        assert_eq!(&buf[..], b"hello world");

        client.shutdown().await.unwrap();
        assert_eq!(transport.read(&mut buf).await.unwrap(), 0, "end of stream");
    }

    #[tokio::test]
    async fn writes_arrive_whole_and_in_order() {
        let (mut transport, mut client) = pair().await;
        let frames: VecDeque<Bytes> = (0..5000u32)
            .map(|index| Bytes::copy_from_slice(&index.to_be_bytes()))
            .chain([Bytes::from(vec![7u8; 100_000])])
            .collect();
        let written = transport.write(frames).await.unwrap();
        assert_eq!(written, 5000 * 4 + 100_000);
        let mut received = vec![0u8; written];
        client.read_exact(&mut received).await.unwrap();
        for (index, chunk) in received[..20_000].chunks(4).enumerate() {
            assert_eq!(chunk, (index as u32).to_be_bytes());
        }
        assert!(received[20_000..].iter().all(|&byte| byte == 7));
    }
}
