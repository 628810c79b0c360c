//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), without channel binding: the stored verifier,
//! the messages, and the server's side of one exchange. Sans-IO and clock-free: the gateway's
//! [`AuthHook`](broker_core::AuthHook) in [`super::scram_hook`] carries the messages in MQTT 5.0
//! AUTH packets and keeps the exchanges.
//!
//! The exchange, with the gs2 header `n,,` (no channel binding; `y,,` is accepted too, as the
//! server offers no `-PLUS` variant):
//!
//! ```text
//! client-first  n,,n=user,r=<client nonce>
//! server-first  r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final  c=biws,r=<client nonce><server nonce>,p=<base64 ClientProof>
//! server-final  v=<base64 ServerSignature>
//! ```
//!
//! The server stores no password, only the verifier: a salt, an iteration count, `StoredKey =
//! H(HMAC(SaltedPassword, "Client Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")`,
//! where `SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)`. The slow part,
//! PBKDF2, runs only when a password is set (and on the client at each login): checking a
//! proof is two HMACs and a hash, cheap enough for the broker's task.
//!
//! Passwords are prepared with SASLprep (RFC 4013) as the RFC asks, or used as their bytes when
//! SASLprep refuses them (PostgreSQL does the same); for ASCII passwords both are the same.
//! User names are compared as sent (after undoing SCRAM's `=2C`/`=3D` escapes).
//!
//! Parsing never panics: anything unexpected is a [`ScramError`], which names the problem but
//! never repeats the message (it may hold a proof).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The MQTT Authentication Method naming this mechanism.
pub const METHOD: &str = "SCRAM-SHA-256";

/// The iteration count `gateway passwd` writes, and the least a stored verifier may have.
///
/// RFC 7677's minimum, and PostgreSQL's default. Every login costs the *client* this many
/// HMAC-SHA-256 rounds (a few milliseconds in a browser, more on a small device), while the
/// server never runs PBKDF2 at login; what a higher count would buy is a slower offline
/// attack on a stolen password file, which is mode 0600 and also holds each user's argon2id
/// hash. A verifier with more iterations (written by another tool) is read as it is.
pub const ITERATIONS: u32 = 4096;

/// Salt bytes in a new verifier (and in the decoys for users without one).
pub const SALT_BYTES: usize = 16;

/// Random bytes in a server nonce (24 characters of base64).
pub const NONCE_BYTES: usize = 18;

/// The longest client message accepted: a user name, a nonce and a proof fit many times over,
/// and an exchange keeps its client-first message until it ends.
pub const MAX_MESSAGE: usize = 1024;

/// The text before a verifier in the password file (RFC 5803's and PostgreSQL's form).
const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A user's SCRAM-SHA-256 verifier, as stored in the password file.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The iteration count only: salt and keys are secrets.
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The password as SCRAM hashes it: SASLprep'd where SASLprep accepts it, else as it is.
fn prepared(password: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match std::str::from_utf8(password).map(stringprep::saslprep) {
        Ok(Ok(text)) => match text {
            std::borrow::Cow::Borrowed(text) => std::borrow::Cow::Borrowed(text.as_bytes()),
            std::borrow::Cow::Owned(text) => std::borrow::Cow::Owned(text.into_bytes()),
        },
        _ => std::borrow::Cow::Borrowed(password),
    }
}

impl ScramCredential {
    /// The verifier of `password` with `salt` and `iterations` (PBKDF2: slow on purpose).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramCredential {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(&prepared(password), salt, iterations, &mut salted);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramCredential {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// A new verifier of `password`: a random salt, [`ITERATIONS`].
    pub fn generate(password: &[u8]) -> Result<ScramCredential, String> {
        use argon2::password_hash::rand_core::{OsRng, RngCore};
        let mut salt = [0u8; SALT_BYTES];
        OsRng
            .try_fill_bytes(&mut salt)
            .map_err(|error| error.to_string())?;
        Ok(ScramCredential::derive(password, &salt, ITERATIONS))
    }

