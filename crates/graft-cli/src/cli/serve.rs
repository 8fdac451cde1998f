//! Arguments of `graft serve` and `graft bench serve`.

use std::path::PathBuf;

use clap::Args;

use super::Precision;

pub const SERVE_HELP: &str = "\
Endpoints:
  GET  /                 web page: upload, drag-and-drop or take a photo, see the top 3
  POST /predict          one image: multipart field \"image\" or the raw body (Content-Type image/*)
                         ?top=K&threshold=P override the defaults per request
  POST /predict/batch    several images as multipart file fields
  GET  /health           200 while the model runs
  GET  /version          model, run, registered name/version/alias, sha256 of the ONNX file,
                         classes
  GET  /metrics          Prometheus: requests by status, latency histogram, predictions by class,
                         low-confidence rate, batch sizes
  POST /feedback         predictions made on a device by the exported web app (JSON), written to
                         the audit trail's field_predictions table; a resend is recorded once
  GET  /app/             with --web DIR: a folder from `graft export --format web` (the model
                         running in the browser, offline once opened)

The model is RUN/model.onnx (from `graft export`); without it the same graph is built at start-up.
Per-class details (crop, disease, severity, recommended action, …) come from RUN/classes.toml or
--classes-info, one table per class:
  [Tomato___Late_blight]
  crop = \"Tomato\"
  action = \"Remove affected leaves; apply a copper fungicide.\"

Images are decoded in memory and never written to disk. Each prediction is recorded in the
audit trail (RUN/audit.db, SQLite; --audit FILE, --no-audit, --audit-keep 30d) before it is
answered: time, request id, model and its sha256, a hash of the API key, the answer and its
top-k, latency, and the image's size, channel means and spreads, brightness and sharpness —
never the image, its bytes or its file name. `graft audit export` reads it back.

Canary: --canary RUN2 --canary-share 10 lets RUN2 answer 10 % of the clients, picked by a hash
of their API key (their address without one), so each client keeps one model. The champion
scores those requests too, in shadow: the trail holds both answers (its `arm` and `answered`
columns say whose and which went back), /version and /metrics name both models, and
`graft monitor --run RUN --compare` sets their confidence, class mix and agreement side by side.

Examples:
  graft serve --run runs/leaves-mobilenet-v2
  graft serve --model leaves@champion
  graft serve --run runs/leaves --canary runs/leaves-vit --canary-share 10
  MLFLOW_TRACKING_URI=http://mlflow:5000 graft serve --model models:/leaves@champion
  graft serve --run runs/leaves-mobilenet-v2 --host 0.0.0.0 --port 8000 --api-key \"$KEY\" --rate-limit 120
  curl -F image=@leaf.jpg http://127.0.0.1:8080/predict
  curl --data-binary @leaf.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8080/predict";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run folder written by `graft train`.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    pub run: Option<PathBuf>,
    /// A registered model instead of a run folder: NAME@ALIAS (leaves@champion), NAME/VERSION
    /// or NAME (its latest version) from the registry in RUNS/graft.db; models:/NAME@ALIAS
    /// fetches it from the MLflow server (--mlflow or MLFLOW_TRACKING_URI).
    #[arg(long, value_name = "NAME@ALIAS")]
    pub model: Option<String>,
    /// The runs folder whose registry --model reads.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
    /// Address to listen on (0.0.0.0 to accept other machines).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 = any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Below this top-1 probability a prediction is marked not confident.
    #[arg(long, default_value_t = 0.70, value_name = "P")]
    pub threshold: f32,
    /// Classes returned per image.
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub top: usize,
    /// Require this API key (repeat for several; comma-separated in GRAFT_API_KEYS).
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "GRAFT_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Requests per minute per API key (per client address without keys); 0 = no limit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rate_limit: u32,
    /// Largest request body, in MB.
    #[arg(long, default_value_t = 10, value_name = "MB")]
    pub max_body_mb: usize,
    /// Largest image, in megapixels (checked before decoding).
    #[arg(long, default_value_t = 40, value_name = "MP")]
    pub max_megapixels: u64,
    /// Images per /predict/batch request, at most.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_batch_images: usize,
    /// Whole-request time limit, in seconds.
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub timeout: u64,
    /// Origin allowed to call the API from another site's page (repeat; "*" = any).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Per-class information (default: RUN/classes.toml when present).
    #[arg(long, value_name = "FILE")]
    pub classes_info: Option<PathBuf>,
    /// Most images the model runs at once: requests that queue up while the model is busy
    /// share the next run.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub batch: usize,
    /// How long the model waits for more requests before running a batch, in milliseconds.
    /// 0 (the default) runs whatever is queued at once: on a CPU the queue fills by itself
    /// while a batch runs, and waiting only adds latency (see `graft bench serve`).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub batch_wait_ms: u64,
    /// Model copies running side by side, each with cores ÷ N ONNX Runtime threads.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Which exported model to serve: fp32 (RUN/model.onnx, built at start-up when missing)
    /// or int8 (RUN/model.int8.onnx from `graft export --precision int8`).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// The audit trail: one SQLite row per prediction (time, request id, model, hashed API
    /// key, answer, top-k, latency, image statistics; never the image). Default: RUN/audit.db.
    #[arg(long, value_name = "FILE", conflicts_with = "no_audit")]
    pub audit: Option<PathBuf>,
    /// Keep no audit trail.
    #[arg(long)]
    pub no_audit: bool,
    /// Also serve a folder written by `graft export --format web` at /app/ (the classifier
    /// running in the browser, offline once opened).
    #[arg(long, value_name = "DIR")]
    pub web: Option<PathBuf>,
    /// Delete audit rows older than this (30d, 12h, 90m); default: keep all.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub audit_keep: Option<std::time::Duration>,
    /// A challenger run that answers --canary-share percent of the clients (same classes as
    /// the model served). The champion scores those requests too, in shadow; both answers go
    /// to the audit trail with their model, for `graft monitor --compare`.
    #[arg(long, value_name = "DIR")]
    pub canary: Option<PathBuf>,
    /// Percent of the clients the canary answers, 1–100. Sticky: a client (its API key, its
    /// address without one) always gets the same model.
    #[arg(long, default_value_t = 10, value_name = "PCT", requires = "canary",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub canary_share: u8,
}

