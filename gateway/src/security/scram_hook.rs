//! MQTT 5.0 enhanced authentication with `SCRAM-SHA-256`: the gateway's [`AuthHook`], which
//! carries the exchange of [`super::scram`] in AUTH packets, on the broker's task.
//!
//! How a SCRAM CONNECT goes, across the two places the gateway decides:
//!
//! 1. On the connection's task, [`Security::authenticate`] sees Authentication Method
//!    `SCRAM-SHA-256` (with a password file configured) and parses the client-first message in
//!    the Authentication Data: malformed is refused there (0x80), and so is a CONNECT whose
//!    User Name, if it has one, is not the SCRAM user (0x86). Otherwise it grants, *provisionally*,
//!    the SCRAM user: the [`Grant`](broker_core::Grant) names them and carries their ACL rules,
//!    so the session's user name and permissions are that user's once it is accepted. No
//!    password, no hashing: the CONNECT's Password is not looked at. It also notes the client's
//!    address for this exchange ([`Origins`]), which the broker's task does not know.
//! 2. On the broker's task, [`ScramHook::authenticate`] starts the exchange: it looks the user's
//!    verifier up (a user who is not in the file, or has no verifier, gets a decoy with a salt
//!    that is stable per name, so the answer has the same shape), and answers AUTH 0x18 with
//!    the server-first message. Nothing is accepted at this step.
//! 3. The client's AUTH 0x18 carries the client-final message;
//!    [`ScramHook::continue_authentication`] finds the exchange by its nonce, checks that it
//!    belongs to this client identifier and to the user the connection is being accepted as
//!    (the broker asks about the grant's user name; 0x87 otherwise, and the exchange is left
//!    to the connection that started it), and verifies the proof, once: CONNACK 0x00 with
//!    the server-final message (`v=...`) in its Authentication Data, or CONNACK 0x86 (wrong
//!    proof, unknown user: one answer for both) and one failure towards the address's lock-out,
//!    or 0x80 for a message that does not parse.
//!
//! Re-authentication: an AUTH 0x19 on an accepted connection whose CONNECT named
//! `SCRAM-SHA-256` carries a new client-first message; it must name the connection's user
//! (0x87 otherwise: permissions were settled at CONNECT), and the exchange runs as above, ending
//! in AUTH 0x00 with the server-final message or DISCONNECT 0x87 (Not authorized: a DISCONNECT
//! cannot carry 0x86, which MQTT 5.0 defines for CONNACK only). Its failures are not counted
//! towards the lock-out (the broker's task does not know the address); a failure costs the
//! connection, and only the user's own password can be tried that way.
//!
//! Exchanges are kept by their nonce, not by connection (the hook is not told which connection
//! asks): the binding to the client identifier and the user name is what stops a connection
//! from finishing an exchange another one started as another user. Each exchange can be
//! finished once; one that is not finished within [`EXCHANGE_TIMEOUT`] (the client went away)
//! is forgotten, and at most [`MAX_EXCHANGES`] are kept (the oldest go first).
//!
//! Every other authentication method, and every authorization question, goes to the wrapped
//! hook. Without a password file there are no verifiers, and `SCRAM-SHA-256` goes there too
//! (the gateway's own hook refuses it with 0x8C, as any method it does not know).

use super::Security;
use super::scram::{
    self, ClientFinal, ClientFirst, Failure, METHOD, ScramCredential, ScramError, ServerExchange,
};
use broker_core::{AuthDecision, AuthHook, ClientIdentity};
use bytes::Bytes;
use mqtt_codec::{ByteStr, ConnectPacket, Properties, ReasonCode};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// How long an exchange waits for the client-final message.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Exchanges under way, at most: each keeps a few hundred bytes.
pub const MAX_EXCHANGES: usize = 16_384;

/// How long the address of a SCRAM CONNECT waits for the broker's task to take it; the CONNECT
/// is on its way there, so this is only for those the broker refuses before the hook sees them.
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The source addresses of SCRAM CONNECTs, noted by [`Security::authenticate`] and taken by the
/// hook when the CONNECT reaches it, so that a failed proof counts towards that address's
/// lock-out. Keyed by user and client nonce (both in the client-first message, which both
/// sides parse); bounded, and an address that finds no room is simply not counted.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    entries: Mutex<HashMap<OriginKey, (IpAddr, Instant)>>,
}

/// A user name and a client nonce.
type OriginKey = (Box<str>, Box<str>);

impl Origins {
    /// Notes that `user` with `nonce` connects from `address`.
    pub(crate) fn note(&self, user: &str, nonce: &str, address: IpAddr, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_EXCHANGES {
            entries.retain(|_, (_, at)| now.duration_since(*at) < ORIGIN_TIMEOUT);
            if entries.len() >= MAX_EXCHANGES {
                return;
            }
        }
        entries.insert((user.into(), nonce.into()), (address, now));
    }

