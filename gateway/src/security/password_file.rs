//! The password file: one `user:hash` line per account, as Mosquitto's `password_file`, with
//! an optional SCRAM-SHA-256 verifier after a second colon: `user:hash[:verifier]`.
//!
//! New entries are argon2id PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), made by
//! `gateway passwd`. Entries written by Mosquitto's `mosquitto_passwd` are read as they are, so
//! an installation moves over with its file unchanged: `$7$iterations$salt$hash` (PBKDF2 with
//! HMAC-SHA512, Mosquitto 2.0's default) and `$6$salt$hash` (one SHA-512 of the password and
//! the salt, Mosquitto 1.x's). Salts and hashes there are standard base64.
//!
//! The verifier is what MQTT 5.0 enhanced authentication with `SCRAM-SHA-256` checks (see
//! [`super::scram`]), in the form of RFC 5803 and PostgreSQL:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, standard base64, at least 4096
//! iterations. `gateway passwd` writes one next to each argon2id hash:
//!
//! ```text
//! alice:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>:SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>
//! ```
//!
//! None of the hash formats contains a colon, so the first colon after the user name ends the
//! hash and a second one starts the verifier. A line without one (an older gateway's, or
//! Mosquitto's) loads as before: that user can log in with a password but not with SCRAM until
//! `gateway passwd` sets their password again. A verifier is as good as the password for an
//! offline guess (at 4096 PBKDF2 rounds, cheaper to try than argon2id), one more reason the
//! file is written mode 0600.
//!
//! Verification is slow on purpose (argon2id costs tens of milliseconds): callers run it off
//! the broker's task. A user who is not in the file costs the same as a wrong password, so the
//! time of a refusal does not tell which user names exist.
//!
//! Nothing here puts a password or a hash into an error or a log: a line that does not parse
//! is named by its number and the kind of problem.

use super::scram::ScramCredential;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as PhcString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha512};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Why a password file could not be read, parsed or written. Never holds a secret.
#[derive(Debug, Error)]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("cannot read password file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A line is not `user:hash` with a hash the gateway understands.
    #[error("password file {path}, line {line}: {problem}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Its line number, from 1.
        line: usize,
        /// What is wrong, without the line's content.
        problem: &'static str,
    },
    /// The file could not be written.
    #[error("cannot write password file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A user name that cannot be stored: empty, or with a `:` or a line break.
    #[error("a user name must not be empty or contain ':' or a line break")]
    InvalidUser,
    /// Hashing a new password failed (the system's random source).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
enum StoredHash {
    /// An argon2 PHC string (argon2id for entries the gateway makes).
    Argon2(String),
    /// Mosquitto's `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// Mosquitto's `$6$`: SHA-512 of the password followed by the salt.
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

impl StoredHash {
    fn parse(text: &str) -> Result<StoredHash, &'static str> {
        if text.starts_with("$argon2") {
            let parsed = PhcString::new(text).map_err(|_| "not a valid argon2 hash")?;
            if parsed.hash.is_none() || parsed.salt.is_none() {
                return Err("not a valid argon2 hash (no salt or hash)");
            }
            return Ok(StoredHash::Argon2(text.to_string()));
        }
        let decode = |part: &str| STANDARD.decode(part).map_err(|_| "bad base64 in hash");
        let mut parts = text.split('$');
        if !parts.next().is_some_and(str::is_empty) {
            return Err("the hash must start with '$' (plain-text passwords are not accepted)");
        }
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("7"), Some(iterations), Some(salt), Some(hash)) if parts.next().is_none() => {
                let iterations = iterations
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("bad iteration count in a $7$ hash")?;
                Ok(StoredHash::Pbkdf2Sha512 {
                    iterations,
                    salt: decode(salt)?,
                    hash: decode(hash)?,
                })
            }
            (Some("6"), Some(salt), Some(hash), None) => Ok(StoredHash::Sha512 {
                salt: decode(salt)?,
                hash: decode(hash)?,
            }),
            _ => Err("unknown hash format (expected argon2, $7$ or $6$)"),
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Argon2(phc) => PhcString::new(phc)
                .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok()),
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut derived = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut derived);
                bool::from(derived.ct_eq(hash))
            }
            StoredHash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                bool::from(digest.finalize().as_slice().ct_eq(hash))
            }
        }
    }

    fn to_text(&self) -> String {
        match self {
            StoredHash::Argon2(phc) => phc.clone(),
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => format!(
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
            StoredHash::Sha512 { salt, hash } => {
                format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
        }
    }
}

/// A hash nobody's password matches, verified for unknown users so that they cost as much as
/// known ones.
fn decoy() -> &'static StoredHash {
    static DECOY: OnceLock<StoredHash> = OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(b"decoy: no password matches this one", &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default();
        StoredHash::Argon2(phc)
    })
}

