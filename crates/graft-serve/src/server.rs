//! Assembling the service: model session, batcher, router with its layers, listener, and a
//! graceful shutdown that finishes requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use graft_data::preprocess::Preprocess;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::batcher::BatchConfig;
use crate::canary::{Canary, Challenger, Deployed};
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::{explain, page, predict, routes, ClassInfo, ServeError};

/// The classifier to serve and what describes it.
pub struct ServedModel {
    /// Display name (the run folder's name).
    pub name: String,
    /// The run folder, as given.
    pub run: String,
    /// The exported classifier (`input` → `probabilities`).
    pub onnx: Vec<u8>,
    /// Where `onnx` came from, for `/version` ("model.onnx" or "built at start-up").
    pub onnx_origin: String,
    pub classes: Vec<String>,
    pub encoder: String,
    pub preprocess: Preprocess,
    pub class_info: ClassInfo,
    /// The registered version served, when it came from a model registry.
    pub registered: Option<Registered>,
    /// The graph `POST /explain` runs; without it the route answers 501.
    pub explainer: Option<Explainable>,
    /// When the run's model was written (ms since the Unix epoch): the exported web app
    /// prefers the server when its model differs and is newer.
    pub trained_ms: Option<i64>,
}

/// The float classifier with every class's Grad-CAM map as an output ("cams",
/// `[N, classes, h, w]`; graft-export's `grad_cam_to_onnx`).
pub struct Explainable {
    pub onnx: Vec<u8>,
    /// The maps are an attention head's attention (the same for every class).
    pub attention: bool,
}

/// A registry's name for the served model (`graft serve --model NAME@ALIAS`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registered {
    pub name: String,
    pub version: String,
    /// The alias it was asked by, if any.
    pub alias: Option<String>,
    /// Which registry: the tracking store's path, or the MLflow server's URI.
    pub registry: String,
}

/// Service settings; `Default` is what `graft serve` uses without flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Top-1 probability below which a prediction is flagged as not confident.
    pub threshold: f32,
    /// Classes returned per image (a request may ask for fewer or more with `?top=`).
    pub top: usize,
    /// Accepted API keys; empty = no authentication.
    pub api_keys: Vec<String>,
    /// Requests per minute per key (per client address without keys); `None` = unlimited.
    pub rate_limit: Option<u32>,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Largest decoded image, in pixels (checked from the header before decoding).
    pub max_pixels: u64,
    /// Images per `/predict/batch` request, at most.
    pub max_batch_images: usize,
    /// Whole-request time limit.
    pub timeout: Duration,
    /// Origins allowed to call the API from a browser (`*` for any); empty = same origin only.
    pub cors_origins: Vec<String>,
    pub batch: BatchConfig,
    /// Model copies running batches side by side.
    pub workers: usize,
    /// Cores for the model, shared out between the workers (all cores when `None`).
    pub threads: Option<usize>,
    /// The audit trail of every prediction; `None` records nothing.
    pub audit: Option<crate::audit::AuditOptions>,
    /// The training data's profile, for the drift gauges of `/metrics`; `None`: no gauges.
    pub drift: Option<crate::live_drift::DriftReference>,
    /// How `POST /explain` measures and judges a map.
    pub explain: crate::explain::ExplainSettings,
    /// A folder written by `graft export --format web`, served at `/app/`.
    pub web: Option<std::path::PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            threshold: 0.70,
            top: 3,
            api_keys: Vec::new(),
            rate_limit: None,
            max_body: 10 << 20,
            max_pixels: 40_000_000,
            max_batch_images: 32,
            timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            batch: BatchConfig::default(),
            workers: 1,
            threads: None,
            audit: None,
            drift: None,
            explain: crate::explain::ExplainSettings::default(),
            web: None,
        }
    }
}

