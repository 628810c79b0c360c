//! JSON Web Tokens as passwords, for browsers and services.
//!
//! A client sends the token as its MQTT password. The keys that may have signed it are
//! configured: an HS256 secret (`--jwt-secret-file`), an RS256 or ES256 public key in PEM
//! (`--jwt-public-key`), and the RSA and P-256 keys of a JWKS document (`--jwks-file`). The
//! algorithm comes from the key, never from the token: a token whose header names another
//! algorithm than its key's is refused, so an HS256 token "signed" with an RSA public key as
//! its secret gets nowhere.
//!
//! Checked at CONNECT: the signature, `exp` (required) and `nbf` (when present), with 30
//! seconds of leeway for clocks that differ. The connection is closed when `exp` passes. The
//! user name is the token's `sub`; a client that also sends a user name must send the same.
//!
//! A token may restrict its bearer further than the ACL does with a claim of two lists of
//! filters, applied like ACL grants (both the ACL and the token must allow an action):
//!
//! ```json
//! { "sub": "dashboard-7", "exp": 1767225600,
//!   "mqtt": { "publish": ["commands/dashboard-7/#"], "subscribe": ["sensors/#"] } }
//! ```

use super::acl::ClientRules;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// Why the configured keys could not be read. Never holds key material.
#[derive(Debug, Error)]
pub enum TokenKeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file holds no key the gateway can use.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Why a token was refused: what the log line and the counters say. Never holds the token.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum TokenRefused {
    /// Not three base64url parts, or claims that do not parse.
    #[error("malformed token")]
    Malformed,
    /// Its `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Its `nbf` has not come yet.
    #[error("token not yet valid")]
    NotYetValid,
    /// No configured key takes its algorithm, or names its key id.
    #[error("token signed with an algorithm or key that is not configured")]
    UnknownKey,
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// The client sent a user name other than the token's `sub`.
    #[error("user name differs from the token's subject")]
    SubjectMismatch,
    /// Its topic claim holds something that is not a topic filter.
    #[error("token's topic claim is not a list of topic filters")]
    BadTopicClaim,
}

/// A key that may have signed tokens, with its one algorithm.
struct VerificationKey {
    key: DecodingKey,
    algorithm: Algorithm,
    id: Option<String>,
}

/// The configured keys.
#[derive(Default)]
pub struct TokenVerifier {
    keys: Vec<VerificationKey>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.keys.iter().map(|k| k.algorithm).collect();
        f.debug_struct("TokenVerifier")
            .field("algorithms", &algorithms)
            .finish()
    }
}

/// The optional claim restricting what the bearer may do.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct TopicClaim {
    /// Filters the bearer may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Filters the bearer may subscribe to and receive from.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: u64,
    mqtt: Option<TopicClaim>,
}

/// What a valid token says about its bearer.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The user name: the token's `sub`, or the user name the client sent when it has none.
    pub username: Option<String>,
    /// When the token expires; the connection is closed then.
    pub expires_at: SystemTime,
    /// What the token allows, when it restricts its bearer.
    pub rules: Option<ClientRules>,
}

impl TokenVerifier {
    /// The keys from the configured files; `None` when none is configured.
    pub fn load(
        secret_file: Option<&Path>,
        public_key_file: Option<&Path>,
        jwks_file: Option<&Path>,
    ) -> Result<Option<TokenVerifier>, TokenKeyError> {
        if secret_file.is_none() && public_key_file.is_none() && jwks_file.is_none() {
            return Ok(None);
        }
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TokenKeyError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let invalid = |path: &Path, problem: String| TokenKeyError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let mut verifier = TokenVerifier::default();
        if let Some(path) = secret_file {
            let secret = read(path)?;
            verifier
                .add_secret(&secret)
                .map_err(|problem| invalid(path, problem))?;
        }
        if let Some(path) = public_key_file {
            let pem = read(path)?;
            verifier
                .add_public_key_pem(&pem)
                .map_err(|problem| invalid(path, problem))?;
        }
        if let Some(path) = jwks_file {
            let json = read(path)?;
            verifier
                .add_jwks(&json)
                .map_err(|problem| invalid(path, problem))?;
        }
        Ok(Some(verifier))
    }

    /// Adds an HS256 secret. Surrounding white space (a trailing newline) is not part of it.
    pub fn add_secret(&mut self, secret: &[u8]) -> Result<(), String> {
        let secret = secret.trim_ascii();
        // RFC 7518 3.2: a key of the hash's size at least.
        if secret.len() < 32 {
            return Err(format!(
                "an HS256 secret needs at least 32 bytes, this one has {}",
                secret.len()
            ));
        }
        self.keys.push(VerificationKey {
            key: DecodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
            id: None,
        });
        Ok(())
    }