/// One account: its password hash and, if it has one, its SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    hash: StoredHash,
    scram: Option<ScramCredential>,
}

impl Entry {
    fn to_text(&self) -> String {
        match &self.scram {
            Some(scram) => format!("{}:{}", self.hash.to_text(), scram.to_text()),
            None => self.hash.to_text(),
        }
    }
}

/// The accounts of a password file, in file order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    entries: Vec<(String, Entry)>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The users, never their hashes.
        f.debug_struct("PasswordFile")
            .field("users", &self.users().collect::<Vec<_>>())
            .finish()
    }
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PasswordFile::parse(&text, path)
    }

    /// Parses a password file's text; `path` names it in errors. Blank lines and lines
    /// starting with `#` are skipped.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let mut file = PasswordFile::default();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |problem| PasswordFileError::Parse {
                path: path.to_path_buf(),
                line: index + 1,
                problem,
            };
            let (user, rest) = line
                .split_once(':')
                .ok_or_else(|| problem("expected user:hash"))?;
            if user.is_empty() {
                return Err(problem("empty user name"));
            }
            // No hash format has a colon: a second one starts the SCRAM verifier.
            let (hash, scram) = match rest.split_once(':') {
                Some((hash, scram)) => (hash, Some(scram)),
                None => (rest, None),
            };
            let hash = StoredHash::parse(hash).map_err(problem)?;
            let scram = scram
                .map(ScramCredential::parse)
                .transpose()
                .map_err(problem)?;
            // A later line for the same user wins, as when the file is edited by hand.
            file.entries.retain(|(existing, _)| existing != user);
            file.entries.push((user.to_string(), Entry { hash, scram }));
        }
        Ok(file)
    }

    /// The number of accounts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no accounts.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The user names, in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(user, _)| user.as_str())
    }

    /// The number of accounts that have a SCRAM-SHA-256 verifier.
    pub fn scram_users(&self) -> usize {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.scram.is_some())
            .count()
    }

    /// `user`'s SCRAM-SHA-256 verifier, if they are in the file and have one.
    pub fn scram(&self, user: &str) -> Option<&ScramCredential> {
        self.entries
            .iter()
            .find(|(name, _)| name == user)
            .and_then(|(_, entry)| entry.scram.as_ref())
    }

    /// Whether `password` is `user`'s. Slow on purpose; run it off the broker's task.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.entries.iter().find(|(name, _)| name == user) {
            Some((_, entry)) => entry.hash.verify(password),
            None => {
                decoy().verify(password);
                false
            }
        }
    }

    /// Adds `user`, or replaces their password, with a new argon2id hash and a new
    /// SCRAM-SHA-256 verifier.
    pub fn set(&mut self, user: &str, password: &[u8]) -> Result<(), PasswordFileError> {
        if user.is_empty() || user.contains([':', '\n', '\r']) {
            return Err(PasswordFileError::InvalidUser);
        }
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(password, &salt)
            .map_err(|error| PasswordFileError::Hash(error.to_string()))?
            .to_string();
        let scram = ScramCredential::generate(password).map_err(PasswordFileError::Hash)?;
        let entry = Entry {
            hash: StoredHash::Argon2(phc),
            scram: Some(scram),
        };
        match self.entries.iter_mut().find(|(name, _)| name == user) {
            Some(existing) => existing.1 = entry,
            None => self.entries.push((user.to_string(), entry)),
        }
        Ok(())
    }

    /// Removes `user`; returns whether they were there.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(name, _)| name != user);
        self.entries.len() != before
    }

    /// The file's text, one `user:hash[:verifier]` line per account.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (user, entry) in &self.entries {
            let _ = writeln!(text, "{user}:{}", entry.to_text());
        }
        text
    }

    /// Writes the file to `path` atomically (a new file beside it, synced, renamed over it),
    /// readable and writable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), PasswordFileError> {
        let error = |source| PasswordFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        })?;
        let mut temporary_name = name.to_os_string();
        temporary_name.push(format!(".tmp-{}", std::process::id()));
        let temporary = directory.join(temporary_name);
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary)?;
            file.write_all(self.to_text().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)?;
            // The rename is durable once the directory is.
            std::fs::File::open(directory)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        PasswordFile::parse(text, Path::new("passwords"))
    }

    #[test]
    fn argon2id_entries_round_trip_through_the_text() {
        let mut file = PasswordFile::default();
        file.set("alice", b"correct horse").unwrap();
        file.set("bob", b"battery staple").unwrap();
        let text = file.to_text();
        assert!(text.starts_with("alice:$argon2id$"), "{text}");
        let read = parse(&text).unwrap();
        assert_eq!(read, file);
        assert!(read.verify("alice", b"correct horse"));
        assert!(!read.verify("alice", b"battery staple"));
        assert!(read.verify("bob", b"battery staple"));
        assert!(!read.verify("carol", b"correct horse"));
    }

    #[test]
    fn set_replaces_and_remove_deletes() {
        let mut file = PasswordFile::default();
        file.set("alice", b"old").unwrap();
        file.set("alice", b"new").unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", b"new"));
        assert!(!file.verify("alice", b"old"));
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        assert!(file.is_empty());
    }

    #[test]
    fn user_names_that_would_break_the_file_are_refused() {
        let mut file = PasswordFile::default();
        for user in ["", "a:b", "a\nb"] {
            assert!(matches!(
                file.set(user, b"x"),
                Err(PasswordFileError::InvalidUser)
            ));
        }
    }

    /// Mosquitto 2.0's `$7$`: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt. The hashes in
    /// these two tests were computed independently, with Python's `hashlib`.
    #[test]
    fn mosquitto_pbkdf2_entries_verify() {
        let line = "dev:$7$101$MDEyMzQ1Njc4OWFi$EO/lLlkeUgIiBaS8G8UK0ZMP1u508TA7Tl+AdJ1cEsmlbGyEPAERErpfq84j1kepISs0UzmcdL4ucgZ2uodxfQ==";
        let file = parse(line).unwrap();
        assert!(file.verify("dev", b"secret"));
        assert!(!file.verify("dev", b"Secret"));
        assert_eq!(file.to_text().trim_end(), line, "kept as it was");
    }

    /// Mosquitto 1.x's `$6$`: SHA-512 of the password, then the salt.
    #[test]
    fn mosquitto_sha512_entries_verify() {
        let line = "old:$6$c2FsdHNhbHRzYWx0$3aiBbchfIZo+1WYrkPzJjQxZ79F/NmwLQ+wF073kTd+6ANhaic8G/jWF/X4sqSFUKpLNdm1FZjBck6HQ8knM3A==";
        let file = parse(line).unwrap();
        assert!(file.verify("old", b"secret"));
        assert!(!file.verify("old", b"secret "));
    }

    #[test]
    fn malformed_lines_are_named_without_their_content() {
        let cases = [
            ("alice\n", 1, "expected user:hash"),
            ("# comment\n\n:$6$AAAA$AAAA\n", 3, "empty user name"),
            ("alice:hunter2\n", 1, "plain-text"),
            ("alice:$5$abc$def\n", 1, "unknown hash format"),
            ("alice:$7$0$AAAA$AAAA\n", 1, "iteration count"),
            ("alice:$6$!!!$AAAA\n", 1, "base64"),
            ("alice:$argon2id$nonsense\n", 1, "argon2"),
        ];
        for (text, line, problem) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(&format!("line {line}")), "{error}");
            assert!(error.contains(problem), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn save_writes_atomically_with_owner_only_permissions() {
        let directory = std::env::temp_dir().join(format!("passwd-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("passwords");
        let mut file = PasswordFile::default();
        file.set("alice", b"secret").unwrap();
        file.save(&path).unwrap();
        file.set("bob", b"other").unwrap();
        file.save(&path).unwrap();
        let read = PasswordFile::load(&path).unwrap();
        assert_eq!(read.users().collect::<Vec<_>>(), ["alice", "bob"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&directory).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn set_writes_a_scram_verifier_next_to_the_argon2id_hash() {
        let mut file = PasswordFile::default();
        file.set("alice", b"correct horse").unwrap();
        let text = file.to_text();
        let line = text.trim_end();
        let (user, rest) = line.split_once(':').unwrap();
        let (hash, verifier) = rest.split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$argon2id$"), "{line}");
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{line}");
        let read = parse(&text).unwrap();
        assert_eq!(read, file);
        assert!(
            read.verify("alice", b"correct horse"),
            "the password still verifies"
        );
        assert_eq!(read.scram("alice").map(|v| v.iterations()), Some(4096));
        assert_eq!(read.scram_users(), 1);
        assert!(read.scram("bob").is_none());
        // A new password, a new verifier (new salt).
        let mut changed = read.clone();
        changed.set("alice", b"correct horse").unwrap();
        assert_ne!(changed.scram("alice"), read.scram("alice"));
    }

    #[test]
    fn entries_without_a_verifier_still_load_and_cannot_use_scram() {
        // An older gateway's line, and Mosquitto's.
        let text = "old:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2IhHzBJKBVjPvVgWWDfIPTWg8mBrKeLwiSkN4SvLm/8\n\
                    dev:$7$101$MDEyMzQ1Njc4OWFi$EO/lLlkeUgIiBaS8G8UK0ZMP1u508TA7Tl+AdJ1cEsmlbGyEPAERErpfq84j1kepISs0UzmcdL4ucgZ2uodxfQ==\n";
        let file = parse(text).unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(file.scram_users(), 0);
        assert!(file.scram("old").is_none() && file.scram("dev").is_none());
        assert!(file.verify("dev", b"secret"));
        assert_eq!(file.to_text(), text, "kept as they were");
    }

    #[test]
    fn a_verifier_may_follow_any_hash_format() {
        let verifier = ScramCredential::derive(b"secret", b"0123456789abcdef", 4096).to_text();
        let text = format!(
            "dev:$6$c2FsdHNhbHRzYWx0$3aiBbchfIZo+1WYrkPzJjQxZ79F/NmwLQ+wF073kTd+6ANhaic8G/jWF/X4sqSFUKpLNdm1FZjBck6HQ8knM3A==:{verifier}\n"
        );
        let file = parse(&text).unwrap();
        assert!(file.verify("dev", b"secret"));
        assert!(file.scram("dev").is_some());
        assert_eq!(file.to_text(), text);
    }

    #[test]
    fn malformed_verifiers_are_named_without_their_content() {
        let good = ScramCredential::derive(b"secret", b"0123456789abcdef", 4096).to_text();
        let hash = "$6$c2FsdHNhbHRzYWx0$3aiBbchfIZo+1WYrkPzJjQxZ79F/NmwLQ+wF073kTd+6ANhaic8G/jWF/X4sqSFUKpLNdm1FZjBck6HQ8knM3A==";
        for verifier in [
            "SCRAM-SHA-1$4096:AAAA$AAAA:AAAA".to_string(),
            good.replacen("4096", "1000", 1),
            good.replacen(":", ":!", 1),
            "hunter2".to_string(),
        ] {
            let error = parse(&format!("# users\ndev:{hash}:{verifier}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("line 2"), "{error}");
            assert!(error.contains("SCRAM-SHA-256"), "{error}");
            assert!(
                !error.contains("hunter2") && !error.contains(hash),
                "{error}"
            );
        }
    }

    #[test]
    fn debug_shows_users_but_no_hash() {
        let mut file = PasswordFile::default();
        file.set("alice", b"secret").unwrap();
        let shown = format!("{file:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("argon2"), "{shown}");
        assert!(!shown.contains("SCRAM"), "{shown}");
    }
}