/// What every handler sees.
pub(crate) struct App {
    /// The model served; it scores every request.
    pub champion: Deployed,
    /// The challenger answering its share of the clients, when `--canary` is given.
    pub canary: Option<Challenger>,
    pub opts: ServeOptions,
    pub metrics: Metrics,
    pub guard: Guard,
    pub started: Instant,
    pub audit: Option<crate::audit::AuditLog>,
    /// The drift gauges' window, when the run has a reference profile.
    pub live: Option<crate::live_drift::LiveDrift>,
    /// `POST /explain`'s model, when the champion came with one.
    pub explainer: Option<Arc<crate::explain::Explainer>>,
}

/// Serve until `shutdown` completes, then finish the requests in flight and return.
/// `on_ready` gets the bound address (useful with port 0).
pub async fn serve(
    mut model: ServedModel,
    canary: Option<Canary>,
    opts: ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let workers = opts.workers.max(1);
    let cores = opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let threads = (cores / workers).max(1);
    if let Some(c) = &canary {
        crate::canary::check_classes(&model, &c.model).map_err(ServeError::Canary)?;
    }
    // Its own session on all the cores: an explanation is ~40 model runs, one at a time.
    let explainer = model
        .explainer
        .take()
        .map(|e| {
            crate::explain::Explainer::new(
                &e.onnx,
                model.preprocess,
                model.classes.len(),
                e.attention,
                cores,
                opts.explain,
            )
            .map(Arc::new)
        })
        .transpose()?;
    let champion = Deployed::start(model, workers, threads, opts.batch)?;
    // One session for the challenger: it answers a share of the traffic only.
    let canary = canary
        .map(|c| {
            Deployed::start(c.model, 1, threads, opts.batch).map(|deployed| Challenger {
                deployed,
                share: c.share.min(100),
            })
        })
        .transpose()?;
    let audit = opts
        .audit
        .as_ref()
        .map(crate::audit::AuditLog::open)
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|cause| ServeError::Bind {
            addr: opts.addr,
            cause,
        })?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App {
        metrics: Metrics::new(champion.model.classes.len()),
        guard: Guard::new(opts.api_keys.clone(), opts.rate_limit),
        champion,
        canary,
        started: Instant::now(),
        audit,
        live: opts.drift.clone().map(crate::live_drift::LiveDrift::new),
        explainer,
        opts,
    });
    let router = router(app);
    on_ready(addr);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

fn router(app: Arc<App>) -> Router {
    let predict = Router::new()
        .route("/predict", post(predict::predict))
        .route("/predict/batch", post(predict::predict_batch))
        .route("/explain", post(explain::explain))
        .route("/feedback", post(crate::feedback::feedback))
        .route_layer(from_fn_with_state(app.clone(), routes::guard));
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/health", get(routes::health))
        .route("/version", get(routes::version))
        .route("/metrics", get(routes::metrics))
        .merge(predict)
        .merge(web_app(app.opts.web.as_deref()))
        .fallback(routes::not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            app.opts.timeout,
        ))
        .layer(cors(&app.opts.cors_origins))
        // Outermost, so refusals by the layers inside are counted too.
        .layer(from_fn_with_state(app.clone(), routes::track))
        .with_state(app)
}

/// The exported web app's folder at `/app/`: files with their MIME types (`.wasm` as
/// application/wasm, which streaming compilation needs), the page's own security policy, and
/// `no-cache` so a browser always revalidates (the app's service worker is what works offline).
fn web_app<S: Clone + Send + Sync + 'static>(dir: Option<&std::path::Path>) -> Router<S> {
    use tower_http::services::ServeDir;
    use tower_http::set_header::SetResponseHeaderLayer;
    let Some(dir) = dir else {
        return Router::new();
    };
    Router::new()
        .nest_service("/app/", ServeDir::new(dir))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::page::WEB_APP_CSP),
        ))
        .route(
            "/app",
            get(|| async { axum::response::Redirect::permanent("/app/") }),
        )
}

fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ]);
    if origins.iter().any(|o| o == "*") {
        base.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        base.allow_origin(list)
    }
}
