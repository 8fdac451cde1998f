//! The prediction routes: `/predict` and `/predict/batch`. Each upload is decoded once,
//! preprocessed for the model that answers (and for the champion beside a canary), scored,
//! counted in `/metrics` and the drift window, and recorded in the audit trail before the
//! answer goes out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::StatusCode;
use axum::Json;
use graft_data::image_stats::ImageStats;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::Arm;
use crate::batcher::BatchError;
use crate::canary::Deployed;
use crate::server::App;
use crate::upload::{decode_error, uploads, Upload, CONTENT_TYPES};
use crate::ApiError;

type Shared = State<Arc<App>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    top: Option<usize>,
    threshold: Option<f32>,
}

/// How many classes an answer lists and where it stops being confident.
pub(crate) struct Settings {
    top: usize,
    pub threshold: f32,
}

fn settings(app: &App, uri: &axum::http::Uri) -> Result<Settings, ApiError> {
    let Query(p) = Query::<Params>::try_from_uri(uri).map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{}; the query may set top=K and threshold=P", e.body_text()),
        )
    })?;
    checked(app, p.top, p.threshold)
}

/// A request's `top` and `threshold` (the server's own when not given), checked.
pub(crate) fn checked(
    app: &App,
    top: Option<usize>,
    threshold: Option<f32>,
) -> Result<Settings, ApiError> {
    let top = top.unwrap_or(app.opts.top);
    if top == 0 {
        return Err(ApiError::bad_request("bad_query", "top must be at least 1"));
    }
    let threshold = threshold.unwrap_or(app.opts.threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(ApiError::bad_request(
            "bad_query",
            "threshold must be between 0 and 1",
        ));
    }
    Ok(Settings {
        top: top.min(app.champion.model.classes.len()),
        threshold,
    })
}

/// An upload ready for the models: its input for the champion and, on a canary request, for
/// the challenger (whose preprocessing may differ), and the image's statistics.
struct Prepared {
    champion: Vec<f32>,
    canary: Option<Vec<f32>>,
    stats: ImageStats,
}

