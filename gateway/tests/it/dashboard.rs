//! The dashboard at `/`: the embedded `www/dist` files with their content types and cache
//! policy when the gateway was built after `cargo xtask dist`, and otherwise the page that says
//! the dashboard was not built. Which of the two applies is `gateway::dashboard::EMBEDDED`; each
//! test checks the one that applies, and `cargo xtask test` runs this module twice: with the
//! plain `cargo test` (a fresh clone has no `www/dist` yet) and after `cargo xtask dist`, with
//! `GATEWAY_EXPECT_DASHBOARD=1`, which makes a build without the dashboard a failure.

use crate::web_support::{Harness, get, http_request};
use gateway::dashboard::{ASSETS, EMBEDDED};

/// Whether this run must have the dashboard embedded (see the module documentation).
fn check_expectation() {
    if std::env::var_os("GATEWAY_EXPECT_DASHBOARD").is_some() {
        assert!(
            !ASSETS.is_empty(),
            "built after cargo xtask dist, the dashboard must be embedded"
        );
    }
}

#[tokio::test]
async fn the_index_is_the_dashboard_as_built() {
    check_expectation();
    let gateway = Harness::start().await;
    if EMBEDDED {
        index_is_html_revalidated_on_every_load(&gateway).await;
    } else {
        index_says_how_to_build_it(&gateway).await;
    }
}

#[tokio::test]
async fn assets_are_served_as_built() {
    check_expectation();
    if EMBEDDED {
        hashed_assets_are_immutable_and_wasm_is_application_wasm().await;
    } else {
        assert!(ASSETS.is_empty());
        let gateway = Harness::start().await;
        assert_eq!(get(gateway.http, "/assets/index.js").await.status, 404);
    }
}

async fn index_says_how_to_build_it(gateway: &Harness) {
    let response = get(gateway.http, "/").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{response:?}"
    );
    let page = response.text();
    assert!(page.contains("not built"), "{page}");
    assert!(page.contains("cargo xtask dist"), "{page}");
    assert!(
        page.contains(&format!("ws://{}/mqtt", gateway.http)),
        "{page}"
    );
    assert!(page.contains(&gateway.tcp.port().to_string()), "{page}");
    for link in ["/metrics", "/api/v1/stats", "/healthz"] {
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "{link} in {page}"
        );
    }
    // The Host header is the client's: it is escaped, not echoed as markup.
    let response = http_request(gateway.http, "GET", "/", &[("Host", "<script>x</script>")]).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(!response.text().contains("<script>"), "{}", response.text());
    assert!(
        response.text().contains("ws://&lt;script&gt;"),
        "{}",
        response.text()
    );
}

async fn index_is_html_revalidated_on_every_load(gateway: &Harness) {
    let response = get(gateway.http, "/").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert!(
        response
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("'wasm-unsafe-eval'")),
        "{response:?}"
    );
    assert!(response.text().contains("<script type=\"module\""));
    let etag = response.header("etag").expect("an entity tag").to_owned();

    let revalidated = http_request(gateway.http, "GET", "/", &[("If-None-Match", &etag)]).await;
    assert_eq!(revalidated.status, 304, "{revalidated:?}");
    assert!(revalidated.body.is_empty());
}

async fn hashed_assets_are_immutable_and_wasm_is_application_wasm() {
    let gateway = Harness::start().await;
    let mut kinds = Vec::new();
    for asset in ASSETS.iter().filter(|a| a.path.starts_with("/assets/")) {
        let response = get(gateway.http, asset.path).await;
        assert_eq!(response.status, 200, "{}", asset.path);
        assert_eq!(response.body, asset.bytes, "{}", asset.path);
        assert_eq!(
            response.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{}",
            asset.path
        );
        let content_type = response.header("content-type").unwrap_or("").to_owned();
        if asset.path.ends_with(".wasm") {
            assert_eq!(content_type, "application/wasm");
        }
        if asset.path.ends_with(".js") {
            assert_eq!(content_type, "text/javascript; charset=utf-8");
        }
        kinds.push(asset.path.rsplit('.').next().unwrap_or("").to_owned());
    }
    for kind in ["js", "css", "wasm"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "a .{kind} asset in {kinds:?}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let gateway = Harness::start().await;
    assert_eq!(get(gateway.http, "/no/such/file.js").await.status, 404);
    assert_eq!(get(gateway.http, "/api/v1/nothing").await.status, 404);
    let post = http_request(gateway.http, "POST", "/", &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405, "{post:?}");
    // The other routes still win over the dashboard.
    assert_eq!(get(gateway.http, "/healthz").await.text(), "ok\n");
}
