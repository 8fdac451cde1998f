//! The web page at `/`: static files compiled into the binary, no build step.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// Only our own files may run or load; previews are `blob:` URLs.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; \
                   style-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// The exported web app's policy (`graft export --format web`): as the page's, plus the
/// WebAssembly runtime and the app's service worker.
pub(crate) const WEB_APP_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     worker-src 'self'; img-src 'self' blob: data:; style-src 'self'; connect-src 'self'; \
     frame-ancestors 'none'";

fn asset(ctype: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub(crate) async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(crate) async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}
