//! Certificates for the TLS tests, made with rcgen: a CA per test, the gateway's certificate
//! (for `localhost` and 127.0.0.1) and client certificates, written as PEM files in a
//! throwaway directory; and rustls client configurations that trust such a CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::WAIT;

/// A certificate and its key, as files and as the client needs them.
pub struct Identity {
    /// The certificate, PEM.
    pub certificate: PathBuf,
    /// The private key, PEM (PKCS#8).
    pub key: PathBuf,
}

/// A certificate authority with a directory for the files it issues; the directory goes when
/// it is dropped.
pub struct Pki {
    directory: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let directory = std::env::temp_dir().join(format!(
            "gateway-pki-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&directory).expect("PKI directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate");
        Pki {
            directory,
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate's file (for `--tls-client-ca`).
    pub fn ca_file(&self) -> PathBuf {
        let path = self.directory.join("ca.crt");
        std::fs::write(&path, &self.ca_pem).expect("write CA");
        path
    }

    /// A path in this PKI's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.join(name)
    }

    fn sign(&self, file_name: &str, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        let identity = Identity {
            certificate: self.directory.join(format!("{file_name}.crt")),
            key: self.directory.join(format!("{file_name}.key")),
        };
        std::fs::write(&identity.certificate, certificate.pem()).expect("write certificate");
        std::fs::write(&identity.key, key.serialize_pem()).expect("write key");
        identity
    }

    /// The gateway's certificate: valid for `localhost` and 127.0.0.1, with `common_name` as
    /// its CN (so that tests can tell two apart), in `file_name`.crt and .key.
    pub fn server(&self, file_name: &str, common_name: &str) -> Identity {
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        self.sign(file_name, params)
    }

    /// A client certificate with `common_name` as its CN.
    pub fn client(&self, common_name: &str) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        self.sign(common_name, params)
    }

    /// A client certificate that expired years ago.
    pub fn expired_client(&self, common_name: &str) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.not_before = date_time_ymd(2019, 1, 1);
        params.not_after = date_time_ymd(2020, 1, 1);
        self.sign(common_name, params)
    }

    /// A client configuration that trusts this CA only, presenting `identity` if given, and
    /// offering `alpn` protocols.
    pub fn client_config(
        &self,
        identity: Option<&Identity>,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA PEM"))
            .expect("CA trusted");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let chain = CertificateDer::pem_file_iter(&identity.certificate)
                    .expect("certificate file")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certificate PEM");
                let key = PrivateKeyDer::from_pem_file(&identity.key).expect("key PEM");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client certificate")
            }
        };
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Opens a TCP connection to `addr` and runs a TLS handshake as a client of `localhost`,
/// within [`WAIT`]. (With TLS 1.3 the client's side completes before the server has checked
/// the client certificate: a refusal shows at the first read.)
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connect = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("server name");
        TlsConnector::from(config).connect(name, stream).await
    };
    tokio::time::timeout(WAIT, connect)
        .await
        .expect("TLS connect timed out")
}

/// The CN of the certificate the server presented on `stream`.
pub fn server_common_name(stream: &TlsStream<TcpStream>) -> String {
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a server certificate");
    gateway::security::tls::common_name(certificate).expect("a CN")
}
