//! The API's handlers and the two middlewares (request accounting, key + rate checks).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use graft_data::image_stats::ImageStats;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::batcher::BatchError;
use crate::metrics::ModelLabels;
use crate::server::App;
use crate::upload::{decode_error, uploads, Upload, CONTENT_TYPES};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    top: Option<usize>,
    threshold: Option<f32>,
}

struct Settings {
    top: usize,
    threshold: f32,
}

fn settings(app: &App, uri: &axum::http::Uri) -> Result<Settings, ApiError> {
    let Query(p) = Query::<Params>::try_from_uri(uri).map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{}; the query may set top=K and threshold=P", e.body_text()),
        )
    })?;
    let top = p.top.unwrap_or(app.opts.top);
    if top == 0 {
        return Err(ApiError::bad_request("bad_query", "top must be at least 1"));
    }
    let threshold = p.threshold.unwrap_or(app.opts.threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(ApiError::bad_request(
            "bad_query",
            "threshold must be between 0 and 1",
        ));
    }
    Ok(Settings {
        top: top.min(app.model.classes.len()),
        threshold,
    })
}

/// Decode and preprocess on the blocking pool (CPU work must not stall the async workers);
/// the image's statistics come along for the audit trail (the image itself goes no further).
async fn prepare(app: &Arc<App>, upload: Upload) -> Result<(Vec<f32>, ImageStats), ApiError> {
    let app = app.clone();
    let name = upload.name.clone();
    tokio::task::spawn_blocking(move || {
        let img = graft_data::decode::decode_bytes_limited(&upload.bytes, app.opts.max_pixels)
            .map_err(|e| decode_error(&upload.name, &e))?;
        let stats = if app.audit.is_some() || app.live.is_some() {
            graft_data::image_stats::image_stats(&img)
        } else {
            ImageStats::default()
        };
        Ok((app.model.preprocess.apply(&img), stats))
    })
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "corrupt_image",
            format!("{name}: the image could not be decoded"),
        ))
    })
}

fn batch_error(e: BatchError) -> ApiError {
    match e {
        BatchError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the server is at capacity; retry shortly",
        )
        .retry_after(1),
        BatchError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the model is not running (the server is shutting down)",
        ),
        BatchError::Failed(why) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "inference_failed",
            format!("the model failed: {why}"),
        ),
    }
}

/// A setting as the user typed it (0.7, not the f32's 0.699999988).
fn decimal(x: f32) -> f64 {
    (f64::from(x) * 1e6).round() / 1e6
}

/// Who asked, when, and by which route: what an audit row needs besides the answer.
struct Asked {
    request_id: String,
    endpoint: &'static str,
    key_hash: Option<String>,
    started: Instant,
}

impl Asked {
    fn new(req: &Request, endpoint: &'static str) -> Asked {
        Asked {
            request_id: crate::audit::request_id(),
            endpoint,
            key_hash: crate::guard::presented_key(req.headers())
                .filter(|k| !k.is_empty())
                .map(crate::audit::key_hash),
            started: Instant::now(),
        }
    }
}