/// Decode and preprocess on the blocking pool (CPU work must not stall the async workers);
/// the image's statistics come along for the audit trail (the image itself goes no further).
async fn prepare(app: &Arc<App>, upload: Upload, arm: Arm) -> Result<Prepared, ApiError> {
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
        let canary = app
            .canary
            .as_ref()
            .filter(|_| arm == Arm::Canary)
            .map(|c| c.deployed.model.preprocess.apply(&img));
        Ok(Prepared {
            champion: app.champion.model.preprocess.apply(&img),
            canary,
            stats,
        })
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

/// The models' rows for a request's images.
struct Scored {
    /// The answering model's.
    answer: Vec<f32>,
    /// The champion's on a canary request (its shadow score); none on the champion's own
    /// requests, or when the shadow run failed (the client is answered all the same).
    shadow: Option<Vec<f32>>,
}

/// Run `n` prepared images through the model that answers, and on a canary request through
/// the champion beside it.
async fn score(
    app: &App,
    champion: Vec<f32>,
    canary: Option<Vec<f32>>,
    n: usize,
) -> Result<Scored, ApiError> {
    match (&app.canary, canary) {
        (Some(c), Some(input)) => {
            let (answer, shadow) = tokio::join!(
                c.deployed.batcher.predict(input, n),
                app.champion.batcher.predict(champion, n)
            );
            let shadow = shadow
                .map_err(|e| tracing::warn!("the champion's shadow score failed: {e}"))
                .ok();
            Ok(Scored {
                answer: answer.map_err(batch_error)?,
                shadow,
            })
        }
        _ => Ok(Scored {
            answer: app
                .champion
                .batcher
                .predict(champion, n)
                .await
                .map_err(batch_error)?,
            shadow: None,
        }),
    }
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
pub(crate) fn decimal(x: f32) -> f64 {
    (f64::from(x) * 1e6).round() / 1e6
}

/// Who asked, when, by which route, and which model answers: what an audit row needs besides
/// the answer.
struct Asked {
    request_id: String,
    endpoint: &'static str,
    key_hash: Option<String>,
    started: Instant,
    arm: Arm,
}

impl Asked {
    fn new(app: &App, req: &Request, endpoint: &'static str) -> Asked {
        let key_hash = crate::guard::presented_key_hash(req.headers());
        // Sticky: the same key (the same address, without one) always lands on the same arm.
        let arm = app.canary.as_ref().map_or(Arm::Champion, |c| {
            let client = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip().to_string());
            let identity = key_hash.clone().or(client).unwrap_or_default();
            crate::canary::arm_for(&identity, c.share)
        });
        Asked {
            request_id: crate::audit::request_id(),
            endpoint,
            key_hash,
            started: Instant::now(),
            arm,
        }
    }
}

impl App {
    /// The model of `arm` (the champion when there is no canary).
    fn deployed(&self, arm: Arm) -> &Deployed {
        match (&self.canary, arm) {
            (Some(c), Arm::Canary) => &c.deployed,
            _ => &self.champion,
        }
    }
}

/// One image's answer, and what `/metrics` counts of it.
pub(crate) struct Answered {
    pub json: Value,
    best: usize,
    probability: f32,
    confident: bool,
}

/// The JSON answer for one image's probabilities.
pub(crate) fn answer(who: &Deployed, probs: &[f32], s: &Settings) -> Answered {
    let classes = &who.model.classes;
    let ranked = graft_model::imagenet::top_k_probs(probs, s.top);
    let (best, p_best) = ranked.first().copied().unwrap_or((0, 0.0));
    let confident = p_best >= s.threshold;
    let top: Vec<Value> = ranked
        .iter()
        .map(|&(k, p)| {
            let mut v = json!({"class": classes[k], "probability": p});
            if let Some(info) = who.model.class_info.get(&classes[k]) {
                v["info"] = Value::Object(info.clone());
            }
            v
        })
        .collect();
    let mut json = json!({
        "prediction": classes[best],
        "probability": p_best,
        "confident": confident,
        "top": top,
    });
    if !confident {
        json["warning"] = json!(crate::uncertain_warning(p_best, s.threshold));
    }
    Answered {
        json,
        best,
        probability: p_best,
        confident,
    }
}

/// One audit row: `answer`, scored by `arm`'s model, for image request `id`.
struct Row<'a> {
    arm: Arm,
    answered: bool,
    id: String,
    answer: &'a Value,
    embedding: &'a [f32],
}

fn record(app: &App, asked: &Asked, row: Row<'_>, stats: ImageStats) -> crate::audit::Record {
    let a = row.answer;
    let top = a["top"]
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
    let who = app.deployed(row.arm);
    crate::audit::Record {
        time_ms: crate::audit::now_ms(),
        request_id: row.id,
        endpoint: asked.endpoint.to_string(),
        model: who.model.name.clone(),
        version: who.model.registered.as_ref().map(|r| r.version.clone()),
        sha256: who.sha256.clone(),
        key_hash: asked.key_hash.clone(),
        predicted: a["prediction"].as_str().unwrap_or_default().to_string(),
        probability: a["probability"].as_f64().unwrap_or_default() as f32,
        confident: a["confident"].as_bool().unwrap_or_default(),
        top,
        latency_ms: asked.started.elapsed().as_secs_f64() * 1000.0,
        stats,
        embedding: (!row.embedding.is_empty()).then(|| row.embedding.to_vec()),
        arm: row.arm,
        answered: row.answered,
    }
}

