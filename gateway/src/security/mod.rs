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
//! - a user name and password found in `--password-file`;
//! - a MQTT 5.0 client that proves a password-file user's password with enhanced
//!   authentication, method `SCRAM-SHA-256`: checked here only for its shape and the user it
//!   names, and proved on the broker's task by [`scram_hook::ScramHook`] (see there).
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
pub mod scram;
pub mod scram_hook;
pub mod tls;
pub mod token;

use acl::{Access, Acl, ClientRules, Identity};
use base64::Engine;
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
use subtle::ConstantTimeEq;
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
    /// Users who may read the HTTP API and the metrics (`--admin-user`).
    pub admin_users: Vec<String>,
    /// A bearer token that may scrape `/metrics` (`--metrics-token-file`).
    pub metrics_token_file: Option<PathBuf>,
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
        self.authenticates() || self.acl_file.is_some() || self.metrics_token_file.is_some()
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
    /// The metrics token file.
    #[error("cannot read the metrics token {path}: {problem}")]
    MetricsToken {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the token).
        problem: String,
    },
}

/// What was loaded from the files; replaced whole by a reload.
#[derive(Debug, Default)]
struct Loaded {
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
    tokens: Option<Arc<TokenVerifier>>,
    metrics_token: Option<String>,
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
    /// Enhanced authentication data that does not parse (a SCRAM client-first message).
    BadAuthenticationData(scram::ScramError),
    /// An enhanced authentication method the gateway does not offer.
    BadAuthenticationMethod,
}

impl Refusal {
    /// The labels of the `mqtt_auth_refused_total` counter, by [`Refusal::index`].
    pub const LABELS: [&'static str; 6] = [
        "anonymous",
        "bad_password",
        "bad_token",
        "locked_out",
        "bad_authentication_data",
        "bad_authentication_method",
    ];

    /// The refusal's place in [`Refusal::LABELS`].
    pub fn index(self) -> usize {
        match self {
            Refusal::Anonymous => 0,
            Refusal::BadPassword => 1,
            Refusal::BadToken(_) => 2,
            Refusal::LockedOut => 3,
            Refusal::BadAuthenticationData(_) => 4,
            Refusal::BadAuthenticationMethod => 5,
        }
    }

    fn reason_code(self) -> ReasonCode {
        match self {
            Refusal::Anonymous | Refusal::LockedOut => ReasonCode::NotAuthorized,
            Refusal::BadPassword | Refusal::BadToken(_) => ReasonCode::BadUserNameOrPassword,
            Refusal::BadAuthenticationData(_) => ReasonCode::UnspecifiedError,
            Refusal::BadAuthenticationMethod => ReasonCode::BadAuthenticationMethod,
        }
    }

