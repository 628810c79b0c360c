//! Who may connect and what they may do: the password file, the ACL, tokens, client
//! certificates, and the brute-force back-off.
//!
//! [`Security`] holds what was loaded from the configured files and decides on each CONNECT
//! before it reaches the broker ([`Security::authenticate`]), on the connection's task: the
//! slow part, verifying a password, runs on tokio's blocking pool, so one hash never delays
//! another client's messages. The decision travels to the broker core as an
//! [`Authentication`], whose grant carries the client's [`Permissions`] ([`ClientAccess`]).
//!
//! Who counts as authenticated:
//! - a client certificate's CN, with `--tls-identity-as-username` (the TLS handshake verified it);
//! - a token (`--jwt-*`) sent as the password: its `sub` is the user name;
//! - a user name and password found in `--password-file`.
//!
//! A client that sends no credentials is anonymous: refused once any authentication is
//! configured, unless `--allow-anonymous`. Credentials that do not verify are refused whatever
//! `--allow-anonymous` says. Without any authentication configured, the user name a client
//! sends is not verified, so the ACL treats every client as anonymous (its `user` sections
//! apply to nobody; Mosquitto would trust the name).
//!
//! Reloading (SIGHUP) reads every file again; a file that fails to parse keeps its previous
//! version in force. Connected clients see a new ACL at their next action: their
//! [`ClientAccess`] notices the new generation and resolves their rules again.

pub mod acl;
pub mod lockout;
pub mod password_file;
pub mod tls;
pub mod token;

use acl::{Access, Acl, ClientRules, Identity};
use broker_core::{Authentication, Grant, Permissions};
use lockout::{Lockout, LockoutPolicy};
use mqtt_codec::{ByteStr, ConnectPacket, ReasonCode};
use password_file::PasswordFile;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};
use thiserror::Error;
use token::TokenVerifier;
use tracing::{info, warn};

/// The security settings: which files, and the policies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// The password file (`--password-file`).
    pub password_file: Option<PathBuf>,
    /// The ACL file (`--acl-file`).
    pub acl_file: Option<PathBuf>,
    /// An HS256 secret for tokens (`--jwt-secret-file`).
    pub jwt_secret_file: Option<PathBuf>,
    /// An RS256/ES256 public key in PEM for tokens (`--jwt-public-key`).
    pub jwt_public_key: Option<PathBuf>,
    /// A JWKS document of token keys (`--jwks-file`).
    pub jwks_file: Option<PathBuf>,
    /// Accept clients without credentials although authentication is configured.
    pub allow_anonymous: bool,
    /// A client certificate's CN is the client's user name (`--tls-identity-as-username`).
    pub tls_identity_as_username: bool,
    /// The brute-force back-off.
    pub lockout: LockoutPolicy,
}

impl SecurityConfig {
    /// Whether any way of authenticating clients is configured.
    pub fn authenticates(&self) -> bool {
        self.password_file.is_some()
            || self.jwt_secret_file.is_some()
            || self.jwt_public_key.is_some()
            || self.jwks_file.is_some()
            || self.tls_identity_as_username
    }

    /// Whether the gateway has anything to check at all.
    pub fn is_configured(&self) -> bool {
        self.authenticates() || self.acl_file.is_some()
    }
}

