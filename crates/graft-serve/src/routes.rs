//! The API's other handlers (health, version, metrics, not found) and the two middlewares
//! (request accounting, key + rate checks); the prediction routes are in `predict`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::canary::Deployed;
use crate::metrics::ModelLabels;
use crate::server::App;
use crate::ApiError;

type Shared = State<Arc<App>>;

/// Counts every response by route and status, with its latency, and gives the bodiless errors
/// of the layers below (timeout, wrong method) the API's JSON shape.
pub(crate) async fn track(State(app): Shared, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Counted under the router's own route, never the raw path: random paths must not add
    // series to /metrics.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status == StatusCode::REQUEST_TIMEOUT {
        resp = ApiError::new(
            status,
            "timeout",
            format!(
                "the request took longer than {} s (a slow upload, or a server at capacity)",
                app.opts.timeout.as_secs()
            ),
        )
        .into_response();
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = resp.headers().get(header::ALLOW).cloned();
        resp = ApiError::new(
            status,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )
        .into_response();
        if let Some(allow) = allow {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
    }
    app.metrics
        .request(&route, status.as_u16(), started.elapsed());
    resp
}

/// API key and rate limit, for the prediction routes.
pub(crate) async fn guard(
    State(app): Shared,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    match app.guard.admit(req.headers(), client.ip(), Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let mut resp = e.into_response();
            if resp.status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            resp
        }
    }
}

pub(crate) async fn health(State(app): Shared) -> Response {
    let runs = |d: &Deployed| d.batcher.stats().running.load(Ordering::Relaxed) > 0;
    let running = runs(&app.champion) && app.canary.as_ref().is_none_or(|c| runs(&c.deployed));
    let body = json!({
        "status": if running { "ok" } else { "model stopped" },
        "model": app.champion.model.name,
        "uptime_s": app.started.elapsed().as_secs(),
    });
    let status = if running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn version(State(app): Shared) -> Json<Value> {
    let m = &app.champion.model;
    let canary = app.canary.as_ref().map(|c| {
        let d = &c.deployed;
        json!({
            "model": d.model.name,
            "run": d.model.run,
            "registered": d.model.registered,
            "encoder": d.model.encoder,
            "sha256": d.sha256,
            "onnx": d.model.onnx_origin,
            "share_percent": c.share,
        })
    });
    Json(json!({
        "graft": env!("CARGO_PKG_VERSION"),
        "model": m.name,
        "run": m.run,
        "registered": m.registered,
        "encoder": m.encoder,
        "sha256": app.champion.sha256,
        "trained_ms": m.trained_ms,
        "onnx": m.onnx_origin,
        "input_size": m.preprocess.size,
        "classes": m.classes,
        "class_info": m.classes.iter().filter(|c| m.class_info.get(c).is_some()).count(),
        "canary": canary,
        "threshold": crate::predict::decimal(app.opts.threshold),
        "top": app.opts.top,
        "auth_required": app.guard.auth_required(),
        "max_body_bytes": app.opts.max_body,
        "max_batch_images": app.opts.max_batch_images,
        "explain": app.explainer.is_some(),
    }))
}

fn labels(d: &Deployed) -> ModelLabels<'_> {
    ModelLabels {
        run: &d.model.name,
        sha256: &d.sha256,
        encoder: &d.model.encoder,
    }
}

pub(crate) async fn metrics(State(app): Shared) -> Response {
    let canary = app.canary.as_ref().map(|c| (labels(&c.deployed), c.share));
    let text = app.metrics.render(
        &app.champion.model.classes,
        app.champion.batcher.stats(),
        &labels(&app.champion),
        app.started.elapsed(),
        app.live.as_ref().map(|l| l.scores()).as_ref(),
        canary.as_ref().map(|(l, share)| (l, *share)),
    );
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint {} {}; the API is POST /predict, POST /predict/batch, POST /explain, \
             GET /health, GET /version, GET /metrics, and the web page at /",
            req.method(),
            req.uri().path()
        ),
    )
}
