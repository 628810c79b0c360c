//! What the security rows of `cargo xtask bench` load the brokers with: a CA and a server
//! certificate for 127.0.0.1, made with Debian's `openssl` once per run, and the ACL of
//! [`ACL_RULES`] rules that both brokers read.
//!
//! The certificate is X.509 v3, ECDSA P-256, with `subjectAltName = IP:127.0.0.1`,
//! `extendedKeyUsage = serverAuth`, signed by a throwaway CA (`basicConstraints = CA:TRUE`);
//! both brokers serve the same certificate and key, and `mqtt-bench` trusts that CA only.
//!
//! The ACL is written so that Mosquitto 2.0's reading and the gateway's agree on every topic
//! the bench touches: the fan-in publishers write `bench/fanin/N` and its subscriber reads
//! `bench/fanin/#`, which two rules grant to anonymous clients (every client is anonymous
//! here: neither broker has authentication configured). The other rules name other topics:
//! `topic` rules for anonymous clients (a few of them `deny`) standing before the two grants, so
//! that a broker that scans rules in order scans them all for each message, `pattern` rules
//! with `%c` (which apply to every client, anonymous or not) and with `%u` (which apply to
//! none here), and rules of named users. No `deny` rule matches a bench topic: Mosquitto lets
//! the first matching rule decide (its `deny` rules first), the gateway lets any matching
//! `deny` win, and the two only agree where no `deny` matches.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::process;

/// Rules (`topic` and `pattern` lines) in the generated ACL.
pub const ACL_RULES: usize = 100;

/// The rules that grant the fan-in load's topics to anonymous clients: its publishers write
/// `bench/fanin/0` to `bench/fanin/3` and its subscriber reads `bench/fanin/#`.
const BENCH_GRANTS: [&str; 2] = ["topic write bench/fanin/+", "topic read bench/fanin/#"];

/// The TLS material of one run: PEM files under the bench directory.
pub struct Pki {
    /// The CA's certificate, which `mqtt-bench --tls-ca` trusts.
    pub ca: PathBuf,
    /// The server certificate (for IP 127.0.0.1), which both brokers serve.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
}

impl Pki {
    /// Makes a fresh CA and server certificate in `dir` (emptied first) with `openssl`.
    pub fn generate(dir: &Path) -> Result<Pki> {
        ensure_openssl()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1\n",
        )?;
        let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            dir,
            &["req", "-x509", "-nodes", "-days", "7", "-sha256"],
            &new_key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=mqtt-bench CA",
                "-addext",
                "basicConstraints = critical, CA:TRUE",
                "-addext",
                "keyUsage = critical, keyCertSign, cRLSign",
            ],
        )?;
        openssl(
            dir,
            &["req", "-new", "-nodes"],
            &new_key,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        )?;
        openssl(
            dir,
            &["x509", "-req", "-days", "7", "-sha256"],
            &[],
            &[
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        )?;
        let key = dir.join("server.key");
        // Debian's Mosquitto, started as root, becomes user `mosquitto` before it reads its
        // certificates; the key of this throwaway loopback certificate may be read by anyone.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
        Ok(Pki {
            ca: dir.join("ca.pem"),
            certificate: dir.join("server.pem"),
            key,
        })
    }
}

/// Runs `openssl` in `dir` with the argument groups in order; quiet unless it fails.
fn openssl(dir: &Path, command: &[&str], key: &[&str], rest: &[&str]) -> Result<()> {
    let mut openssl = process::command("openssl");
    openssl.current_dir(dir).args(command).args(key).args(rest);
    let output = openssl
        .output()
        .with_context(|| format!("running `{}`", process::display(&openssl)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            process::display(&openssl),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Ensures the `openssl` command is there (Debian's package), installing it when running as
/// root.
fn ensure_openssl() -> Result<()> {
    if process::probe(process::command("openssl").arg("version")).is_some() {
        return Ok(());
    }
    println!("installing Debian package openssl");
    process::run(process::command("apt-get").args(["update", "-q"]))?;
    process::run(
        process::command("apt-get")
            .args(["install", "-y", "-q", "openssl"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The ACL both brokers load for the ACL row: [`ACL_RULES`] rules in Mosquitto's syntax.
pub fn acl_text() -> String {
    let mut anonymous = Vec::new();
    // 44 rules for anonymous clients on other topics, four of them denials.
    for line in 0..10 {
        anonymous.push(format!("topic read plant/line{line}/+/status"));
        anonymous.push(format!("topic write plant/line{line}/commands/#"));
        anonymous.push(format!("topic readwrite plant/line{line}/chat"));
        anonymous.push(format!("topic read public/line{line}/#"));
    }
    for line in 0..4 {
        anonymous.push(format!("topic deny plant/line{line}/commands/firmware/#"));
    }
    let mut text = String::from(
        "# mqtt-bench: an ACL of 100 rules; only the two before the patterns grant the bench's\n\
         # topics, to anonymous clients.\n",
    );
    for rule in anonymous.iter().map(String::as_str).chain(BENCH_GRANTS) {
        text.push_str(rule);
        text.push('\n');
    }
    // 24 patterns: 16 with %c, 8 with %u.
    for index in 0..8 {
        text.push_str(&format!("pattern readwrite clients/%c/channel{index}/#\n"));
        text.push_str(&format!("pattern read broadcast/{index}/%c\n"));
        text.push_str(&format!("pattern write users/%u/outbox{index}/#\n"));
    }
    // 30 rules of ten named users.
    for user in 0..10 {
        text.push_str(&format!(
            "user device{user}\n\
             topic write devices/device{user}/telemetry/#\n\
             topic read devices/device{user}/config\n\
             topic readwrite devices/device{user}/rpc/+\n"
        ));
    }
    text
}

/// Writes [`acl_text`] to `dir/acl.conf` and returns the path.
pub fn write_acl(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("acl.conf");
    std::fs::write(&path, acl_text())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules of the ACL that name a topic for anonymous clients (before any `user` line).
    fn anonymous_rules(text: &str) -> Vec<&str> {
        text.lines()
            .take_while(|line| !line.starts_with("user "))
            .filter(|line| line.starts_with("topic "))
            .collect()
    }

    #[test]
    fn the_acl_has_a_hundred_rules_and_grants_the_bench_topics_last() {
        let text = acl_text();
        let rules = text
            .lines()
            .filter(|line| line.starts_with("topic ") || line.starts_with("pattern "))
            .count();
        assert_eq!(rules, ACL_RULES);
        let anonymous = anonymous_rules(&text);
        assert_eq!(anonymous[anonymous.len() - 2..], BENCH_GRANTS);
        assert!(
            anonymous.len() > 40,
            "most rules are scanned before the grants"
        );
    }

    /// Mosquitto and the gateway only agree where no `deny` matches: none may touch `bench/`,
    /// and no pattern may (a client id is substituted into them).
    #[test]
    fn no_other_rule_names_a_bench_topic() {
        let text = acl_text();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let filter = line.rsplit(' ').next().unwrap_or_default();
            let grant = BENCH_GRANTS.contains(&line);
            assert!(
                grant || !(filter.starts_with("bench/") || filter.starts_with('+')),
                "{line}"
            );
            assert!(
                !line.contains("deny") || filter.starts_with("plant/"),
                "{line}"
            );
        }
    }
}