    /// Takes the address noted for `user` with `nonce`.
    fn take(&self, user: &str, nonce: &str) -> Option<IpAddr> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key: OriginKey = (user.into(), nonce.into());
        entries.remove(&key).map(|(address, _)| address)
    }
}

/// One exchange waiting for its client-final message.
#[derive(Debug)]
struct Pending {
    client_id: Box<str>,
    exchange: ServerExchange,
    /// Where the CONNECT came from; `None` for re-authentication.
    address: Option<IpAddr>,
    /// The answer to a wrong proof: 0x86 in a CONNACK, 0x87 in a DISCONNECT (which has no
    /// 0x86) for an exchange an AUTH packet started.
    bad_proof: ReasonCode,
}

/// The gateway's [`AuthHook`]: `SCRAM-SHA-256` here, everything else to the wrapped hook.
pub struct ScramHook {
    security: Arc<Security>,
    inner: Box<dyn AuthHook>,
    /// Exchanges by their combined nonce.
    exchanges: HashMap<Box<str>, Pending>,
    /// Nonces in the order their exchanges started, for expiry (finished ones linger here
    /// until they come to the front).
    started: VecDeque<(Instant, Box<str>)>,
    /// Makes the decoys' salts: random per process.
    decoy_key: [u8; 32],
}

impl std::fmt::Debug for ScramHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramHook")
            .field("exchanges", &self.exchanges.len())
            .finish_non_exhaustive()
    }
}

impl ScramHook {
    /// `inner` with `SCRAM-SHA-256` added when security is configured (without it there are
    /// no accounts, and `inner` alone decides).
    pub fn wrap(security: Option<Arc<Security>>, inner: Box<dyn AuthHook>) -> Box<dyn AuthHook> {
        match security {
            Some(security) => Box::new(ScramHook::new(security, inner)),
            None => inner,
        }
    }

    /// A hook answering `SCRAM-SHA-256` from `security`'s password file.
    pub fn new(security: Arc<Security>, inner: Box<dyn AuthHook>) -> ScramHook {
        use argon2::password_hash::rand_core::{OsRng, RngCore};
        let mut decoy_key = [0u8; 32];
        OsRng.fill_bytes(&mut decoy_key);
        ScramHook {
            security,
            inner,
            exchanges: HashMap::new(),
            started: VecDeque::new(),
            decoy_key,
        }
    }

    /// Whether this hook answers `method`: SCRAM, with a password file to answer from.
    fn handles(&self, method: Option<&str>) -> bool {
        method == Some(METHOD) && self.security.current().passwords.is_some()
    }

    /// Starts an exchange: AUTH 0x18 with the server-first message.
    fn start(
        &mut self,
        client_id: &str,
        first: &ClientFirst<'_>,
        address: Option<IpAddr>,
        bad_proof: ReasonCode,
        now: Instant,
    ) -> AuthDecision {
        let user = first.username.as_str();
        let who = Who {
            client_id,
            user,
            address,
        };
        if first.authzid.as_deref().is_some_and(|id| id != user) {
            let why = "acting as another user (a=) is not supported";
            return who.refuse(why, ReasonCode::NotAuthorized);
        }
        let Ok(server_nonce) = scram::server_nonce() else {
            let why = "no random numbers for a nonce";
            return who.refuse(why, ReasonCode::UnspecifiedError);
        };
        // The decoy is made for every exchange, so that an unknown user costs the same.
        let decoy = ScramCredential::decoy(&self.decoy_key, user);
        let loaded = self.security.current();
        let (credential, known) = match loaded.passwords.as_ref().and_then(|p| p.scram(user)) {
            Some(credential) => (credential.clone(), true),
            None => (decoy, false),
        };
        let exchange = ServerExchange::start(first, credential, known, &server_nonce);
        let server_first = Bytes::copy_from_slice(exchange.server_first().as_bytes());
        self.expire(now);
        let nonce: Box<str> = exchange.nonce().into();
        self.started.push_back((now, nonce.clone()));
        let pending = Pending {
            client_id: client_id.into(),
            exchange,
            address,
            bad_proof,
        };
        self.exchanges.insert(nonce, pending);
        AuthDecision::Continue(Properties {
            authentication_data: Some(server_first),
            ..Properties::default()
        })
    }