    /// A verifier nobody's password matches, the same for the same `user` and `key`: what an
    /// exchange for a user without a verifier goes through, so that its server-first message
    /// looks like a real one (a stable salt, the usual iteration count).
    pub fn decoy(key: &[u8; 32], user: &str) -> ScramCredential {
        let salt = hmac(key, &[b"salt\0", user.as_bytes()]);
        ScramCredential {
            iterations: ITERATIONS,
            salt: salt[..SALT_BYTES].to_vec(),
            stored_key: hmac(key, &[b"stored\0", user.as_bytes()]),
            server_key: hmac(key, &[b"server\0", user.as_bytes()]),
        }
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64). The
    /// problem, if any, never quotes the text.
    pub fn parse(text: &str) -> Result<ScramCredential, &'static str> {
        let malformed =
            "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey)";
        let rest = text.strip_prefix(VERIFIER_PREFIX).ok_or(malformed)?;
        let (parameters, keys) = rest.split_once('$').ok_or(malformed)?;
        let (iterations, salt) = parameters.split_once(':').ok_or(malformed)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(malformed)?;
        let iterations = iterations
            .parse::<u32>()
            .map_err(|_| "bad iteration count in a SCRAM-SHA-256 verifier")?;
        if iterations < ITERATIONS {
            return Err("a SCRAM-SHA-256 verifier needs at least 4096 iterations");
        }
        let decode = |part: &str| {
            STANDARD
                .decode(part)
                .map_err(|_| "bad base64 in a SCRAM-SHA-256 verifier")
        };
        let salt = decode(salt)?;
        if salt.is_empty() {
            return Err("empty salt in a SCRAM-SHA-256 verifier");
        }
        let key = |part: &str| -> Result<[u8; 32], &'static str> {
            decode(part)?
                .try_into()
                .map_err(|_| "a SCRAM-SHA-256 key must be 32 bytes")
        };
        Ok(ScramCredential {
            iterations,
            salt,
            stored_key: key(stored_key)?,
            server_key: key(server_key)?,
        })
    }

    /// The text [`ScramCredential::parse`] reads.
    pub fn to_text(&self) -> String {
        format!(
            "{VERIFIER_PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// Why a SCRAM message was refused. Names the problem, never the message's content.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ScramError {
    /// No Authentication Data, or more than [`MAX_MESSAGE`] bytes.
    #[error("the SCRAM message is missing or longer than {MAX_MESSAGE} bytes")]
    Length,
    /// Not UTF-8.
    #[error("the SCRAM message is not UTF-8")]
    NotUtf8,
    /// The gs2 header is not `n,`, `y,` or `p=...,` followed by an optional `a=` and a comma.
    #[error("bad gs2 header in the SCRAM client-first message")]
    Gs2Header,
    /// The client asked for channel binding (`p=`), which this server does not offer.
    #[error("channel binding is not supported (use the gs2 header n,,)")]
    ChannelBinding,
    /// An extension the client says the server must understand (`m=`).
    #[error("a mandatory SCRAM extension (m=) is not supported")]
    MandatoryExtension,
    /// An attribute missing, out of order, or not `x=value`.
    #[error("the SCRAM message lacks {0} or has it in the wrong place")]
    Attribute(&'static str),
    /// A user name that is empty or has a `=` that is not `=2C` or `=3D`.
    #[error("bad user name in the SCRAM client-first message")]
    UserName,
    /// A nonce that is empty or has characters outside printable ASCII (or a comma).
    #[error("bad nonce in the SCRAM message")]
    Nonce,
    /// A proof or channel binding that is not base64 (or a proof of the wrong length).
    #[error("bad base64 in the SCRAM client-final message")]
    Base64,
    /// The client-final message's `c=` is not the gs2 header of its client-first message.
    #[error("the SCRAM channel binding (c=) does not repeat the gs2 header")]
    ChannelBindingMismatch,
    /// The client-final message's nonce is not the exchange's.
    #[error("the SCRAM client-final nonce is not the server-first one")]
    NonceMismatch,
}

fn text(data: &[u8]) -> Result<&str, ScramError> {
    if data.is_empty() || data.len() > MAX_MESSAGE {
        return Err(ScramError::Length);
    }
    std::str::from_utf8(data).map_err(|_| ScramError::NotUtf8)
}

/// The value of the attribute `name` (`n=value`) at the head of `part`.
fn attribute<'a>(
    part: Option<&'a str>,
    name: char,
    what: &'static str,
) -> Result<&'a str, ScramError> {
    part.and_then(|part| part.strip_prefix(name))
        .and_then(|part| part.strip_prefix('='))
        .ok_or(ScramError::Attribute(what))
}

