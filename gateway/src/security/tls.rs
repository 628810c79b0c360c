//! TLS server configuration with rustls: the certificate chain and key in PEM, and optionally
//! a CA whose client certificates are then required.
//!
//! [`TlsSettings::load`] reads the files anew each time it is called, so a reload (SIGHUP)
//! builds a fresh configuration for new connections while established ones keep theirs. The
//! key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC). Errors name the file, never its content.
//!
//! `ServerConfigs` (crate-private) is what the TLS listeners share: the configuration in force
//! for each kind of listener, read once per accepted connection and replaced whole by its
//! `reload`, which keeps the previous one when the files do not load.

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use thiserror::Error;
use tracing::{info, warn};

/// Why a TLS configuration could not be built.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM section.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the TLS material comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
}

fn file_error(path: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(path, error))?;
    if chain.is_empty() {
        return Err(file_error(path, "no CERTIFICATE section in the file"));
    }
    Ok(chain)
}

impl TlsSettings {
    /// Builds a server configuration offering `alpn` protocols (none: any client).
    pub fn load(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = certificates(&self.certificate)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|error| {
            file_error(
                &self.key,
                format!("no PKCS#8, PKCS#1 or SEC1 private key: {error}"),
            )
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Config(error.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in certificates(path)? {
                    roots
                        .add(certificate)
                        .map_err(|error| file_error(path, error))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|error| file_error(path, error))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        warn_if_expired(&self.certificate, &chain[0]);
        let mut config = builder.with_single_cert(chain, key).map_err(|error| {
            // rustls names neither file: say which pair it refused.
            TlsError::Config(format!(
                "certificate {} with key {}: {error}",
                self.certificate.display(),
                self.key.display()
            ))
        })?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Logs a warning when the server's certificate is outside its validity period: it still
/// loads (a clock may be wrong, a renewal may be on its way), but every client will refuse it.
fn warn_if_expired(path: &Path, certificate: &CertificateDer<'_>) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return;
    };
    if !parsed.validity().is_valid() {
        tracing::warn!(
            "TLS certificate {} is not valid now (valid from {} to {}): clients will refuse it",
            path.display(),
            parsed.validity().not_before,
            parsed.validity().not_after
        );
    }
}

/// ALPN of the HTTPS listeners: HTTP/1.1 only, as the WebSocket upgrade needs it.
const HTTPS_ALPN: &[&[u8]] = &[b"http/1.1"];

/// The server configurations in force, shared by the TLS listeners; each accepted connection
/// takes the current one, so a reload changes new connections only.
#[derive(Debug)]
pub(crate) struct ServerConfigs {
    settings: TlsSettings,
    current: RwLock<Current>,
}

#[derive(Debug)]
struct Current {
    /// MQTT over TLS: no ALPN, since MQTT clients rarely send one.
    mqtt: Arc<ServerConfig>,
    /// HTTPS: ALPN `http/1.1`.
    https: Arc<ServerConfig>,
}

impl Current {
    /// Reads the files once for both configurations.
    fn load(settings: &TlsSettings) -> Result<Current, TlsError> {
        let mqtt = settings.load(&[])?;
        let mut https = ServerConfig::clone(&mqtt);
        https.alpn_protocols = HTTPS_ALPN
            .iter()
            .map(|protocol| protocol.to_vec())
            .collect();
        Ok(Current {
            mqtt,
            https: Arc::new(https),
        })
    }
}

impl ServerConfigs {
    /// Loads the configurations from `settings`' files.
    pub(crate) fn load(settings: TlsSettings) -> Result<ServerConfigs, TlsError> {
        let current = Current::load(&settings)?;
        Ok(ServerConfigs {
            settings,
            current: RwLock::new(current),
        })
    }

    /// The configuration for a new MQTT over TLS connection.
    pub(crate) fn mqtt(&self) -> Arc<ServerConfig> {
        self.read().mqtt.clone()
    }

    /// The configuration for a new HTTPS connection.
    pub(crate) fn https(&self) -> Arc<ServerConfig> {
        self.read().https.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the files again (SIGHUP): new connections get the new certificate, established
    /// ones keep theirs. Files that do not load leave the configuration in force as it is,
    /// and one warning says why.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        match Current::load(&self.settings) {
            Ok(current) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = current;
                info!(
                    "reload: TLS certificate {} loaded",
                    self.settings.certificate.display()
                );
                Ok(())
            }
            Err(error) => {
                warn!("reload: {error}; keeping the previous TLS certificate");
                Err(error)
            }
        }
    }
}

/// The Common Name of a certificate's subject: the MQTT user name with
/// `--tls-identity-as-username`.
pub fn common_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let name = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Pki {
        directory: PathBuf,
        ca_pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    impl Pki {
        fn new(name: &str) -> Pki {
            let directory =
                std::env::temp_dir().join(format!("tls-test-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&directory).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "test CA");
            let key = KeyPair::generate().unwrap();
            let ca = params.self_signed(&key).unwrap();
            Pki {
                directory,
                ca_pem: ca.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        /// A certificate for `name` (a DNS name and the CN) signed by the CA; its files.
        fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
            let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let certificate = params.signed_by(&key, &self.issuer).unwrap();
            let certificate_path = self.directory.join(format!("{name}.crt"));
            let key_path = self.directory.join(format!("{name}.key"));
            std::fs::write(&certificate_path, certificate.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (certificate_path, key_path)
        }

        fn ca_path(&self) -> PathBuf {
            let path = self.directory.join("ca.crt");
            std::fs::write(&path, &self.ca_pem).unwrap();
            path
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }

    fn client_config(pki: &Pki, identity: Option<(PathBuf, PathBuf)>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((certificate, key)) => builder
                .with_client_auth_cert(
                    certificates(&certificate).unwrap(),
                    PrivateKeyDer::from_pem_file(&key).unwrap(),
                )
                .unwrap(),
        };
        Arc::new(config)
    }

    /// A TLS handshake over an in-memory pipe, then one byte each way; the client's
    /// certificate CN as the server saw it.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<Option<String>, String> {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let server_side = tokio::spawn(async move {
            let mut stream = tokio_rustls::TlsAcceptor::from(server)
                .accept(server_end)
                .await
                .map_err(|e| e.to_string())?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(common_name);
            let mut byte = [0u8];
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(&byte).await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(peer)
        });
        let name = ServerName::try_from("localhost").unwrap();
        let client_side = async {
            let mut stream = tokio_rustls::TlsConnector::from(client)
                .connect(name, client_end)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(b"x").await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            let mut byte = [0u8];
            stream
                .read_exact(&mut byte)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        };
        let client_result = client_side.await;
        let server_result = server_side.await.unwrap();
        client_result?;
        server_result
    }

    #[tokio::test]
    async fn a_client_that_trusts_the_ca_completes_a_handshake() {
        let pki = Pki::new("plain");
        let (certificate, key) = pki.issue("localhost");
        let settings = TlsSettings {
            certificate,
            key,
            client_ca: None,
        };
        let server = settings.load(&[]).unwrap();
        assert_eq!(handshake(server, client_config(&pki, None)).await, Ok(None));
    }

    #[tokio::test]
    async fn client_certificates_are_required_and_their_cn_read() {
        let pki = Pki::new("mutual");
        let (certificate, key) = pki.issue("localhost");
        let settings = TlsSettings {
            certificate,
            key,
            client_ca: Some(pki.ca_path()),
        };
        let server = settings.load(&[]).unwrap();
        let device = pki.issue("device-42");
        assert_eq!(
            handshake(server.clone(), client_config(&pki, Some(device))).await,
            Ok(Some("device-42".to_string()))
        );
        assert!(
            handshake(server.clone(), client_config(&pki, None))
                .await
                .is_err(),
            "no client certificate"
        );
        let stranger = Pki::new("stranger");
        let foreign = stranger.issue("intruder");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                certificates(&foreign.0).unwrap(),
                PrivateKeyDer::from_pem_file(&foreign.1).unwrap(),
            )
            .unwrap();
        assert!(
            handshake(server, Arc::new(client)).await.is_err(),
            "a certificate from another CA"
        );
    }

    #[test]
    fn server_configs_offer_http_on_https_and_keep_the_old_one_when_a_reload_fails() {
        let pki = Pki::new("configs");
        let (certificate, key) = pki.issue("localhost");
        let configs = ServerConfigs::load(TlsSettings {
            certificate,
            key: key.clone(),
            client_ca: None,
        })
        .unwrap();
        assert!(configs.mqtt().alpn_protocols.is_empty());
        assert_eq!(configs.https().alpn_protocols, vec![b"http/1.1".to_vec()]);

        let before = (configs.mqtt(), configs.https());
        std::fs::write(&key, "not a key").unwrap();
        assert!(configs.reload().is_err());
        assert!(Arc::ptr_eq(&before.0, &configs.mqtt()));
        assert!(Arc::ptr_eq(&before.1, &configs.https()));

        // New files under the same names.
        pki.issue("localhost");
        configs.reload().unwrap();
        assert!(!Arc::ptr_eq(&before.0, &configs.mqtt()));
        assert!(!Arc::ptr_eq(&before.1, &configs.https()));
        assert_eq!(configs.https().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn unreadable_or_mismatched_files_are_named() {
        let pki = Pki::new("errors");
        let (certificate, key) = pki.issue("localhost");
        let (_, other_key) = pki.issue("other");
        let missing = pki.directory.join("missing.pem");
        let cases = [
            (missing.clone(), key.clone(), "missing.pem"),
            (key.clone(), key.clone(), "no CERTIFICATE"),
            (certificate.clone(), certificate.clone(), "private key"),
            (certificate.clone(), other_key, "TLS configuration"),
        ];
        for (certificate, key, expected) in cases {
            let settings = TlsSettings {
                certificate,
                key,
                client_ca: None,
            };
            let error = settings.load(&[]).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("PRIVATE KEY-----"), "{error}");
        }
    }
}