/// Why the security files could not be loaded.
#[derive(Debug, Error)]
pub enum SecurityError {
    /// The password file.
    #[error(transparent)]
    PasswordFile(#[from] password_file::PasswordFileError),
    /// The ACL file.
    #[error(transparent)]
    Acl(#[from] acl::AclError),
    /// A token key file.
    #[error(transparent)]
    TokenKey(#[from] token::TokenKeyError),
}

/// What was loaded from the files; replaced whole by a reload.
#[derive(Debug, Default)]
struct Loaded {
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
    tokens: Option<Arc<TokenVerifier>>,
}

/// Why a CONNECT was refused, for the log line and the `mqtt_auth_refused_total` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, and anonymous clients are not allowed.
    Anonymous,
    /// A user name and password that do not match the password file.
    BadPassword,
    /// A token that does not verify (with why).
    BadToken(token::TokenRefused),
    /// The source address failed too often and is locked out for a while.
    LockedOut,
}

impl Refusal {
    /// The labels of the `mqtt_auth_refused_total` counter, by [`Refusal::index`].
    pub const LABELS: [&'static str; 4] = ["anonymous", "bad_password", "bad_token", "locked_out"];

    /// The refusal's place in [`Refusal::LABELS`].
    pub fn index(self) -> usize {
        match self {
            Refusal::Anonymous => 0,
            Refusal::BadPassword => 1,
            Refusal::BadToken(_) => 2,
            Refusal::LockedOut => 3,
        }
    }

    fn reason_code(self) -> ReasonCode {
        match self {
            Refusal::Anonymous | Refusal::LockedOut => ReasonCode::NotAuthorized,
            Refusal::BadPassword | Refusal::BadToken(_) => ReasonCode::BadUserNameOrPassword,
        }
    }

    fn describe(self) -> String {
        match self {
            Refusal::Anonymous => "no credentials, and anonymous clients are not allowed".into(),
            Refusal::BadPassword => "bad user name or password".into(),
            Refusal::BadToken(why) => why.to_string(),
            Refusal::LockedOut => "too many failed authentications from this address".into(),
        }
    }
}

/// How a CONNECT was accepted, for the `mqtt_auth_accepted_total` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A password from the password file.
    Password,
    /// A token.
    Token,
    /// A client certificate.
    Certificate,
    /// No credentials, allowed.
    Anonymous,
}

impl Method {
    /// Every method, in the order of their discriminants.
    pub const ALL: [Method; 4] = [
        Method::Password,
        Method::Token,
        Method::Certificate,
        Method::Anonymous,
    ];

    /// The label of the `mqtt_auth_accepted_total` counter.
    pub fn label(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Token => "token",
            Method::Certificate => "certificate",
            Method::Anonymous => "anonymous",
        }
    }
}

/// The outcome of [`Security::authenticate`], with what the metrics count.
#[derive(Debug)]
pub struct Decision {
    /// For the broker core.
    pub authentication: Authentication,
    /// How it went, for the counters.
    pub outcome: Result<Method, Refusal>,
}

/// The loaded security state, shared by every connection task.
#[derive(Debug)]
pub struct Security {
    config: SecurityConfig,
    loaded: RwLock<Arc<Loaded>>,
    /// Bumped by each reload, so that connected clients resolve their rules again.
    generation: AtomicU64,
    lockout: Lockout,
    /// Password checks running at once. An argon2id hash takes 19 MiB and tens of milliseconds,
    /// so a storm of CONNECTs must queue here rather than fill the blocking pool (512 threads,
    /// 10 GB of hashing memory).
    hashing: tokio::sync::Semaphore,
}

/// What a connecting client presents.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    /// The CONNECT.
    pub connect: &'a ConnectPacket,
    /// The source address, when the transport knows it.
    pub address: Option<IpAddr>,
    /// The CN of the client certificate the TLS handshake verified, if any.
    pub certificate_name: Option<&'a str>,
}