/// Whether `nonce` is a valid nonce: printable ASCII but `,`, at least one character.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Undoes the `=2C`/`=3D` escapes of a `saslname`.
fn decode_name(name: &str) -> Result<String, ScramError> {
    if name.is_empty() {
        return Err(ScramError::UserName);
    }
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).ok_or(ScramError::UserName)?;
        decoded.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err(ScramError::UserName),
        });
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// A client-first message: `gs2-header client-first-message-bare`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    /// The gs2 header, `n,,` (or `y,,`), with its two commas; `c=` must repeat it.
    pub gs2_header: &'a str,
    /// The user name, unescaped.
    pub username: String,
    /// The authorization identity (`a=`), unescaped, if the client sent one.
    pub authzid: Option<String>,
    /// The client's nonce.
    pub nonce: &'a str,
    /// Everything after the gs2 header: the first part of the AuthMessage.
    pub bare: &'a str,
}

impl<'a> ClientFirst<'a> {
    /// Parses a client-first message.
    pub fn parse(data: &'a [u8]) -> Result<ClientFirst<'a>, ScramError> {
        let message = text(data)?;
        // gs2-cbind-flag "," [authzid] ","
        let (flag, rest) = message.split_once(',').ok_or(ScramError::Gs2Header)?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Gs2Header),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Gs2Header)?;
        let authzid = match authzid {
            "" => None,
            _ => Some(decode_name(
                authzid.strip_prefix("a=").ok_or(ScramError::Gs2Header)?,
            )?),
        };
        let gs2_header = &message[..message.len() - bare.len()];
        if bare.starts_with("m=") {
            return Err(ScramError::MandatoryExtension);
        }
        let mut parts = bare.split(',');
        let username = decode_name(attribute(parts.next(), 'n', "the user name (n=)")?)?;
        let nonce = attribute(parts.next(), 'r', "the nonce (r=)")?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Nonce);
        }
        // Optional extensions may follow; they are ignored (RFC 5802 section 5.1).
        Ok(ClientFirst {
            gs2_header,
            username,
            authzid,
            nonce,
            bare,
        })
    }

    /// Whether `data` looks like a client-first message (it starts with a gs2 header), rather
    /// than a client-final one (which starts with `c=`).
    pub fn looks_like(data: &[u8]) -> bool {
        !data.starts_with(b"c=")
    }
}

/// A client-final message: `c=...,r=...[,extensions],p=...`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    /// The channel binding, base64 (of the gs2 header, without channel binding).
    pub channel_binding: &'a str,
    /// The combined nonce.
    pub nonce: &'a str,
    /// The proof.
    pub proof: [u8; 32],
    /// The message up to the proof: the last part of the AuthMessage.
    pub without_proof: &'a str,
}

impl fmt::Debug for ClientFinal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No proof: it is as good as a password for a replay within the exchange.
        f.debug_struct("ClientFinal")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl<'a> ClientFinal<'a> {
    /// Parses a client-final message.
    pub fn parse(data: &'a [u8]) -> Result<ClientFinal<'a>, ScramError> {
        let message = text(data)?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(ScramError::Attribute("the proof (p=) at the end"))?;
        let mut parts = without_proof.split(',');
        let channel_binding = attribute(parts.next(), 'c', "the channel binding (c=)")?;
        let nonce = attribute(parts.next(), 'r', "the nonce (r=)")?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Nonce);
        }
        let proof = STANDARD
            .decode(proof)
            .ok()
            .and_then(|proof| <[u8; 32]>::try_from(proof).ok())
            .ok_or(ScramError::Base64)?;
        Ok(ClientFinal {
            channel_binding,
            nonce,
            proof,
            without_proof,
        })
    }
}

/// Why an exchange did not end in success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The client-final message is not one the exchange can take.
    Malformed(ScramError),
    /// The proof is wrong, or the user has no verifier: the same answer for both.
    BadProof,
}

/// The server's side of one exchange, from server-first to the client-final message.
#[derive(Clone)]
pub struct ServerExchange {
    gs2_header: Box<str>,
    username: Box<str>,
    client_first_bare: Box<str>,
    server_first: Box<str>,
    /// Client nonce followed by server nonce.
    nonce_length: usize,
    credential: ScramCredential,
    /// Whether `credential` is the user's own (a decoy otherwise: every proof fails).
    known: bool,
}

