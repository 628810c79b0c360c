//! The `Origin` check of WebSocket upgrades: the defence against cross-site WebSocket hijacking.
//!
//! A browser lets any page open a WebSocket to any host, and sends the page's origin along; a
//! broker reachable on a LAN would otherwise serve a hostile page that a user merely visits. So an
//! upgrade carrying an `Origin` is accepted only when that origin is
//! - the same origin as the gateway (its host and port equal the `Host` header's),
//! - a localhost origin (`http(s)://localhost`, `127.0.0.1` or `[::1]`, any port): pages served
//!   on this machine, such as a development server, or
//! - listed with `--allowed-origin` (`*` accepts every origin).
//!
//! An upgrade with no `Origin` comes from a non-browser client (a device, a script), which no web
//! page can impersonate, and is accepted. Origins are compared by scheme, lower-cased host and
//! port, with the scheme's default port filled in, so `https://example.com` equals
//! `https://EXAMPLE.com:443`.

use thiserror::Error;

/// An `--allowed-origin` value that is not an origin.
#[derive(Debug, Error)]
#[error(
    "invalid allowed origin {0:?}: expected scheme://host[:port], e.g. https://example.com, or *"
)]
pub struct InvalidOrigin(pub String);

/// Why an upgrade's origin was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OriginRefusal {
    /// The `Origin` header is not a `scheme://host[:port]` origin (`null` included).
    Malformed,
    /// A well-formed origin that is neither same-origin, localhost nor allowed.
    NotAllowed,
}

/// An origin reduced to what comparisons need.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    /// Lower case.
    scheme: String,
    /// Lower case; IPv6 addresses keep their brackets.
    host: String,
    /// The explicit port, or the scheme's default one.
    port: Option<u16>,
}

impl Origin {
    /// Parses `scheme://host[:port]`, tolerating one trailing `/` (as people write in flags).
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            || rest.contains(['/', '?', '#', '@'])
        {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = parse_authority(rest)?;
        let port = port.or_else(|| default_port(&scheme));
        Some(Origin { scheme, host, port })
    }
}

/// Splits `host[:port]` (with `[v6]` hosts), lower-casing the host.
fn parse_authority(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, after) = text.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let port = match port {
        None => None,
        Some(port) => Some(port.parse::<u16>().ok()?),
    };
    Some((host.to_ascii_lowercase(), port))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Which origins may open a WebSocket.
#[derive(Clone, Debug, Default)]
pub(crate) struct OriginPolicy {
    allowed: Vec<Origin>,
    allow_any: bool,
}

impl OriginPolicy {
    /// The default policy (same origin and localhost) plus the `allowed` origins.
    pub(crate) fn new<S: AsRef<str>>(allowed: &[S]) -> Result<Self, InvalidOrigin> {
        let mut policy = OriginPolicy::default();
        for text in allowed {
            let text = text.as_ref();
            if text.trim() == "*" {
                policy.allow_any = true;
                continue;
            }
            let origin = Origin::parse(text).ok_or_else(|| InvalidOrigin(text.to_owned()))?;
            policy.allowed.push(origin);
        }
        Ok(policy)
    }

    /// Decides on an upgrade from its `Origin` and `Host` header values.
    pub(crate) fn check(
        &self,
        origin: Option<&[u8]>,
        host: Option<&[u8]>,
    ) -> Result<(), OriginRefusal> {
        let Some(origin) = origin else {
            // Not a browser: nothing for a web page to hijack.
            return Ok(());
        };
        if self.allow_any {
            return Ok(());
        }
        let origin = std::str::from_utf8(origin)
            .ok()
            .and_then(Origin::parse)
            .ok_or(OriginRefusal::Malformed)?;
        if is_localhost(&origin) || self.allowed.contains(&origin) {
            return Ok(());
        }
        let same_origin = host
            .and_then(|host| std::str::from_utf8(host).ok())
            .and_then(parse_authority)
            .is_some_and(|(host, port)| {
                host == origin.host && port.or_else(|| default_port(&origin.scheme)) == origin.port
            });
        if same_origin {
            Ok(())
        } else {
            Err(OriginRefusal::NotAllowed)
        }
    }
}

fn is_localhost(origin: &Origin) -> bool {
    matches!(origin.scheme.as_str(), "http" | "https")
        && matches!(origin.host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy() {
        let policy = OriginPolicy::new::<&str>(&[]).unwrap();
        let host = Some("gw.example:8080".as_bytes());
        // (origin, expected)
        let table: &[(Option<&str>, Result<(), OriginRefusal>)] = &[
            (None, Ok(())),
            (Some("http://gw.example:8080"), Ok(())),
            (Some("http://GW.example:8080"), Ok(())),
            (Some("http://gw.example"), Err(OriginRefusal::NotAllowed)),
            (
                Some("http://gw.example:8081"),
                Err(OriginRefusal::NotAllowed),
            ),
            (Some("http://localhost:3000"), Ok(())),
            (Some("https://localhost"), Ok(())),
            (Some("http://127.0.0.1:5173"), Ok(())),
            (Some("http://[::1]:8000"), Ok(())),
            (Some("ftp://localhost"), Err(OriginRefusal::NotAllowed)),
            (
                Some("http://localhost.evil.example"),
                Err(OriginRefusal::NotAllowed),
            ),
            (Some("https://evil.example"), Err(OriginRefusal::NotAllowed)),
            (Some("null"), Err(OriginRefusal::Malformed)),
            (Some("http://"), Err(OriginRefusal::Malformed)),
            (Some("http://host:99999"), Err(OriginRefusal::Malformed)),
        ];
        for (origin, expected) in table {
            assert_eq!(
                policy.check(origin.map(str::as_bytes), host),
                *expected,
                "{origin:?}"
            );
        }
    }

    #[test]
    fn same_origin_uses_default_ports() {
        let policy = OriginPolicy::new::<&str>(&[]).unwrap();
        let check =
            |origin: &str, host: &str| policy.check(Some(origin.as_bytes()), Some(host.as_bytes()));
        assert_eq!(check("https://gw.example", "gw.example"), Ok(()));
        assert_eq!(check("https://gw.example", "gw.example:443"), Ok(()));
        assert_eq!(check("http://gw.example:80", "gw.example"), Ok(()));
        assert_eq!(check("http://[fd00::1]:8080", "[fd00::1]:8080"), Ok(()));
        assert_eq!(
            check("https://gw.example", "gw.example:8080"),
            Err(OriginRefusal::NotAllowed)
        );
        // No Host header: nothing to be the same as.
        assert_eq!(
            policy.check(Some(b"https://gw.example"), None),
            Err(OriginRefusal::NotAllowed)
        );
    }

    #[test]
    fn allowed_origins() {
        let policy =
            OriginPolicy::new(&["https://app.example/", "http://other.example:81"]).unwrap();
        let host = Some("gw.example".as_bytes());
        assert_eq!(policy.check(Some(b"https://app.example:443"), host), Ok(()));
        assert_eq!(policy.check(Some(b"http://other.example:81"), host), Ok(()));
        assert_eq!(
            policy.check(Some(b"http://app.example"), host),
            Err(OriginRefusal::NotAllowed)
        );
        let any = OriginPolicy::new(&["*"]).unwrap();
        assert_eq!(any.check(Some(b"null"), host), Ok(()));
        assert!(OriginPolicy::new(&["app.example"]).is_err());
        assert!(OriginPolicy::new(&["https://app.example/path"]).is_err());
    }
}