/// `30d`, `12h`, `90m`, `45s` as a duration.
pub fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not an age: write 30d, 12h, 90m or 45s"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("{s:?}: the unit is d, h, m or s")),
    };
    Ok(std::time::Duration::from_secs(n * secs))
}

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Run folder written by `graft train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Image to send (default: the first image of the run's test split).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Concurrent clients, one level after another.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,32",
        value_name = "N,N,…"
    )]
    pub concurrency: Vec<usize>,
    /// Requests per level (after a short warm-up).
    #[arg(long, default_value_t = 400, value_name = "N")]
    pub requests: usize,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Extra `graft serve` flags for the server under test (e.g. "--workers 2").
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    pub serve_args: Option<String>,
    /// Model to load, in the server and in the in-process reference (see `graft serve`).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Run every level again against a server with --no-audit and report the throughput
    /// ratio (the audit trail's cost), in the same run.
    #[arg(long)]
    pub compare_audit: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Write the audit trail's predictions as JSON (default) or CSV, oldest first.
    #[command(
        after_help = "Examples:\n  graft audit export --run runs/leaves --since 24h > today.json\n  \
graft audit export --audit /var/lib/graft/audit.db --csv > all.csv"
    )]
    Export(AuditExportArgs),
}

#[derive(Debug, Args)]
pub struct AuditExportArgs {
    /// The served run, whose audit.db to read.
    #[arg(long, value_name = "DIR", required_unless_present = "audit")]
    pub run: Option<PathBuf>,
    /// The audit trail file (what `graft serve --audit` wrote).
    #[arg(long, value_name = "FILE", conflicts_with = "run")]
    pub audit: Option<PathBuf>,
    /// Only predictions of the last AGE (24h, 7d).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub since: Option<std::time::Duration>,
    /// The predictions made on devices by the exported web app (sent by POST /feedback)
    /// instead of the server's own.
    #[arg(long)]
    pub field: bool,
    /// CSV instead of JSON.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// JSON (the default).
    #[arg(long)]
    pub json: bool,
}

pub const MONITOR_HELP: &str = "\
Checks, each against the run's reference profile (RUN/reference.json, written by graft export
from the training images; built now when missing):
  input statistics  width, height, mean_r/g/b, std_r/g/b, brightness, blur (sharpness): the
                    population stability index (PSI, 10 bins at the training quantiles) and
                    the two-sample Kolmogorov-Smirnov test; alert when PSI > 0.25 and p < 0.001
  embedding_mmd     what the encoder saw: its pooled features, projected to 32 numbers per
                    image, against the training rows'; maximum mean discrepancy (Gaussian
                    kernel, median bandwidth) with a 300-permutation p-value; alert p < 0.01
                    (the last 400 requests; absent for fine-tuned runs)
  class_mix         predicted classes against the training prior, chi-squared; alert p < 0.05
  mean_confidence   against validation's; alert on a drop of more than 10 %
  low_confidence    share of answers below the serving threshold; alert above 30 %
  latency_p95_ms    reported
  error_rate        prediction requests the server failed (5xx) among all asked; alert above
                    5 % (bad input, 4xx, is reported beside it, not counted)
Fewer than 30 requests in the window: reported, never alerted on. With a canary (graft serve
--canary), these checks judge the champion, which scores every request.

--compare instead sets the champion and its canary side by side on the requests both scored
(the canary's, which the champion scored in shadow): each model's mean confidence,
low-confidence share and class mix, and the share of requests where both gave the same class.
  canary_class_mix    chi-squared test of homogeneity of the two class mixes; alert p < 0.05
  canary_confidence   the canary's mean confidence; alert when 10 % below the champion's
  agreement           reported
Report: RUN/compare.json (or --out FILE); exit status 1 when a check alerts.

Writes the report to RUN/monitor.json (or --out FILE) and a page beside it, monitor.html (or
FILE with .html): the checks, and the window's traffic over time (requests, confidence,
brightness, latency, errors).

Exit status 0 when healthy, 1 when a check alerts (for cron); --on-alert CMD then runs CMD with
the report's path as its argument (e.g. a retraining trigger).

Examples:
  graft monitor --run runs/leaves --window 24h
  graft monitor --run runs/leaves --json
  graft monitor --run runs/leaves --on-alert scripts/retrain.sh
  graft monitor --run runs/leaves --compare --window 7d";

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The served run (its reference profile, and RUN/audit.db unless --audit).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The audit trail to judge (default: RUN/audit.db).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Only the requests of the last AGE (24h, 7d); default: all.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub window: Option<std::time::Duration>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the report goes (default: RUN/monitor.json).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Run this command with the report's path when a check alerts.
    #[arg(long, value_name = "CMD")]
    pub on_alert: Option<String>,
    /// Compare the champion with its canary (`graft serve --canary`) instead: on the requests
    /// both scored, each model's confidence, low-confidence share and class mix, and their
    /// agreement. Report: RUN/compare.json (or --out).
    #[arg(long)]
    pub compare: bool,
}