    /// Adds an RSA (RS256) or P-256 (ES256) public key in PEM.
    pub fn add_public_key_pem(&mut self, pem: &[u8]) -> Result<(), String> {
        let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (key, Algorithm::ES256)
        } else {
            return Err("not an RSA or EC public key in PEM".into());
        };
        self.keys.push(VerificationKey {
            key,
            algorithm,
            id: None,
        });
        Ok(())
    }

    /// Adds the RSA and P-256 keys of a JWKS document. Symmetric keys in it are refused: a
    /// document that may be published must not hold a secret.
    pub fn add_jwks(&mut self, json: &[u8]) -> Result<(), String> {
        let set: JwkSet = serde_json::from_slice(json)
            .map_err(|error| format!("not a JWKS document: {error}"))?;
        for jwk in &set.keys {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => {
                    return Err(
                        "only RSA and P-256 keys are taken from a JWKS document".to_string()
                    );
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|error| format!("bad key: {error}"))?;
            self.keys.push(VerificationKey {
                key,
                algorithm,
                id: jwk.common.key_id.clone(),
            });
        }
        if set.keys.is_empty() {
            return Err("the JWKS document has no keys".into());
        }
        Ok(())
    }

    /// Whether a password is meant as a token: three base64url parts, the first a JSON object.
    /// Anything else is checked against the password file.
    pub fn looks_like_token(password: &[u8]) -> bool {
        password.starts_with(b"eyJ")
            && password.iter().filter(|&&byte| byte == b'.').count() == 2
            && password
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(byte))
    }

    /// Checks `token` for a client that sent `username`.
    pub fn verify(
        &self,
        token: &[u8],
        username: Option<&str>,
    ) -> Result<VerifiedToken, TokenRefused> {
        let token = std::str::from_utf8(token).map_err(|_| TokenRefused::Malformed)?;
        let header = decode_header(token).map_err(|_| TokenRefused::Malformed)?;
        let candidates = self.keys.iter().filter(|key| {
            key.algorithm == header.alg
                && (header.kid.is_none() || key.id.is_none() || key.id == header.kid)
        });
        let mut refusal = TokenRefused::UnknownKey;
        for candidate in candidates {
            let mut validation = Validation::new(candidate.algorithm);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            // An audience is not part of this scheme; a token that names one is still valid.
            validation.validate_aud = false;
            match decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => return accept(data.claims, username),
                Err(error) => refusal = refusal_for(error.kind()),
            }
            if refusal != TokenRefused::BadSignature {
                break;
            }
        }
        Err(refusal)
    }
}

fn refusal_for(kind: &jsonwebtoken::errors::ErrorKind) -> TokenRefused {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => TokenRefused::Expired,
        ErrorKind::ImmatureSignature => TokenRefused::NotYetValid,
        ErrorKind::InvalidSignature => TokenRefused::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenRefused::UnknownKey,
        _ => TokenRefused::Malformed,
    }
}

