//! The dashboard at `/`: the files of `www/dist`, embedded in the binary at build time (see
//! `build.rs`), or, when the gateway was built without them, a page that says how to build them.
//!
//! Serving rules:
//! - `/` is `index.html`; any other path is looked up as a file of the dist, else 404. The
//!   dashboard keeps its state in the query string (`/?sub=...`), not in paths, so there is no
//!   fallback to `index.html`.
//! - Content types come from file extensions; `.wasm` is `application/wasm`, which
//!   `WebAssembly.instantiateStreaming` insists on.
//! - Caching: files under `/assets/` carry a content hash in their names (the bundler's doing),
//!   so they are immutable for a year; everything else (`index.html` above all) is `no-cache`,
//!   revalidated with its entity tag, so a new gateway's dashboard shows on the next load.
//! - `index.html` carries a Content-Security-Policy: scripts and styles only from this origin's
//!   files (no inline script or style; `wasm-unsafe-eval` for the MQTT client's WebAssembly),
//!   connections (fetch, WebSocket) only to this origin, no forms submitted, no framing.
//!   Every file is sent with `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use super::HttpState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Write;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// URL path, starting with `/`.
    pub path: &'static str,
    /// The file's content.
    pub bytes: &'static [u8],
    /// Quoted entity tag derived from the content.
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// Whether this binary embeds a built dashboard.
pub const EMBEDDED: bool = !ASSETS.is_empty();

/// Cache policy of content-hashed files.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Cache policy of everything else: keep, but ask before each use.
const REVALIDATE: &str = "no-cache";

/// The policy of `index.html`. No `'unsafe-inline'` for styles: the page and its chart library
/// set styles only through the CSSOM (`element.style`), which CSP does not govern. `'self'` in
/// `connect-src` covers the same origin's `ws:`/`wss:` (CSP 3), the dashboard's only broker.
/// `data:` images are the empty favicon. The sign-in form is never submitted (`form-action`).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded file at `path`, if any.
pub(crate) fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS
        .binary_search_by(|asset| asset.path.cmp(path))
        .ok()
        .map(|index| &ASSETS[index])
}

/// The content type of a file name, from its extension.
pub(crate) fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Serves the dashboard; the router's fallback, so it sees every path no other route took.
pub(super) async fn serve(
    State(state): State<HttpState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "method not allowed\n",
        )
            .into_response();
    }
    let path = match uri.path() {
        "/" => "/index.html",
        path => path,
    };
    if !EMBEDDED && path == "/index.html" {
        return not_built(&state, &headers).into_response();
    }
    let Some(asset) = asset(path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let cache = if asset.path.starts_with("/assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| etag_matches(tags, asset.etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        (
            [(header::CONTENT_LENGTH, asset.bytes.len().to_string())],
            (),
        )
            .into_response()
    } else {
        asset.bytes.into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset.path)),
    );
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response_headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    response_headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response_headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.path.ends_with(".html") {
        response_headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

/// Whether an `If-None-Match` value (`*` or a comma list of tags, maybe weak) names `etag`.
fn etag_matches(value: &HeaderValue, etag: &str) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// `/` when the dashboard was not built into this binary: says so, how to build it, and where
/// the broker's endpoints are.
fn not_built(state: &HttpState, headers: &HeaderMap) -> Html<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let host = escape(host);
    let mut tcp = String::new();
    for address in state.mqtt_addresses.iter() {
        let _ = write!(
            tcp,
            "<li><code>mqtt://{address}</code> (port {})</li>",
            address.port()
        );
    }
    if tcp.is_empty() {
        tcp.push_str("<li>none configured</li>");
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>MQTT gateway</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}code{{background:rgba(127,127,127,.2);padding:0 .2rem}}</style>
</head>
<body>
<h1>MQTT gateway</h1>
<p><strong>The dashboard was not built into this binary.</strong> Build it with
<code>cargo xtask dist</code> (it needs Node.js and npm), then build the gateway again, or run
<code>cargo xtask run</code>, which does both. The broker is running; connect to it here:</p>
<ul>
<li>MQTT over WebSocket: <code>ws://{host}/mqtt</code> (subprotocol <code>mqtt</code> or <code>mqttv3.1</code>)</li>
</ul>
<p>MQTT over TCP:</p>
<ul>{tcp}</ul>
<p>Also: <a href="/metrics">/metrics</a> (Prometheus), <a href="/api/v1/stats">/api/v1/stats</a> (JSON API), <a href="/healthz">/healthz</a>.</p>
</body>
</html>
"#
    ))
}

/// Escapes text for HTML (the `Host` header is the client's to choose).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("/assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("/assets/client_wasm_bg-1.wasm"),
            "application/wasm"
        );
        assert_eq!(content_type("/assets/x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/noextension"), "application/octet-stream");
    }

    #[test]
    fn entity_tags() {
        let tag = "\"0123456789abcdef\"";
        let matches = |value: &'static str| etag_matches(&HeaderValue::from_static(value), tag);
        assert!(matches("\"0123456789abcdef\""));
        assert!(matches("W/\"0123456789abcdef\""));
        assert!(matches("\"other\", \"0123456789abcdef\""));
        assert!(matches("*"));
        assert!(!matches("\"other\""));
    }

    #[test]
    fn assets_are_sorted_for_lookup() {
        assert!(ASSETS.windows(2).all(|pair| pair[0].path < pair[1].path));
        if EMBEDDED {
            assert!(asset("/index.html").is_some());
        }
    }
}