    /// Forgets exchanges older than [`EXCHANGE_TIMEOUT`], and the oldest beyond
    /// [`MAX_EXCHANGES`] (leaving room for one more).
    fn expire(&mut self, now: Instant) {
        while let Some((at, nonce)) = self.started.front() {
            let stale = now.duration_since(*at) >= EXCHANGE_TIMEOUT;
            if !stale && self.exchanges.len() < MAX_EXCHANGES {
                break;
            }
            self.exchanges.remove(nonce);
            self.started.pop_front();
        }
        if self.started.len() > 2 * MAX_EXCHANGES {
            let exchanges = &self.exchanges;
            self.started
                .retain(|(_, nonce)| exchanges.contains_key(nonce));
        }
    }

    /// Checks a client-final message against its exchange.
    fn finish(&mut self, client: &ClientIdentity<'_>, data: &[u8], now: Instant) -> AuthDecision {
        let mut who = Who {
            client_id: client.client_id,
            user: client.username.unwrap_or(""),
            address: None,
        };
        let last = match ClientFinal::parse(data) {
            Ok(last) => last,
            Err(error) => return who.malformed(error),
        };
        self.expire(now);
        let ours = self.exchanges.get(last.nonce).map(|pending| {
            &*pending.client_id == client.client_id
                && client.username == Some(pending.exchange.username())
        });
        if ours == Some(false) {
            // Left for the connection that started it.
            let why = "the exchange was started by another client or user";
            return who.refuse(why, ReasonCode::NotAuthorized);
        }
        // One try per exchange.
        let Some(pending) = self.exchanges.remove(last.nonce) else {
            let why = "no exchange with this nonce (it took too long, or was not started)";
            return who.refuse(why, ReasonCode::NotAuthorized);
        };
        who.address = pending.address;
        match pending.exchange.finish(&last) {
            Ok(server_final) => AuthDecision::Accept(Properties {
                authentication_data: Some(Bytes::from(server_final.into_bytes())),
                ..Properties::default()
            }),
            Err(Failure::Malformed(error)) => who.malformed(error),
            Err(Failure::BadProof) => {
                self.security.record_failure(who.address, now);
                who.refuse("bad user name or password", pending.bad_proof)
            }
        }
    }
}

/// Who a refusal is for, as its log line names them.
struct Who<'a> {
    client_id: &'a str,
    user: &'a str,
    address: Option<IpAddr>,
}

impl Who<'_> {
    /// Logs a refusal (who, from where, why; never what they sent) and returns it.
    fn refuse(&self, why: &str, reason: ReasonCode) -> AuthDecision {
        let address = self
            .address
            .map_or_else(|| "?".to_string(), |a| a.to_string());
        warn!(
            client_id = %self.client_id,
            "refusing authentication of client {:?} (user {:?}) from {address}: {METHOD}: {why}",
            self.client_id,
            self.user,
        );
        AuthDecision::Refuse(reason)
    }

    /// Refuses a message that does not parse: 0x80.
    fn malformed(&self, error: ScramError) -> AuthDecision {
        self.refuse(&error.to_string(), ReasonCode::UnspecifiedError)
    }
}

impl AuthHook for ScramHook {
    fn authenticate(&mut self, connect: &ConnectPacket, client_id: &str) -> AuthDecision {
        if !self.handles(connect.properties.authentication_method.as_deref()) {
            return self.inner.authenticate(connect, client_id);
        }
        let data = connect
            .properties
            .authentication_data
            .as_deref()
            .unwrap_or_default();
        // The gateway parsed it before (and refused what does not parse); again here, where
        // the exchange is kept.
        match ClientFirst::parse(data) {
            Ok(first) => {
                let origins = &self.security.scram_origins;
                let address = origins.take(&first.username, first.nonce);
                let bad_proof = ReasonCode::BadUserNameOrPassword;
                self.start(client_id, &first, address, bad_proof, Instant::now())
            }
            Err(error) => {
                let user = connect.username.as_deref().unwrap_or("");
                let who = Who {
                    client_id,
                    user,
                    address: None,
                };
                who.malformed(error)
            }
        }
    }

    fn continue_authentication(
        &mut self,
        client: &ClientIdentity<'_>,
        method: &ByteStr,
        properties: &Properties,
    ) -> AuthDecision {
        if !self.handles(Some(method)) {
            return self
                .inner
                .continue_authentication(client, method, properties);
        }
        let data = properties
            .authentication_data
            .as_deref()
            .unwrap_or_default();
        let now = Instant::now();
        if !ClientFirst::looks_like(data) {
            return self.finish(client, data, now);
        }
        // A new exchange on this connection: re-authentication (AUTH 0x19), or a client
        // starting over. For the connection's own user only.
        let who = Who {
            client_id: client.client_id,
            user: client.username.unwrap_or(""),
            address: None,
        };
        match ClientFirst::parse(data) {
            Ok(first) if client.username == Some(first.username.as_str()) => {
                // Refused with a DISCONNECT, when it is a re-authentication.
                let bad_proof = ReasonCode::NotAuthorized;
                self.start(client.client_id, &first, None, bad_proof, now)
            }
            Ok(_) => {
                let why = "re-authentication must name the connection's user";
                who.refuse(why, ReasonCode::NotAuthorized)
            }
            Err(error) => who.malformed(error),
        }
    }