impl fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerExchange")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ServerExchange {
    /// Starts an exchange for `first`, with the user's verifier, or a decoy (`known` false)
    /// for a user who has none. `server_nonce` must be fresh, printable and without commas.
    pub fn start(
        first: &ClientFirst<'_>,
        credential: ScramCredential,
        known: bool,
        server_nonce: &str,
    ) -> ServerExchange {
        let server_first = format!(
            "r={}{server_nonce},s={},i={}",
            first.nonce,
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        ServerExchange {
            gs2_header: first.gs2_header.into(),
            username: first.username.as_str().into(),
            client_first_bare: first.bare.into(),
            server_first: server_first.into(),
            nonce_length: first.nonce.len() + server_nonce.len(),
            credential,
            known,
        }
    }

    /// The server-first message, for AUTH 0x18.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// The combined nonce the client-final message must repeat.
    pub fn nonce(&self) -> &str {
        &self.server_first[2..2 + self.nonce_length]
    }

    /// The user the exchange is for.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks the client-final message; on success, the server-final message (`v=...`).
    /// The same work for a decoy as for a real verifier.
    pub fn finish(&self, last: &ClientFinal<'_>) -> Result<String, Failure> {
        if last.nonce != self.nonce() {
            return Err(Failure::Malformed(ScramError::NonceMismatch));
        }
        let binding = STANDARD
            .decode(last.channel_binding)
            .map_err(|_| Failure::Malformed(ScramError::Base64))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(Failure::Malformed(ScramError::ChannelBindingMismatch));
        }
        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            self.server_first.as_bytes(),
            b",",
            last.without_proof.as_bytes(),
        ];
        let client_signature = hmac(&self.credential.stored_key, &auth_message);
        let mut client_key = last.proof;
        for (byte, mask) in client_key.iter_mut().zip(client_signature) {
            *byte ^= mask;
        }
        let matches = bool::from(sha256(&client_key).ct_eq(&self.credential.stored_key));
        let server_signature = hmac(&self.credential.server_key, &auth_message);
        if matches && self.known {
            Ok(format!("v={}", STANDARD.encode(server_signature)))
        } else {
            Err(Failure::BadProof)
        }
    }
}