/// Record one answer in the audit trail (when there is one); returns once it is committed.
async fn audit(
    app: &App,
    asked: &Asked,
    id: String,
    answer: &Value,
    stats: ImageStats,
    embedding: &[f32],
) {
    let Some(log) = &app.audit else {
        return;
    };
    let top = answer["top"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|c| {
                    (
                        c["class"].as_str().unwrap_or_default().to_string(),
                        c["probability"].as_f64().unwrap_or_default() as f32,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let m = &app.model;
    log.log(crate::audit::Record {
        time_ms: crate::audit::now_ms(),
        request_id: id,
        endpoint: asked.endpoint.to_string(),
        model: m.name.clone(),
        version: m.registered.as_ref().map(|r| r.version.clone()),
        sha256: app.sha256.clone(),
        key_hash: asked.key_hash.clone(),
        predicted: answer["prediction"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        probability: answer["probability"].as_f64().unwrap_or_default() as f32,
        confident: answer["confident"].as_bool().unwrap_or_default(),
        top,
        latency_ms: asked.started.elapsed().as_secs_f64() * 1000.0,
        stats,
        embedding: (!embedding.is_empty()).then(|| embedding.to_vec()),
    })
    .await;
}

/// Record a prediction request that failed (status and error code only), for the error rate.
async fn audit_failure(app: &App, asked: &Asked, e: &ApiError) {
    if let Some(log) = &app.audit {
        log.log_failure(crate::audit::Failure {
            time_ms: crate::audit::now_ms(),
            request_id: asked.request_id.clone(),
            endpoint: asked.endpoint.to_string(),
            status: e.status.as_u16(),
            code: e.code.to_string(),
        })
        .await;
    }
}

/// Add one answered image to the drift gauges' window.
fn observe(app: &App, stats: ImageStats, probs: &[f32]) {
    if let Some(live) = &app.live {
        let best = graft_model::imagenet::top_k_probs(probs, 1)
            .first()
            .map_or(0, |&(k, _)| k);
        live.observe(stats, best);
    }
}

/// The JSON answer for one image's probabilities.
fn answer(app: &App, probs: &[f32], s: &Settings) -> Value {
    let classes = &app.model.classes;
    let ranked = graft_model::imagenet::top_k_probs(probs, s.top);
    let (best, p_best) = ranked.first().copied().unwrap_or((0, 0.0));
    let confident = p_best >= s.threshold;
    app.metrics.prediction(best, p_best, confident);
    let top: Vec<Value> = ranked
        .iter()
        .map(|&(k, p)| {
            let mut v = json!({"class": classes[k], "probability": p});
            if let Some(info) = app.model.class_info.get(&classes[k]) {
                v["info"] = Value::Object(info.clone());
            }
            v
        })
        .collect();
    let mut out = json!({
        "prediction": classes[best],
        "probability": p_best,
        "confident": confident,
        "top": top,
    });
    if !confident {
        out["warning"] = json!(crate::uncertain_warning(p_best, s.threshold));
    }
    out
}

pub(crate) async fn predict(State(app): Shared, req: Request) -> Result<Json<Value>, ApiError> {
    let asked = Asked::new(&req, "/predict");
    let answered = predict_one(&app, &asked, req).await;
    if let Err(e) = &answered {
        audit_failure(&app, &asked, e).await;
    }
    answered
}

async fn predict_one(app: &Arc<App>, asked: &Asked, req: Request) -> Result<Json<Value>, ApiError> {
    let uri = req.uri().clone();
    let mut images = uploads(req, 1, app.opts.max_body).await.map_err(|e| {
        if e.code == "too_many_images" {
            ApiError::bad_request(
                "too_many_images",
                "/predict takes one image; send several to /predict/batch",
            )
        } else {
            e
        }
    })?;
    let s = settings(app, &uri)?;
    let Some(upload) = images.pop() else {
        return Err(ApiError::bad_request("no_image", CONTENT_TYPES));
    };
    let (input, stats) = prepare(app, upload).await?;
    let row = app.batcher.predict(input, 1).await.map_err(batch_error)?;
    let (probs, embedding) = row.split_at(app.model.classes.len());
    let mut out = answer(app, probs, &s);
    observe(app, stats, probs);
    out["model"] = json!(app.model.name);
    out["threshold"] = json!(decimal(s.threshold));
    out["request_id"] = json!(asked.request_id);
    audit(app, asked, asked.request_id.clone(), &out, stats, embedding).await;
    Ok(Json(out))
}

pub(crate) async fn predict_batch(
    State(app): Shared,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let asked = Asked::new(&req, "/predict/batch");
    let answered = predict_many(&app, &asked, req).await;
    if let Err(e) = &answered {
        audit_failure(&app, &asked, e).await;
    }
    answered
}

async fn predict_many(
    app: &Arc<App>,
    asked: &Asked,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let uri = req.uri().clone();
    let images = uploads(req, app.opts.max_batch_images, app.opts.max_body).await?;
    let s = settings(app, &uri)?;
    // Decode all in parallel (each on the blocking pool); an unreadable image gets its own
    // error entry.
    let names: Vec<String> = images.iter().map(|up| up.name.clone()).collect();
    let prepared =
        futures_util::future::join_all(images.into_iter().map(|up| prepare(app, up))).await;
    let mut input = Vec::new();
    let mut ok = Vec::new();
    let mut stats = Vec::new();
    let mut results: Vec<Value> = Vec::with_capacity(names.len());
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            Ok((x, st)) => {
                input.extend(x);
                ok.push(i);
                stats.push(st);
                results.push(Value::Null);
            }
            Err(e) => results.push(json!({"error": e.message, "code": e.code})),
        }
    }
    if !ok.is_empty() {
        let c = app.model.classes.len();
        let width = c + app.embedding_dims;
        let rows = app
            .batcher
            .predict(input, ok.len())
            .await
            .map_err(batch_error)?;
        for (j, &i) in ok.iter().enumerate() {
            let probs = &rows[j * width..j * width + c];
            results[i] = answer(app, probs, &s);
            observe(app, stats[j], probs);
        }
        // One row per image, committed together before the answer goes out.
        let rows = ok.iter().enumerate().zip(&stats).map(|((j, &i), st)| {
            let id = format!("{}-{i}", asked.request_id);
            let embedding = &rows[j * width + c..(j + 1) * width];
            audit(app, asked, id, &results[i], *st, embedding)
        });
        futures_util::future::join_all(rows).await;
    }
    for (r, name) in results.iter_mut().zip(&names) {
        r["image"] = json!(name);
    }
    Ok(Json(json!({
        "model": app.model.name,
        "request_id": asked.request_id,
        "threshold": decimal(s.threshold),
        "predictions": results,
    })))
}

pub(crate) async fn health(State(app): Shared) -> Response {
    let running = app.batcher.stats().running.load(Ordering::Relaxed) > 0;
    let body = json!({
        "status": if running { "ok" } else { "model stopped" },
        "model": app.model.name,
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
    let m = &app.model;
    Json(json!({
        "graft": env!("CARGO_PKG_VERSION"),
        "model": m.name,
        "run": m.run,
        "registered": m.registered,
        "encoder": m.encoder,
        "sha256": app.sha256,
        "onnx": m.onnx_origin,
        "input_size": m.preprocess.size,
        "classes": m.classes,
        "class_info": m.classes.iter().filter(|c| m.class_info.get(c).is_some()).count(),
        "threshold": decimal(app.opts.threshold),
        "top": app.opts.top,
        "auth_required": app.guard.auth_required(),
        "max_body_bytes": app.opts.max_body,
        "max_batch_images": app.opts.max_batch_images,
    }))
}

pub(crate) async fn metrics(State(app): Shared) -> Response {
    let labels = ModelLabels {
        run: &app.model.name,
        sha256: &app.sha256,
        encoder: &app.model.encoder,
    };
    let text = app.metrics.render(
        &app.model.classes,
        app.batcher.stats(),
        &labels,
        app.started.elapsed(),
        app.live.as_ref().map(|l| l.scores()).as_ref(),
    );
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint {} {}; the API is POST /predict, POST /predict/batch, GET /health, \
             GET /version, GET /metrics, and the web page at /",
            req.method(),
            req.uri().path()
        ),
    )
}
