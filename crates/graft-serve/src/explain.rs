//! `POST /explain`: one photo's prediction with where the model looked — the Grad-CAM map at
//! the encoder's last feature map, its quality metrics (the perturbed photos scored by the same
//! model) and the map over the model's crop as a PNG. It runs the float graph with every
//! class's map inside (graft-export's `grad_cam_to_onnx`), so the service needs ONNX Runtime
//! alone; the arithmetic after the model is graft-explain's, as in `graft explain`.

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use graft_data::preprocess::Preprocess;
use graft_explain::quality::{self, Perturb, Quality, Thresholds};
use graft_explain::{cam, overlay};
use graft_model::ort_backend::Session;
use graft_model::ort_backend::{run_images, run_images_outputs, session_from_onnx, OrtOptions};
use image::RgbImage;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::predict::Settings;
use crate::server::App;
use crate::upload::{decode_error, uploads, CONTENT_TYPES};
use crate::{ApiError, ServeError};

/// Perturbed images per ONNX Runtime call.
const CHUNK: usize = 32;

/// How `/explain` measures and judges a map: the run's `[explain]` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExplainSettings {
    /// Share of pixels that make the hot region; deletion/insertion curve steps.
    pub perturb_share: f32,
    pub steps: usize,
    pub thresholds: Thresholds,
}

impl Default for ExplainSettings {
    /// graft.toml's `[explain]` defaults.
    fn default() -> Self {
        ExplainSettings {
            perturb_share: 0.2,
            steps: 20,
            thresholds: Thresholds {
                top_share: 0.2,
                min_confidence_drop: 0.05,
                min_concentration: 0.3,
                min_coverage: 0.01,
                max_coverage: 0.6,
            },
        }
    }
}

/// The Grad-CAM graph on its own session: explanations are occasional and heavy (the
/// perturbations are ~40 model runs), so they queue on one lock instead of joining the
/// prediction batches.
pub(crate) struct Explainer {
    session: Mutex<Session>,
    pre: Preprocess,
    classes: usize,
    /// Whether the maps are an attention head's (the same for every class).
    attention: bool,
    settings: ExplainSettings,
}

impl Explainer {
    pub fn new(
        onnx: &[u8],
        pre: Preprocess,
        classes: usize,
        attention: bool,
        threads: usize,
        settings: ExplainSettings,
    ) -> Result<Explainer, ServeError> {
        let opts = OrtOptions {
            intra_threads: Some(threads),
            spinning: Some(false),
        };
        let session =
            session_from_onnx(onnx, opts).map_err(|e| ServeError::Runtime(e.to_string()))?;
        Ok(Explainer {
            session: Mutex::new(session),
            pre,
            classes,
            attention,
            settings,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    top: Option<usize>,
    threshold: Option<f32>,
    /// Explain this class instead of the predicted one.
    class: Option<String>,
}

/// One explained photo, before it becomes JSON.
struct Explained {
    probs: Vec<f32>,
    class: usize,
    /// `side × side`, scaled to `[0, 1]`.
    grid: Vec<f32>,
    side: usize,
    quality: Quality,
    peak: (f32, f32),
    overlay_png: Vec<u8>,
    millis: f64,
}

pub(crate) async fn explain(
    State(app): State<Arc<App>>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let Some(explainer) = app.explainer.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "explain_unavailable",
            "this server has no explanation graph (graft serve --run RUN builds one; a served \
             ONNX file alone cannot be explained)",
        ));
    };
    let uri = req.uri().clone();
    let mut images = uploads(req, 1, app.opts.max_body).await.map_err(|e| {
        if e.code == "too_many_images" {
            ApiError::bad_request("too_many_images", "/explain takes one image")
        } else {
            e
        }
    })?;
    let Query(p) = Query::<Params>::try_from_uri(&uri).map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!(
                "{}; the query may set top=K, threshold=P and class=NAME",
                e.body_text()
            ),
        )
    })?;
    let settings = crate::predict::checked(&app, p.top, p.threshold)?;
    let classes = &app.champion.model.classes;
    let wanted = match &p.class {
        None => None,
        Some(name) => Some(classes.iter().position(|c| c == name).ok_or_else(|| {
            ApiError::bad_request(
                "unknown_class",
                format!(
                    "class={name} is not one of the model's classes: {}",
                    classes.join(", ")
                ),
            )
        })?),
    };
    let Some(upload) = images.pop() else {
        return Err(ApiError::bad_request("no_image", CONTENT_TYPES));
    };
    let max_pixels = app.opts.max_pixels;
    let ex = explainer.clone();
    let done = tokio::task::spawn_blocking(move || {
        let img = graft_data::decode::decode_bytes_limited(&upload.bytes, max_pixels)
            .map_err(|e| decode_error(&upload.name, &e))?;
        explain_image(&ex, &img, wanted).map_err(|why| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_failed",
                format!("the model failed: {why}"),
            )
        })
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "inference_failed",
            "the explanation stopped unexpectedly",
        )
    })??;
    Ok(Json(answer(&app, &explainer, &done, &settings)))
}

