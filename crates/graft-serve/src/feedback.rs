//! `POST /feedback`: predictions the exported web app made on a device while offline, sent
//! when it is online again, checked here and written by the audit trail's [`field`] module.
//! A resend (the same client and sequence number) is recorded once.
//!
//! [`field`]: crate::audit::field

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::field::FieldPrediction;
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
    let key_hash = crate::guard::presented_key_hash(&headers);
    let sent = fb.predictions.len();
    let recorded = tokio::task::spawn_blocking(move || {
        crate::audit::field::insert(&path, &fb.client, &fb.predictions, key_hash.as_deref())
    })
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