impl Security {
    /// Loads the configured files; `None` when nothing is configured (every client may do
    /// everything, as without this module).
    pub fn load(config: SecurityConfig) -> Result<Option<Arc<Security>>, SecurityError> {
        if !config.is_configured() {
            return Ok(None);
        }
        let loaded = load_files(&config)?;
        describe(&config, &loaded);
        let lockout = Lockout::new(config.lockout);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Some(Arc::new(Security {
            config,
            loaded: RwLock::new(Arc::new(loaded)),
            generation: AtomicU64::new(1),
            lockout,
            hashing: tokio::sync::Semaphore::new(cores),
        })))
    }

    /// Reads every file again. A file that fails keeps its previous version, and the failure
    /// is logged.
    pub fn reload(&self) {
        let current = self.current();
        let config = &self.config;
        let passwords = match &config.password_file {
            None => None,
            Some(path) => match PasswordFile::load(path) {
                Ok(file) => Some(file),
                Err(error) => {
                    warn!("reload: {error}; keeping the previous password file");
                    current.passwords.clone()
                }
            },
        };
        let acl = match &config.acl_file {
            None => None,
            Some(path) => match Acl::load(path) {
                Ok(acl) => Some(acl),
                Err(error) => {
                    warn!("reload: {error}; keeping the previous ACL");
                    current.acl.clone()
                }
            },
        };
        let tokens = match TokenVerifier::load(
            config.jwt_secret_file.as_deref(),
            config.jwt_public_key.as_deref(),
            config.jwks_file.as_deref(),
        ) {
            Ok(tokens) => tokens.map(Arc::new),
            Err(error) => {
                warn!("reload: {error}; keeping the previous token keys");
                current.tokens.clone()
            }
        };
        let loaded = Loaded {
            passwords,
            acl,
            tokens,
        };
        describe(config, &loaded);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The addresses locked out now, for the metrics.
    pub fn locked_addresses(&self) -> usize {
        self.lockout.locked_addresses(Instant::now())
    }

    /// Decides on a CONNECT. Slow when a password is checked; runs the hash on the blocking
    /// pool, never on the caller's thread.
    pub async fn authenticate(self: &Arc<Self>, presented: Presented<'_>) -> Decision {
        let now = Instant::now();
        if let Some(address) = presented.address
            && self.lockout.is_locked(address, now)
        {
            return self.refuse(presented, Refusal::LockedOut);
        }
        let connect = presented.connect;
        let loaded = self.current();
        let username = connect.username.as_deref();
        let password = connect.password.as_deref();

        let verified: Result<(Method, Option<String>, Option<token::VerifiedToken>), Refusal> =
            if let Some(name) = presented
                .certificate_name
                .filter(|_| self.config.tls_identity_as_username)
            {
                Ok((Method::Certificate, Some(name.to_string()), None))
            } else if let Some(password) = password {
                match &loaded.tokens {
                    Some(tokens) if TokenVerifier::looks_like_token(password) => tokens
                        .verify(password, username)
                        .map(|token| (Method::Token, token.username.clone(), Some(token)))
                        .map_err(Refusal::BadToken),
                    _ => {
                        let matches = match (&loaded.passwords, username) {
                            (Some(_), Some(user)) => {
                                let loaded = loaded.clone();
                                let user = user.to_string();
                                let password = password.to_vec();
                                let _turn = self.hashing.acquire().await;
                                tokio::task::spawn_blocking(move || {
                                    loaded
                                        .passwords
                                        .as_ref()
                                        .is_some_and(|file| file.verify(&user, &password))
                                })
                                .await
                                .unwrap_or(false)
                            }
                            _ => false,
                        };
                        if matches {
                            Ok((Method::Password, username.map(str::to_string), None))
                        } else {
                            Err(Refusal::BadPassword)
                        }
                    }
                }
            } else if username.is_some() && loaded.passwords.is_some() {
                // A user name alone is a credential that does not verify.
                Err(Refusal::BadPassword)
            } else if !self.config.authenticates() || self.config.allow_anonymous {
                Ok((Method::Anonymous, None, None))
            } else {
                Err(Refusal::Anonymous)
            };

        let (method, username, token) = match verified {
            Ok(verified) => verified,
            Err(refusal) => {
                if refusal != Refusal::Anonymous
                    && let Some(address) = presented.address
                    && self.lockout.record_failure(address, now)
                {
                    warn!(
                        "locking out {address} for {:?} after {} failed authentications",
                        self.config.lockout.backoff, self.config.lockout.threshold
                    );
                }
                return self.refuse(presented, refusal);
            }
        };
        let client_id = connect.client_id.to_string();
        let token_rules = token.as_ref().and_then(|token| token.rules.clone());
        let permissions = (loaded.acl.is_some() || token_rules.is_some()).then(|| {
            Box::new(ClientAccess::new(
                self.clone(),
                username.clone(),
                client_id,
                token_rules,
            )) as Box<dyn Permissions>
        });
        let valid_until = token.map(|token| {
            let left = token
                .expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            now + left
        });
        Decision {
            authentication: Authentication::Verified(Box::new(Grant {
                username: username.map(ByteStr::from),
                permissions,
                valid_until,
            })),
            outcome: Ok(method),
        }
    }

    fn refuse(&self, presented: Presented<'_>, refusal: Refusal) -> Decision {
        // One line per refusal: who, from where, why; never what they sent as a secret.
        warn!(
            client_id = %presented.connect.client_id,
            "refusing CONNECT of client {:?} (user {:?}) from {}: {}",
            presented.connect.client_id.as_str(),
            presented.connect.username.as_deref().unwrap_or(""),
            presented
                .address
                .map_or_else(|| "?".to_string(), |a| a.to_string()),
            refusal.describe()
        );
        Decision {
            authentication: Authentication::Refused(refusal.reason_code()),
            outcome: Err(refusal),
        }
    }
}

