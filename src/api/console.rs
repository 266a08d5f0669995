//! `GET /console`: the web console, static files built into the binary
//! (`assets/console/`) that talk only to the `/v1` API.
//!
//! Nothing here reads the database or needs a token: the page asks for the
//! token and sends it as `Authorization: Bearer` on each API call, so the
//! console can do exactly what the token can and no more. Every response
//! carries a Content-Security-Policy that allows only this origin's script,
//! style and API (no inline script, no other host, no framing), so the page
//! works offline and a value shown in it cannot run as code.

use axum::Router;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");
const ICON: &str = include_str!("../../assets/console/favicon.svg");

/// The policy of every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to be merged into the daemon's router.
pub fn router() -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/console/favicon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_and_no_other_host() {
        assert!(!INDEX.contains("<script>"), "script only by src");
        assert!(!INDEX.contains("style="), "no inline style");
        for (name, text) in [
            ("index.html", INDEX),
            (
                "console.js",
                &SCRIPT.replace("https://receiver.example/hooks", ""),
            ),
            ("console.css", STYLE),
            (
                "favicon.svg",
                &ICON.replace("http://www.w3.org/2000/svg", ""),
            ),
        ] {
            assert!(!text.contains("://"), "{name} names another host");
            assert!(
                !text.contains("@import") && !text.contains("url("),
                "{name}"
            );
        }
        assert!(!SCRIPT.contains("innerHTML"), "data goes in as text only");
        assert!(!SCRIPT.contains("eval("));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