    fn describe(self) -> String {
        match self {
            Refusal::Anonymous => "no credentials, and anonymous clients are not allowed".into(),
            Refusal::BadPassword => "bad user name or password".into(),
            Refusal::BadToken(why) => why.to_string(),
            Refusal::LockedOut => "too many failed authentications from this address".into(),
            Refusal::BadAuthenticationData(why) => format!("{}: {why}", scram::METHOD),
            Refusal::BadAuthenticationMethod => format!(
                "unknown authentication method (the gateway offers {} with a password file)",
                scram::METHOD
            ),
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
    /// `SCRAM-SHA-256` enhanced authentication, counted when the exchange begins: the proof
    /// comes later, on the broker's task, and a failed one counts in the broker's
    /// authentication failures (`mqtt_auth_failures_total`).
    Scram,
}

impl Method {
    /// Every method, in the order of their discriminants.
    pub const ALL: [Method; 5] = [
        Method::Password,
        Method::Token,
        Method::Certificate,
        Method::Anonymous,
        Method::Scram,
    ];

    /// The label of the `mqtt_auth_accepted_total` counter.
    pub fn label(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Token => "token",
            Method::Certificate => "certificate",
            Method::Anonymous => "anonymous",
            Method::Scram => "scram",
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
    /// Where SCRAM CONNECTs come from, for [`scram_hook::ScramHook`] to count failures.
    scram_origins: scram_hook::Origins,
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
            scram_origins: scram_hook::Origins::default(),
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
        let metrics_token = match &config.metrics_token_file {
            None => None,
            Some(path) => match read_metrics_token(path) {
                Ok(token) => Some(token),
                Err(error) => {
                    warn!("reload: {error}; keeping the previous metrics token");
                    current.metrics_token.clone()
                }
            },
        };
        let loaded = Loaded {
            passwords,
            acl,
            tokens,
            metrics_token,
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
        if let Some(method) = connect.properties.authentication_method.as_deref() {
            if method == scram::METHOD && loaded.passwords.is_some() {
                return self.begin_scram(presented, &loaded, now);
            }
            // No other method is known (and SCRAM needs the password file's verifiers).
            return self.refuse(presented, Refusal::BadAuthenticationMethod);
        }
        let username = connect.username.as_deref();
        let password = connect.password.as_deref();

        let verified: Result<(Method, Option<String>, Option<token::VerifiedToken>), Refusal> =
            if let Some(name) = presented
                .certificate_name
                .filter(|_| self.config.tls_identity_as_username)
            {
                Ok((Method::Certificate, Some(name.to_string()), None))
            } else if let Some(password) = password {
                self.check_password(&loaded, username, password).await
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
                if refusal != Refusal::Anonymous {
                    self.record_failure(presented.address, now);
                }
                return self.refuse(presented, refusal);
            }
        };
        let client_id = connect.client_id.to_string();
        let token_rules = token.as_ref().and_then(|token| token.rules.clone());
        let permissions = self.permissions(&loaded, username.clone(), client_id, token_rules);
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

    /// What a client may do: its ACL rules and its token's claim, if there are any.
    fn permissions(
        self: &Arc<Self>,
        loaded: &Loaded,
        username: Option<String>,
        client_id: String,
        token_rules: Option<ClientRules>,
    ) -> Option<Box<dyn Permissions>> {
        (loaded.acl.is_some() || token_rules.is_some()).then(|| {
            Box::new(ClientAccess::new(
                self.clone(),
                username,
                client_id,
                token_rules,
            )) as Box<dyn Permissions>
        })
    }

    /// A CONNECT with Authentication Method `SCRAM-SHA-256`. Only its shape is checked here:
    /// the client-first message must parse, and a User Name, if the CONNECT has one, must be
    /// the SCRAM user. The grant names that user, with their permissions, and holds only if
    /// the exchange proves them: the broker's hook ([`scram_hook::ScramHook`]) refuses the
    /// CONNECT otherwise. No password is hashed, and the CONNECT's Password is not looked at.
    fn begin_scram(
        self: &Arc<Self>,
        presented: Presented<'_>,
        loaded: &Loaded,
        now: Instant,
    ) -> Decision {
        let connect = presented.connect;
        let data = connect
            .properties
            .authentication_data
            .as_deref()
            .unwrap_or_default();
        let first = match scram::ClientFirst::parse(data) {
            Ok(first) => first,
            Err(error) => return self.refuse(presented, Refusal::BadAuthenticationData(error)),
        };
        if connect
            .username
            .as_deref()
            .is_some_and(|name| name != first.username)
        {
            self.record_failure(presented.address, now);
            return self.refuse(presented, Refusal::BadPassword);
        }
        if let Some(address) = presented.address {
            self.scram_origins
                .note(&first.username, first.nonce, address, now);
        }
        let username = first.username.clone();
        let client_id = connect.client_id.to_string();
        let permissions = self.permissions(loaded, Some(username.clone()), client_id, None);
        Decision {
            authentication: Authentication::Verified(Box::new(Grant {
                username: Some(ByteStr::from(username)),
                permissions,
                valid_until: None,
            })),
            outcome: Ok(Method::Scram),
        }
    }

    /// Checks a password, or a token sent as one: the method, the user name it establishes,
    /// and the token. A password hash runs on the blocking pool, in one of the hashing slots.
    async fn check_password(
        &self,
        loaded: &Arc<Loaded>,
        username: Option<&str>,
        password: &[u8],
    ) -> Result<(Method, Option<String>, Option<token::VerifiedToken>), Refusal> {
        if let Some(tokens) = &loaded.tokens
            && TokenVerifier::looks_like_token(password)
        {
            return tokens
                .verify(password, username)
                .map(|token| (Method::Token, token.username.clone(), Some(token)))
                .map_err(Refusal::BadToken);
        }
        let (Some(_), Some(user)) = (&loaded.passwords, username) else {
            return Err(Refusal::BadPassword);
        };
        let check = {
            let loaded = loaded.clone();
            let user = user.to_string();
            let password = password.to_vec();
            move || {
                loaded
                    .passwords
                    .as_ref()
                    .is_some_and(|file| file.verify(&user, &password))
            }
        };
        let _turn = self.hashing.acquire().await;
        if tokio::task::spawn_blocking(check).await.unwrap_or(false) {
            Ok((Method::Password, Some(user.to_string()), None))
        } else {
            Err(Refusal::BadPassword)
        }
    }

    /// Whether an HTTP request with this `Authorization` header may read the API (`scrape`
    /// false) or the metrics (`scrape` true): open while no authentication is configured (and,
    /// for the metrics, no metrics token); otherwise an admin user's credentials (HTTP Basic
    /// against the password file, or a bearer token whose subject is an admin), or for the
    /// metrics the metrics token. Failures count towards the address's lock-out.
    pub async fn authorize_http(
        &self,
        authorization: Option<&str>,
        certificate_name: Option<&str>,
        address: Option<IpAddr>,
        scrape: bool,
    ) -> HttpAccess {
        let loaded = self.current();
        let guarded = self.config.authenticates() || (scrape && loaded.metrics_token.is_some());
        if !guarded {
            return HttpAccess::Allowed;
        }
        let now = Instant::now();
        if address.is_some_and(|address| self.lockout.is_locked(address, now)) {
            return HttpAccess::Unauthorized("too many failed authentications from this address");
        }
        // Over HTTPS, a client certificate names its user as it does for MQTT.
        let certificate_user = certificate_name.filter(|_| self.config.tls_identity_as_username);
        let Some(authorization) = authorization else {
            return match certificate_user {
                Some(user) => self.admin_or_forbidden(Some(user.to_string()), address),
                None => HttpAccess::Unauthorized("credentials required"),
            };
        };
        let (scheme, value) = authorization.split_once(' ').unwrap_or((authorization, ""));
        let value = value.trim();
        let checked = if scheme.eq_ignore_ascii_case("bearer") {
            let is_metrics_token = loaded
                .metrics_token
                .as_ref()
                .is_some_and(|token| bool::from(token.as_bytes().ct_eq(value.as_bytes())));
            if scrape && is_metrics_token {
                return HttpAccess::Allowed;
            }
            match &loaded.tokens {
                Some(tokens) => tokens
                    .verify(value.as_bytes(), None)
                    .map(|token| token.username)
                    .map_err(Refusal::BadToken),
                None => Err(Refusal::BadPassword),
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            match decoded.as_deref().and_then(|text| text.split_once(':')) {
                Some((user, password)) => self
                    .check_password(&loaded, Some(user), password.as_bytes())
                    .await
                    .map(|(_, username, _)| username),
                None => Err(Refusal::BadPassword),
            }
        } else {
            Err(Refusal::BadPassword)
        };
        match checked {
            Ok(user) => self.admin_or_forbidden(user, address),
            Err(refusal) => {
                self.record_failure(address, now);
                warn!(
                    "refusing HTTP request from {}: {}",
                    address.map_or_else(|| "?".to_string(), |a| a.to_string()),
                    refusal.describe()
                );
                HttpAccess::Unauthorized("bad credentials")
            }
        }
    }

    fn admin_or_forbidden(&self, user: Option<String>, address: Option<IpAddr>) -> HttpAccess {
        if let Some(user) = &user
            && self.config.admin_users.contains(user)
        {
            return HttpAccess::Allowed;
        }
        warn!(
            "refusing HTTP request from {}: user {:?} is not an admin (--admin-user)",
            address.map_or_else(|| "?".to_string(), |a| a.to_string()),
            user.unwrap_or_default()
        );
        HttpAccess::Forbidden
    }

    /// Counts a failed authentication from `address` towards its lock-out.
    fn record_failure(&self, address: Option<IpAddr>, now: Instant) {
        if let Some(address) = address
            && self.lockout.record_failure(address, now)
        {
            warn!(
                "locking out {address} for {:?} after {} failed authentications",
                self.config.lockout.backoff, self.config.lockout.threshold
            );
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
    let metrics_token = config
        .metrics_token_file
        .as_deref()
        .map(read_metrics_token)
        .transpose()?;
    Ok(Loaded {
        passwords,
        acl,
        tokens,
        metrics_token,
    })
}

/// The metrics token: the file's first line, at least 16 characters.
fn read_metrics_token(path: &std::path::Path) -> Result<String, SecurityError> {
    let error = |problem: String| SecurityError::MetricsToken {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        return Err(error("the token must be at least 16 characters".into()));
    }
    Ok(token)
}

/// One log line saying what is in force (counts, never contents).
fn describe(config: &SecurityConfig, loaded: &Loaded) {
    let mut parts = Vec::new();
    if let Some(passwords) = &loaded.passwords {
        parts.push(format!(
            "{} users in the password file ({} with SCRAM-SHA-256)",
            passwords.len(),
            passwords.scram_users()
        ));
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
    if !config.admin_users.is_empty() {
        parts.push(format!("{} admin users", config.admin_users.len()));
    }
    if loaded.metrics_token.is_some() {
        parts.push("a metrics token".into());
    }
    let anonymous = if !config.authenticates() || config.allow_anonymous {
        "anonymous clients allowed"
    } else {
        "anonymous clients refused"
    };
    parts.push(anonymous.into());
    info!("security: {}", parts.join(", "));
}

/// What an HTTP request may see, from [`Security::authorize_http`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpAccess {
    /// Go ahead.
    Allowed,
    /// No credentials, or credentials that do not verify (401), with why.
    Unauthorized(&'static str),
    /// Valid credentials of a user who is not an admin (403).
    Forbidden,
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
    /// write known. Looked up on every publish and delivery, so hashed with foldhash, like the
    /// broker's own maps.
    cache: HashMap<Box<str>, u8, foldhash::fast::RandomState>,
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
            cache: HashMap::default(),
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