    fn authorize_subscribe(&mut self, client: &ClientIdentity<'_>, filter: &str) -> bool {
        self.inner.authorize_subscribe(client, filter)
    }

    fn authorize_publish(&mut self, client: &ClientIdentity<'_>, topic: &str) -> bool {
        self.inner.authorize_publish(client, topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::SecurityConfig;
    use crate::security::password_file::PasswordFile;
    use base64::Engine;
    use broker_core::AllowAll;

    /// A hook over a password file with alice in it, and the directory to remove.
    fn hook(name: &str) -> (ScramHook, std::path::PathBuf) {
        let directory = std::env::temp_dir().join(format!(
            "scram-hook-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("passwords");
        let mut file = PasswordFile::default();
        file.set("alice", b"alice's password").unwrap();
        file.save(&path).unwrap();
        let config = SecurityConfig {
            password_file: Some(path),
            ..SecurityConfig::default()
        };
        let security = Security::load(config).unwrap().expect("configured");
        (ScramHook::new(security, Box::new(AllowAll)), directory)
    }

    /// Starts an exchange for alice; the client-final message it would take, with a wrong proof.
    fn start(hook: &mut ScramHook, client_nonce: &str, now: Instant) -> String {
        let text = format!("n,,n=alice,r={client_nonce}");
        let first = ClientFirst::parse(text.as_bytes()).unwrap();
        let bad_proof = ReasonCode::BadUserNameOrPassword;
        let AuthDecision::Continue(properties) = hook.start("c", &first, None, bad_proof, now)
        else {
            panic!("an exchange starts");
        };
        let server_first = properties.authentication_data.unwrap();
        let server_first = std::str::from_utf8(&server_first).unwrap().to_string();
        let nonce = server_first
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("r=")
            .unwrap();
        let proof = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
        format!("c=biws,r={nonce},p={proof}")
    }

    const ALICE: ClientIdentity<'static> = ClientIdentity {
        client_id: "c",
        username: Some("alice"),
    };

    #[test]
    fn an_exchange_is_tried_once_and_forgotten_after_the_timeout() {
        let (mut hook, directory) = hook("timeout");
        let now = Instant::now();
        let last = start(&mut hook, "one", now);
        let later = now + EXCHANGE_TIMEOUT - Duration::from_secs(1);
        assert_eq!(
            hook.finish(&ALICE, last.as_bytes(), later),
            AuthDecision::Refuse(ReasonCode::BadUserNameOrPassword),
            "a wrong proof, in time"
        );
        assert_eq!(
            hook.finish(&ALICE, last.as_bytes(), later),
            AuthDecision::Refuse(ReasonCode::NotAuthorized),
            "no second try"
        );
        let last = start(&mut hook, "two", now);
        assert_eq!(
            hook.finish(&ALICE, last.as_bytes(), now + EXCHANGE_TIMEOUT),
            AuthDecision::Refuse(ReasonCode::NotAuthorized),
            "too late"
        );
        assert!(hook.exchanges.is_empty());
        std::fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn exchanges_are_bounded_and_the_oldest_go_first() {
        let (mut hook, directory) = hook("bound");
        let now = Instant::now();
        let first = start(&mut hook, "first", now);
        for index in 0..MAX_EXCHANGES + 10 {
            start(&mut hook, &format!("n{index}"), now);
        }
        assert_eq!(hook.exchanges.len(), MAX_EXCHANGES);
        assert!(hook.started.len() <= 2 * MAX_EXCHANGES + 1);
        assert_eq!(
            hook.finish(&ALICE, first.as_bytes(), now),
            AuthDecision::Refuse(ReasonCode::NotAuthorized),
            "the oldest was dropped"
        );
        std::fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn other_methods_go_to_the_wrapped_hook() {
        let (mut hook, directory) = hook("other");
        let mut connect = mqtt_codec::ConnectPacket {
            protocol: mqtt_codec::ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 0,
            client_id: ByteStr::from("c"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        assert_eq!(
            hook.authenticate(&connect, "c"),
            AuthDecision::Accept(Properties::default())
        );
        connect.properties.authentication_method = Some(ByteStr::from("SCRAM-SHA-1"));
        assert_eq!(
            hook.authenticate(&connect, "c"),
            AuthDecision::Refuse(ReasonCode::BadAuthenticationMethod)
        );
        std::fs::remove_dir_all(directory).unwrap();
    }
}