fn accept(claims: Claims, username: Option<&str>) -> Result<VerifiedToken, TokenRefused> {
    if let (Some(sent), Some(subject)) = (username, claims.sub.as_deref())
        && sent != subject
    {
        return Err(TokenRefused::SubjectMismatch);
    }
    let rules = claims
        .mqtt
        .map(|claim| ClientRules::from_grants(&claim.subscribe, &claim.publish))
        .transpose()
        .map_err(|_| TokenRefused::BadTopicClaim)?;
    Ok(VerifiedToken {
        username: claims.sub.or(username.map(str::to_string)),
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::super::acl::Access;
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(algorithm), claims, key).unwrap()
    }

    fn hs256(claims: &Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
    }

    fn secret_verifier() -> TokenVerifier {
        let mut verifier = TokenVerifier::default();
        verifier.add_secret(SECRET).unwrap();
        verifier
    }

    struct RsaKeys {
        private_pem: String,
        public_pem: String,
    }

    fn rsa_keys() -> RsaKeys {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        RsaKeys {
            private_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public_pem: private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    }

    #[test]
    fn a_valid_hs256_token_names_its_subject_and_expiry() {
        let exp = now() + 600;
        let token = hs256(&json!({"sub": "dashboard", "exp": exp}));
        assert!(TokenVerifier::looks_like_token(token.as_bytes()));
        let verified = secret_verifier().verify(token.as_bytes(), None).unwrap();
        assert_eq!(verified.username.as_deref(), Some("dashboard"));
        assert_eq!(
            verified.expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(exp)
        );
        assert!(verified.rules.is_none());
        // The same user name may be sent along; another may not.
        let verifier = secret_verifier();
        assert!(verifier.verify(token.as_bytes(), Some("dashboard")).is_ok());
        assert_eq!(
            verifier
                .verify(token.as_bytes(), Some("admin"))
                .unwrap_err(),
            TokenRefused::SubjectMismatch
        );
    }

    #[test]
    fn expired_not_yet_valid_and_tampered_tokens_are_refused() {
        let verifier = secret_verifier();
        let expired = hs256(&json!({"sub": "a", "exp": now() - 3600}));
        assert_eq!(
            verifier.verify(expired.as_bytes(), None).unwrap_err(),
            TokenRefused::Expired
        );
        let early = hs256(&json!({"sub": "a", "exp": now() + 7200, "nbf": now() + 3600}));
        assert_eq!(
            verifier.verify(early.as_bytes(), None).unwrap_err(),
            TokenRefused::NotYetValid
        );
        let no_expiry = hs256(&json!({"sub": "a"}));
        assert_eq!(
            verifier.verify(no_expiry.as_bytes(), None).unwrap_err(),
            TokenRefused::Malformed
        );
        let other_secret = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"another secret of at least thirty-two bytes"),
            &json!({"sub": "a", "exp": now() + 600}),
        );
        assert_eq!(
            verifier.verify(other_secret.as_bytes(), None).unwrap_err(),
            TokenRefused::BadSignature
        );
        assert_eq!(
            verifier.verify(b"eyJ.not.atoken", None).unwrap_err(),
            TokenRefused::Malformed
        );
    }

    #[test]
    fn rs256_tokens_verify_with_the_public_key_and_hs256_with_it_as_secret_do_not() {
        let keys = rsa_keys();
        let mut verifier = TokenVerifier::default();
        verifier
            .add_public_key_pem(keys.public_pem.as_bytes())
            .unwrap();
        let claims = json!({"sub": "service", "exp": now() + 600});
        let private = EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).unwrap();
        let token = sign(Algorithm::RS256, &private, &claims);
        assert!(verifier.verify(token.as_bytes(), None).is_ok());

        // The classic confusion: HMAC with the public key's PEM as the secret.
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(keys.public_pem.as_bytes()),
            &claims,
        );
        assert_eq!(
            verifier.verify(forged.as_bytes(), None).unwrap_err(),
            TokenRefused::UnknownKey
        );
        // Still refused where an HS256 secret is configured too: it is not that secret.
        verifier.add_secret(SECRET).unwrap();
        assert_eq!(
            verifier.verify(forged.as_bytes(), None).unwrap_err(),
            TokenRefused::BadSignature
        );
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let mut verifier = TokenVerifier::default();
        verifier
            .add_public_key_pem(pair.public_key_pem().as_bytes())
            .unwrap();
        let private = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let token = sign(
            Algorithm::ES256,
            &private,
            &json!({"sub": "edge", "exp": now() + 600}),
        );
        assert!(verifier.verify(token.as_bytes(), None).is_ok());
        let hs = hs256(&json!({"sub": "edge", "exp": now() + 600}));
        assert_eq!(
            verifier.verify(hs.as_bytes(), None).unwrap_err(),
            TokenRefused::UnknownKey
        );
    }

    #[test]
    fn jwks_keys_are_chosen_by_key_id() {
        let keys = rsa_keys();
        let public = rsa::RsaPublicKey::from(
            &<rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(
                &keys.private_pem,
            )
            .unwrap(),
        );
        use base64::Engine;
        use rsa::traits::PublicKeyParts;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = json!({"keys": [{
            "kty": "RSA", "kid": "key-1", "alg": "RS256", "use": "sig",
            "n": b64.encode(public.n().to_bytes_be()),
            "e": b64.encode(public.e().to_bytes_be()),
        }]});
        let mut verifier = TokenVerifier::default();
        verifier.add_jwks(jwks.to_string().as_bytes()).unwrap();
        let private = EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).unwrap();
        let claims = json!({"sub": "svc", "exp": now() + 600});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("key-1".into());
        let token = encode(&header, &claims, &private).unwrap();
        assert!(verifier.verify(token.as_bytes(), None).is_ok());
        header.kid = Some("key-2".into());
        let token = encode(&header, &claims, &private).unwrap();
        assert_eq!(
            verifier.verify(token.as_bytes(), None).unwrap_err(),
            TokenRefused::UnknownKey
        );
        let secret_in_jwks = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(
            TokenVerifier::default()
                .add_jwks(secret_in_jwks.to_string().as_bytes())
                .is_err()
        );
    }

    #[test]
    fn the_topic_claim_restricts_like_acl_grants() {
        let token = hs256(&json!({
            "sub": "dash", "exp": now() + 600,
            "mqtt": {"publish": ["commands/dash/#"], "subscribe": ["sensors/#"]}
        }));
        let rules = secret_verifier()
            .verify(token.as_bytes(), None)
            .unwrap()
            .rules
            .unwrap();
        assert!(rules.permits(Access::Write, "commands/dash/light"));
        assert!(!rules.permits(Access::Write, "sensors/a"));
        assert!(rules.permits(Access::Read, "sensors/a/temp"));
        assert!(!rules.permits(Access::Read, "commands/dash/light"));
        assert!(rules.may_subscribe("sensors/+/temp"));
        assert!(!rules.may_subscribe("other/#"));

        let bad = hs256(&json!({"sub": "d", "exp": now() + 600, "mqtt": {"publish": ["a/#/b"]}}));
        assert_eq!(
            secret_verifier().verify(bad.as_bytes(), None).unwrap_err(),
            TokenRefused::BadTopicClaim
        );
    }

    #[test]
    fn short_secrets_and_non_keys_are_refused_at_start() {
        assert!(TokenVerifier::default().add_secret(b"short\n").is_err());
        assert!(
            TokenVerifier::default()
                .add_public_key_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
        assert!(!TokenVerifier::looks_like_token(b"hunter2"));
        assert!(!TokenVerifier::looks_like_token(b"eyJhbGciOi.x"));
    }
}