/// Image `j` of a scored request: its answer, counted in `/metrics` and the drift window, and
/// its audit rows (the answer's, and the champion's shadow score on a canary request).
fn finish(
    app: &App,
    asked: &Asked,
    scored: &Scored,
    j: usize,
    s: &Settings,
    stats: ImageStats,
    id: &str,
) -> (Value, Vec<crate::audit::Record>) {
    let who = app.deployed(asked.arm);
    let (probs, embedding) = who.row(&scored.answer, j);
    let a = answer(who, probs, s);
    app.metrics
        .prediction(asked.arm, a.best, a.probability, a.confident);
    let audited = app.audit.is_some();
    let mut rows = Vec::new();
    if audited {
        let row = Row {
            arm: asked.arm,
            answered: true,
            id: id.to_string(),
            answer: &a.json,
            embedding,
        };
        rows.push(record(app, asked, row, stats));
    }
    // The champion's view of the image: its own answer, or its shadow score.
    let champion_probs = match (&scored.shadow, asked.arm) {
        (_, Arm::Champion) => Some(probs),
        (Some(shadow), Arm::Canary) => {
            let (p, e) = app.champion.row(shadow, j);
            let shadow = answer(&app.champion, p, s);
            app.metrics.shadow(shadow.best == a.best);
            if audited {
                let row = Row {
                    arm: Arm::Champion,
                    answered: false,
                    id: id.to_string(),
                    answer: &shadow.json,
                    embedding: e,
                };
                rows.push(record(app, asked, row, stats));
            }
            Some(p)
        }
        (None, Arm::Canary) => None,
    };
    if let (Some(live), Some(p)) = (&app.live, champion_probs) {
        let best = graft_model::imagenet::top_k_probs(p, 1)
            .first()
            .map_or(0, |&(k, _)| k);
        live.observe(stats, best);
    }
    (a.json, rows)
}

/// Record the rows in the audit trail (when there is one); returns once they are committed.
async fn commit(app: &App, rows: Vec<crate::audit::Record>) {
    if let Some(log) = &app.audit {
        futures_util::future::join_all(rows.into_iter().map(|r| log.log(r))).await;
    }
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

/// The answering model's name (and its arm, when a canary runs) in a response.
fn name_model(app: &App, asked: &Asked, out: &mut Value) {
    out["model"] = json!(app.deployed(asked.arm).model.name);
    if app.canary.is_some() {
        out["arm"] = json!(asked.arm.as_str());
    }
}

pub(crate) async fn predict(State(app): Shared, req: Request) -> Result<Json<Value>, ApiError> {
    let asked = Asked::new(&app, &req, "/predict");
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
    let p = prepare(app, upload, asked.arm).await?;
    let scored = score(app, p.champion, p.canary, 1).await?;
    let (mut out, rows) = finish(app, asked, &scored, 0, &s, p.stats, &asked.request_id);
    name_model(app, asked, &mut out);
    out["threshold"] = json!(decimal(s.threshold));
    out["request_id"] = json!(asked.request_id);
    commit(app, rows).await;
    Ok(Json(out))
}

pub(crate) async fn predict_batch(
    State(app): Shared,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let asked = Asked::new(&app, &req, "/predict/batch");
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
        futures_util::future::join_all(images.into_iter().map(|up| prepare(app, up, asked.arm)))
            .await;
    let mut champion = Vec::new();
    let mut canary: Option<Vec<f32>> = None;
    let mut ok = Vec::new();
    let mut stats = Vec::new();
    let mut results: Vec<Value> = Vec::with_capacity(names.len());
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            Ok(p) => {
                champion.extend(p.champion);
                if let Some(x) = p.canary {
                    canary.get_or_insert_with(Vec::new).extend(x);
                }
                ok.push(i);
                stats.push(p.stats);
                results.push(Value::Null);
            }
            Err(e) => results.push(json!({"error": e.message, "code": e.code})),
        }
    }
    if !ok.is_empty() {
        let scored = score(app, champion, canary, ok.len()).await?;
        let mut rows = Vec::new();
        for (j, &i) in ok.iter().enumerate() {
            let id = format!("{}-{i}", asked.request_id);
            let (out, audit) = finish(app, asked, &scored, j, &s, stats[j], &id);
            results[i] = out;
            rows.extend(audit);
        }
        // One row per image (two on a canary request), committed before the answer goes out.
        commit(app, rows).await;
    }
    for (r, name) in results.iter_mut().zip(&names) {
        r["image"] = json!(name);
    }
    let mut out = json!({
        "request_id": asked.request_id,
        "threshold": decimal(s.threshold),
        "predictions": results,
    });
    name_model(app, asked, &mut out);
    Ok(Json(out))
}