fn load_files(config: &SecurityConfig) -> Result<Loaded, SecurityError> {
    let passwords = config
        .password_file
        .as_deref()
        .map(PasswordFile::load)
        .transpose()?;
    let acl = config.acl_file.as_deref().map(Acl::load).transpose()?;
    let tokens = TokenVerifier::load(
        config.jwt_secret_file.as_deref(),
        config.jwt_public_key.as_deref(),
        config.jwks_file.as_deref(),
    )?
    .map(Arc::new);
    Ok(Loaded {
        passwords,
        acl,
        tokens,
    })
}

/// One log line saying what is in force (counts, never contents).
fn describe(config: &SecurityConfig, loaded: &Loaded) {
    let mut parts = Vec::new();
    if let Some(passwords) = &loaded.passwords {
        parts.push(format!("{} users in the password file", passwords.len()));
    }
    if let Some(acl) = &loaded.acl {
        parts.push(format!("{} ACL rules", acl.len()));
    }
    if let Some(tokens) = &loaded.tokens {
        parts.push(format!("token keys ({tokens:?})"));
    }
    if config.tls_identity_as_username {
        parts.push("client certificates name users".into());
    }
    let anonymous = if !config.authenticates() || config.allow_anonymous {
        "anonymous clients allowed"
    } else {
        "anonymous clients refused"
    };
    parts.push(anonymous.into());
    info!("security: {}", parts.join(", "));
}

/// Topics whose answer a client's [`ClientAccess`] remembers; past it, the cache starts over.
const CACHE_LIMIT: usize = 1024;

/// One client's permissions: its ACL rules (resolved again after a reload) and its token's
/// claim, both of which must allow an action; answers for topics are cached.
#[derive(Debug)]
pub struct ClientAccess {
    security: Arc<Security>,
    generation: u64,
    username: Option<String>,
    client_id: String,
    acl: Option<ClientRules>,
    token: Option<ClientRules>,
    /// Read and write answers by topic: bit 0 read, bit 1 write, bit 2 read known, bit 3
    /// write known.
    cache: HashMap<Box<str>, u8>,
}

impl ClientAccess {
    fn new(
        security: Arc<Security>,
        username: Option<String>,
        client_id: String,
        token: Option<ClientRules>,
    ) -> Self {
        let mut access = ClientAccess {
            security,
            generation: 0,
            username,
            client_id,
            acl: None,
            token,
            cache: HashMap::new(),
        };
        access.refresh();
        access
    }

    /// Resolves the ACL rules again if the files were reloaded since.
    fn refresh(&mut self) {
        let generation = self.security.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.cache.clear();
        // Without authentication configured, user names are not verified: the ACL sees an
        // anonymous client.
        let username = self
            .username
            .as_deref()
            .filter(|_| self.security.config.authenticates());
        self.acl = self.security.current().acl.as_ref().map(|acl| {
            acl.rules_for(Identity {
                username,
                client_id: &self.client_id,
            })
        });
    }

    fn permits(&mut self, access: Access, topic: &str) -> bool {
        self.refresh();
        let (value_bit, known_bit) = match access {
            Access::Read => (1, 4),
            Access::Write => (2, 8),
        };
        if let Some(&bits) = self.cache.get(topic)
            && bits & known_bit != 0
        {
            return bits & value_bit != 0;
        }
        let allowed = self.acl.as_ref().is_none_or(|r| r.permits(access, topic))
            && self.token.as_ref().is_none_or(|r| r.permits(access, topic));
        if self.cache.len() >= CACHE_LIMIT && !self.cache.contains_key(topic) {
            self.cache.clear();
        }
        let bits = self.cache.entry(topic.into()).or_default();
        *bits |= known_bit | if allowed { value_bit } else { 0 };
        allowed
    }
}

impl Permissions for ClientAccess {
    fn may_publish(&mut self, topic: &str) -> bool {
        self.permits(Access::Write, topic)
    }

    fn may_subscribe(&mut self, filter: &str) -> bool {
        self.refresh();
        self.acl.as_ref().is_none_or(|r| r.may_subscribe(filter))
            && self.token.as_ref().is_none_or(|r| r.may_subscribe(filter))
    }

    fn may_receive(&mut self, topic: &str) -> bool {
        self.permits(Access::Read, topic)
    }
}