/// Run the graph, pick the class, measure the map.
fn explain_image(
    ex: &Explainer,
    img: &RgbImage,
    wanted: Option<usize>,
) -> Result<Explained, String> {
    let started = Instant::now();
    let pre = ex.pre;
    let size = pre.size as usize;
    let input = pre.apply(img);
    let crop = pre.resize_crop(img);
    let mut session = ex
        .session
        .lock()
        .map_err(|_| "a previous explanation panicked")?;
    let outs = run_images_outputs(&mut session, &input, 1, size, &["probabilities", "cams"])
        .map_err(|e| e.to_string())?;
    let (probs, cams) = (&outs[0], &outs[1]);
    let k = ex.classes;
    if probs.len() != k || cams.is_empty() || cams.len() % k != 0 {
        return Err(format!(
            "the graph gave {} probabilities and {} map values for {k} classes",
            probs.len(),
            cams.len()
        ));
    }
    let locations = cams.len() / k;
    let side = (locations as f64).sqrt().round() as usize;
    if side * side != locations {
        return Err(format!("a map of {locations} values is not square"));
    }
    let class = wanted.unwrap_or_else(|| {
        graft_model::imagenet::top_k_probs(probs, 1)
            .first()
            .map_or(0, |&(c, _)| c)
    });
    let map = &cams[class * locations..(class + 1) * locations];
    let up = cam::normalised(&cam::upsample(map, side, size));
    let perturb = Perturb {
        top_share: ex.settings.perturb_share,
        steps: ex.settings.steps,
        fill: pre.black(),
    };
    let perturbed = quality::perturbations(&input, &up, perturb);
    let per = pre.len();
    let mut class_probs = Vec::with_capacity(perturb.count());
    for chunk in perturbed.chunks(CHUNK * per) {
        let p = run_images(
            &mut session,
            chunk,
            chunk.len() / per,
            size,
            "probabilities",
        )
        .map_err(|e| e.to_string())?;
        class_probs.extend(p.chunks_exact(k).map(|row| row[class]));
    }
    drop(session);
    let quality = quality::quality(probs[class], &class_probs, &up, perturb);
    // The hottest cell's centre, on the photo as sent.
    let (cx, cy) = quality::subcell_peak(map, side);
    let cell = size as f32 / side as f32;
    let peak = pre.crop_to_original(cx * cell, cy * cell, img.dimensions());
    let mut png = Vec::new();
    overlay::overlay(&crop, &up)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("encoding the overlay: {e}"))?;
    Ok(Explained {
        probs: probs.clone(),
        class,
        grid: cam::normalised(map),
        side,
        quality,
        peak,
        overlay_png: png,
        millis: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Three decimals: enough for a map or a metric, and a short answer.
fn short(x: f32) -> f64 {
    (f64::from(x) * 1000.0).round() / 1000.0
}

/// `/predict`'s answer for the photo, with the explanation added.
fn answer(app: &App, ex: &Explainer, e: &Explained, s: &Settings) -> Value {
    let model = &app.champion.model;
    let mut out = crate::predict::answer(&app.champion, &e.probs, s).json;
    let reasons = quality::verdict(&e.quality, &ex.settings.thresholds);
    let q = &e.quality;
    let explained = json!({
        "model": model.name,
        "threshold": crate::predict::decimal(s.threshold),
        "explained": model.classes[e.class],
        "explained_probability": e.probs[e.class],
        "method": if ex.attention { "attention" } else { "grad-cam" },
        "layer": format!("last feature map ({0}×{0})", e.side),
        "metrics": {
            "confidence_drop": short(q.confidence_drop),
            "confidence_increase": short(q.confidence_increase),
            "concentration": short(q.concentration),
            "coverage": short(q.coverage),
            "deletion_auc": short(q.deletion_auc),
            "insertion_auc": short(q.insertion_auc),
        },
        "suspicious": !reasons.is_empty(),
        "reasons": reasons,
        "peak": {"x": e.peak.0.round(), "y": e.peak.1.round()},
        "map": {
            "side": e.side,
            "values": e.grid.iter().map(|v| short(*v)).collect::<Vec<_>>(),
        },
        "overlay_png": base64::engine::general_purpose::STANDARD.encode(&e.overlay_png),
        "explain_ms": (e.millis * 10.0).round() / 10.0,
    });
    if let (Some(out), Value::Object(more)) = (out.as_object_mut(), explained) {
        out.extend(more);
    }
    out
}
