//! `POST /feedback`: predictions the exported web app made on a device while offline, sent
//! when it is online again, written to the audit trail's `field_predictions` table. A resend
//! (the same client and sequence number) is recorded once.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rusqlite::params;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::server::App;
use crate::ApiError;

/// Predictions per request, at most.
const MAX_PREDICTIONS: usize = 1000;
/// Longest class name or identifier accepted.
const MAX_TEXT: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Feedback {
    /// The device's random identifier (the page draws one and keeps it).
    client: String,
    predictions: Vec<FieldPrediction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldPrediction {
    /// The device's own count: with `client`, what makes a resend harmless.
    seq: i64,
    /// When the device made it (ms since the Unix epoch, the device's clock).
    made_ms: i64,
    /// SHA-256 of the ONNX file that made it (model.json's).
    sha256: String,
    predicted: String,
    probability: f32,
    confident: bool,
    top: Vec<(String, f32)>,
    latency_ms: f64,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_feedback", message)
}

impl Feedback {
    fn check(&self) -> Result<(), ApiError> {
        let long = |s: &str| s.is_empty() || s.len() > MAX_TEXT;
        if long(&self.client) {
            return Err(bad(format!("client must be 1 to {MAX_TEXT} characters")));
        }
        if self.predictions.len() > MAX_PREDICTIONS {
            return Err(bad(format!(
                "{} predictions in one request; send at most {MAX_PREDICTIONS}",
                self.predictions.len()
            )));
        }
        for (i, p) in self.predictions.iter().enumerate() {
            let finite = p.probability.is_finite() && p.latency_ms.is_finite();
            if long(&p.predicted) || long(&p.sha256) || p.top.len() > 100 || !finite {
                return Err(bad(format!(
                    "prediction {i} is malformed (class and sha256 of 1 to {MAX_TEXT} \
                     characters, at most 100 top entries, finite numbers)"
                )));
            }
            if !(0.0..=1.0).contains(&p.probability) {
                return Err(bad(format!(
                    "prediction {i}: probability {} is not between 0 and 1",
                    p.probability
                )));
            }
        }
        Ok(())
    }
}

pub(crate) async fn feedback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Json<Feedback>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(fb) = body.map_err(|e| {
        bad(format!(
            "{}; send JSON {{\"client\": ID, \"predictions\": [{{\"seq\", \"made_ms\", \
             \"sha256\", \"predicted\", \"probability\", \"confident\", \"top\", \
             \"latency_ms\"}}]}}",
            e.body_text()
        ))
    })?;
    fb.check()?;
    let Some(log) = app.audit.as_ref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_audit_trail",
            "this server keeps no audit trail (--no-audit); field predictions cannot be recorded",
        ));
    };
    let path = log.path().to_path_buf();
    let key_hash = crate::guard::presented_key(&headers).map(crate::audit::key_hash);
    let sent = fb.predictions.len();
    let recorded = tokio::task::spawn_blocking(move || record(&path, &fb, key_hash.as_deref()))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
    Ok(Json(json!({
        "recorded": recorded,
        "duplicates": sent - recorded,
        "model": app.champion.model.name,
        "sha256": app.champion.sha256,
    })))
}

fn internal(message: String) -> ApiError {
    tracing::error!("recording field predictions: {message}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "audit_failed",
        "the audit trail could not record them; send them again later",
    )
}

/// Insert the new rows in one transaction; returns how many were new. Rare and small (a device
/// catching up), so a connection of its own beside the trail's writer thread (WAL, busy wait).
fn record(
    path: &std::path::Path,
    fb: &Feedback,
    key_hash: Option<&str>,
) -> Result<usize, crate::audit::AuditError> {
    let mut conn = crate::audit::open(path)?;
    let sql = |source| crate::audit::AuditError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn.transaction().map_err(sql)?;
    let mut n = 0;
    {
        let mut stmt = tx
            .prepare(
                "INSERT OR IGNORE INTO field_predictions (received_ms, made_ms, client, seq,
                     request_id, sha256, key_hash, predicted, probability, confident, top,
                     latency_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(sql)?;
        let now = crate::audit::now_ms();
        let request = crate::audit::request_id();
        for p in &fb.predictions {
            let top = serde_json::to_string(&p.top).unwrap_or_else(|_| "[]".into());
            n += stmt
                .execute(params![
                    now,
                    p.made_ms,
                    fb.client,
                    p.seq,
                    request,
                    p.sha256,
                    key_hash,
                    p.predicted,
                    p.probability,
                    p.confident,
                    top,
                    p.latency_ms
                ])
                .map_err(sql)?;
        }
    }
    tx.commit().map_err(sql)?;
    Ok(n)
}