/// A fresh server nonce: [`NONCE_BYTES`] random bytes in base64.
pub fn server_nonce() -> Result<String, String> {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; NONCE_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| error.to_string())?;
    Ok(STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3.
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredential::derive(b"pencil", &salt, 4096)
    }

    fn rfc_exchange() -> ServerExchange {
        let first = ClientFirst::parse(CLIENT_FIRST.as_bytes()).unwrap();
        ServerExchange::start(&first, rfc_credential(), true, SERVER_NONCE)
    }

    #[test]
    fn rfc_7677_test_vector() {
        let exchange = rfc_exchange();
        assert_eq!(exchange.server_first(), SERVER_FIRST);
        assert_eq!(exchange.username(), "user");
        let last = ClientFinal::parse(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(exchange.finish(&last).as_deref(), Ok(SERVER_FINAL));
    }

    #[test]
    fn rfc_7677_client_side_computes_the_same_proof() {
        // What a client does, step by step, from the password: the RFC's proof and signature.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pencil", &salt, 4096, &mut salted);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let auth_message = format!(
            "n=user,r=rOprNGfwEbeRWgbNEkqO,{SERVER_FIRST},c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        let signature = hmac(&sha256(&client_key), &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        assert_eq!(
            STANDARD.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_signature = hmac(&hmac(&salted, &[b"Server Key"]), &[auth_message.as_bytes()]);
        assert_eq!(
            format!("v={}", STANDARD.encode(server_signature)),
            SERVER_FINAL
        );
    }

    #[test]
    fn a_wrong_proof_fails() {
        let exchange = rfc_exchange();
        let mut last = ClientFinal::parse(CLIENT_FINAL.as_bytes()).unwrap();
        last.proof[0] ^= 1;
        assert_eq!(exchange.finish(&last), Err(Failure::BadProof));
        // The right proof against the verifier of another password.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let first = ClientFirst::parse(CLIENT_FIRST.as_bytes()).unwrap();
        let other = ScramCredential::derive(b"pen", &salt, 4096);
        let exchange = ServerExchange::start(&first, other, true, SERVER_NONCE);
        let last = ClientFinal::parse(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(exchange.finish(&last), Err(Failure::BadProof));
    }

    #[test]
    fn a_decoy_fails_even_with_the_right_proof() {
        let first = ClientFirst::parse(CLIENT_FIRST.as_bytes()).unwrap();
        let exchange = ServerExchange::start(&first, rfc_credential(), false, SERVER_NONCE);
        let last = ClientFinal::parse(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(exchange.finish(&last), Err(Failure::BadProof));
    }

    #[test]
    fn decoys_are_stable_per_user_and_look_like_real_verifiers() {
        let key = [7u8; 32];
        let decoy = ScramCredential::decoy(&key, "nobody");
        assert_eq!(decoy, ScramCredential::decoy(&key, "nobody"));
        assert_ne!(decoy.salt, ScramCredential::decoy(&key, "somebody").salt);
        assert_ne!(
            decoy.salt,
            ScramCredential::decoy(&[8u8; 32], "nobody").salt
        );
        let real = ScramCredential::generate(b"x").unwrap();
        assert_eq!(decoy.salt.len(), real.salt.len());
        assert_eq!(decoy.iterations, real.iterations);
    }

    #[test]
    fn the_client_final_must_match_the_exchange() {
        let exchange = rfc_exchange();
        let other_nonce = CLIENT_FINAL.replace("k0,p=", "k1,p=");
        let last = ClientFinal::parse(other_nonce.as_bytes()).unwrap();
        assert_eq!(
            exchange.finish(&last),
            Err(Failure::Malformed(ScramError::NonceMismatch))
        );
        // c= must be base64("n,,"): "biws".
        let other_binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
        let last = ClientFinal::parse(other_binding.as_bytes()).unwrap();
        assert_eq!(
            exchange.finish(&last),
            Err(Failure::Malformed(ScramError::ChannelBindingMismatch))
        );
        let bad_binding = CLIENT_FINAL.replace("c=biws", "c=!!!");
        let last = ClientFinal::parse(bad_binding.as_bytes()).unwrap();
        assert_eq!(
            exchange.finish(&last),
            Err(Failure::Malformed(ScramError::Base64))
        );
    }

    #[test]
    fn y_header_is_accepted_and_bound() {
        let first = ClientFirst::parse(b"y,,n=user,r=abc").unwrap();
        assert_eq!(first.gs2_header, "y,,");
        let exchange = ServerExchange::start(&first, rfc_credential(), true, "xyz");
        assert_eq!(exchange.nonce(), "abcxyz");
        let last =
            ClientFinal::parse(b"c=biws,r=abcxyz,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
                .unwrap();
        assert_eq!(
            exchange.finish(&last),
            Err(Failure::Malformed(ScramError::ChannelBindingMismatch)),
            "c= must repeat y,, (eSws)"
        );
    }

    #[test]
    fn client_first_messages_parse() {
        let first = ClientFirst::parse(b"n,,n=us=2Cer=3D,r=nonce,x=extension").unwrap();
        assert_eq!(first.username, "us,er=");
        assert_eq!(first.nonce, "nonce");
        assert_eq!(first.bare, "n=us=2Cer=3D,r=nonce,x=extension");
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.authzid, None);
        let first = ClientFirst::parse(b"n,a=admin,n=user,r=n").unwrap();
        assert_eq!(first.authzid.as_deref(), Some("admin"));
        assert_eq!(first.gs2_header, "n,a=admin,");
    }

    #[test]
    fn malformed_client_first_messages_are_errors() {
        use ScramError::*;
        let long = format!("n,,n=user,r={}", "a".repeat(MAX_MESSAGE));
        let cases: &[(&[u8], ScramError)] = &[
            (b"", Length),
            (long.as_bytes(), Length),
            (b"n,,n=\xff,r=a", NotUtf8),
            (b"n", Gs2Header),
            (b"n,", Gs2Header),
            (b"x,,n=user,r=a", Gs2Header),
            (b"n,b=x,n=user,r=a", Gs2Header),
            (b"n,a=,n=user,r=a", UserName),
            (b"p=tls-unique,,n=user,r=a", ChannelBinding),
            (b"n,,m=ext,n=user,r=a", MandatoryExtension),
            (b"n,,", Attribute("the user name (n=)")),
            (b"n,,r=a,n=user", Attribute("the user name (n=)")),
            (b"n,,n=user", Attribute("the nonce (r=)")),
            (b"n,,n=user,", Attribute("the nonce (r=)")),
            (b"n,,n=user,s=a", Attribute("the nonce (r=)")),
            (b"n,,nuser,r=a", Attribute("the user name (n=)")),
            (b"n,,n=,r=a", UserName),
            (b"n,,n=us=er,r=a", UserName),
            (b"n,,n=user=2,r=a", UserName),
            (b"n,,n=user=,r=a", UserName),
            (b"n,,n=user,r=", Nonce),
            (b"n,,n=user,r=a b", Nonce),
            (b"n,,n=user,r=\xc3\xa9", Nonce),
        ];
        for (message, expected) in cases {
            assert_eq!(
                ClientFirst::parse(message),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn malformed_client_final_messages_are_errors() {
        use ScramError::*;
        let cases: &[(&[u8], ScramError)] = &[
            (b"", Length),
            (b"c=biws,r=a", Attribute("the proof (p=) at the end")),
            (b"c=biws,r=a,p=", Base64),
            (b"c=biws,r=a,p=!!!!", Base64),
            (b"c=biws,r=a,p=AAAA", Base64),
            (b"r=a,c=biws,p=AAAA", Attribute("the channel binding (c=)")),
            (
                b"c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                Attribute("the nonce (r=)"),
            ),
            (
                b"c=biws,r=,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                Nonce,
            ),
            (
                b"c=biws,r=a\x7f,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                Nonce,
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(
                ClientFinal::parse(message).map(|m| m.nonce),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
        // Extensions between the nonce and the proof belong to the AuthMessage.
        let last =
            ClientFinal::parse(b"c=biws,r=a,x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
                .unwrap();
        assert_eq!(last.without_proof, "c=biws,r=a,x=1");
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics() {
        // A cheap fuzz: every prefix and every single-byte change of the RFC's messages.
        for message in [CLIENT_FIRST, CLIENT_FINAL, "n,a=x=2C,n==3D,r=a,p=b"] {
            let bytes = message.as_bytes();
            for end in 0..=bytes.len() {
                let _ = ClientFirst::parse(&bytes[..end]);
                let _ = ClientFinal::parse(&bytes[..end]);
            }
            for at in 0..bytes.len() {
                for value in [0u8, b',', b'=', b'2', b'C', 0x80, 0xff] {
                    let mut changed = bytes.to_vec();
                    changed[at] = value;
                    let _ = ClientFirst::parse(&changed);
                    if let Ok(last) = ClientFinal::parse(&changed) {
                        let _ = rfc_exchange().finish(&last);
                    }
                }
            }
        }
    }

    #[test]
    fn verifiers_round_trip_through_their_text() {
        let credential = rfc_credential();
        let text = credential.to_text();
        assert!(
            text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{text}"
        );
        assert_eq!(ScramCredential::parse(&text), Ok(credential));
    }

    #[test]
    fn malformed_verifiers_are_refused_without_quoting_them() {
        let good = rfc_credential().to_text();
        let (head, keys) = good.rsplit_once('$').unwrap();
        let (stored, _) = keys.split_once(':').unwrap();
        let cases = [
            String::new(),
            good.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
            good.replacen("4096", "4095", 1),
            good.replacen("4096", "many", 1),
            format!("{head}${stored}"),
            format!("{head}${stored}:AAAA"),
            format!("{head}${stored}:!!!"),
            "SCRAM-SHA-256$4096:$AAAA:AAAA".to_string(),
        ];
        for case in cases {
            let problem = ScramCredential::parse(&case).unwrap_err();
            assert!(!problem.contains(stored), "{problem}");
        }
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let credential = rfc_credential();
        let shown = format!("{credential:?} {:?}", rfc_exchange());
        assert!(!shown.contains("W22ZaJ0"), "{shown}");
        let last = ClientFinal::parse(CLIENT_FINAL.as_bytes()).unwrap();
        assert!(!format!("{last:?}").contains("dHzbZ"));
    }

    #[test]
    fn passwords_are_saslprepped_where_saslprep_allows() {
        let salt = [1u8; 16];
        // U+00A0 (no-break space) maps to a space; U+00AD (soft hyphen) to nothing.
        assert_eq!(
            ScramCredential::derive("a\u{a0}b\u{ad}c".as_bytes(), &salt, 4096),
            ScramCredential::derive(b"a bc", &salt, 4096)
        );
        // Not UTF-8, or prohibited (a control character): the bytes as they are.
        let raw = ScramCredential::derive(b"\xff\x01", &salt, 4096);
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"\xff\x01", &salt, 4096, &mut salted);
        assert_eq!(raw.server_key, hmac(&salted, &[b"Server Key"]));
        let control = ScramCredential::derive(b"a\x07", &salt, 4096);
        pbkdf2::pbkdf2_hmac::<Sha256>(b"a\x07", &salt, 4096, &mut salted);
        assert_eq!(control.server_key, hmac(&salted, &[b"Server Key"]));
    }
}
