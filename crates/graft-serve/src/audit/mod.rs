//! The audit trail: one SQLite row per prediction — when, which request, which model, the
//! hashed API key, the answer and its top-k, the latency and the image's statistics — written
//! by one thread in group commits. A request is answered only once its row is committed, so
//! a `kill -9` of the server never loses an answered prediction. Never the image, its bytes or
//! a file name the client sent.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use graft_data::image_stats::ImageStats;
use rusqlite::{params, Connection};
use serde::Serialize;
use tokio::sync::oneshot;

pub mod field;
mod read;

pub(crate) use read::rows_since;
pub use read::{read, read_failures};

/// Schema migrations, oldest first (SQLite's `user_version` says which ran). Append only.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE predictions (
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        version TEXT,
        sha256 TEXT NOT NULL,
        key_hash TEXT,
        predicted TEXT NOT NULL,
        probability REAL NOT NULL,
        confident INTEGER NOT NULL,
        top TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        mean_r REAL NOT NULL, mean_g REAL NOT NULL, mean_b REAL NOT NULL,
        std_r REAL NOT NULL, std_g REAL NOT NULL, std_b REAL NOT NULL,
        brightness REAL NOT NULL,
        blur REAL NOT NULL
    );
    CREATE INDEX predictions_by_time ON predictions(time_ms);
",
    "
    ALTER TABLE predictions ADD COLUMN embedding BLOB;
    CREATE TABLE failures (
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        status INTEGER NOT NULL,
        code TEXT NOT NULL
    );
    CREATE INDEX failures_by_time ON failures(time_ms);
",
    // Canary serving: which arm scored the row, and whether its answer went back.
    "
    ALTER TABLE predictions ADD COLUMN arm TEXT NOT NULL DEFAULT 'champion';
    ALTER TABLE predictions ADD COLUMN answered INTEGER NOT NULL DEFAULT 1;
",
    // Predictions made on a device by the exported web app, sent by `POST /feedback` when it
    // is online again; (client, seq) makes a resend harmless.
    "
    CREATE TABLE field_predictions (
        id INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        made_ms INTEGER NOT NULL,
        client TEXT NOT NULL,
        seq INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        key_hash TEXT,
        predicted TEXT NOT NULL,
        probability REAL NOT NULL,
        confident INTEGER NOT NULL,
        top TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        UNIQUE (client, seq)
    );
    CREATE INDEX field_predictions_by_time ON field_predictions(made_ms);
",
];

/// The two models of canary serving, as the trail names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The model served (`--run` / `--model`); it scores every request.
    Champion,
    /// The challenger (`--canary`), answering its share of the clients.
    Canary,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Champion => "champion",
            Arm::Canary => "canary",
        }
    }

    fn parse(s: &str) -> Arm {
        if s == "canary" {
            Arm::Canary
        } else {
            Arm::Champion
        }
    }
}

/// Where the trail goes and how long it is kept.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub path: PathBuf,
    /// Rows older than this are deleted (at start-up and every hour); `None` keeps all.
    pub keep: Option<Duration>,
}

/// One prediction, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub time_ms: i64,
    pub request_id: String,
    /// `/predict` or `/predict/batch`.
    pub endpoint: String,
    pub model: String,
    /// The registered version, when served from a registry.
    pub version: Option<String>,
    /// SHA-256 of the ONNX file that answered.
    pub sha256: String,
    /// First 16 hex digits of the API key's SHA-256 (never the key).
    pub key_hash: Option<String>,
    pub predicted: String,
    pub probability: f32,
    pub confident: bool,
    /// The top classes with their probabilities.
    pub top: Vec<(String, f32)>,
    /// From the request's arrival to its answer being ready.
    pub latency_ms: f64,
    pub stats: ImageStats,
    /// The embedding summary (graft-data's `embedding`: 32 numbers from the model's pooled
    /// features, not invertible to the image); none when the model gave no features.
    pub embedding: Option<Vec<f32>>,
    /// Which model scored it.
    pub arm: Arm,
    /// Whether this answer went back to the client: the champion's row of a canary request is
    /// a shadow score (`false`), kept to compare the two models on the same images.
    pub answered: bool,
}

/// A prediction request that got an error instead of an answer: its status and the API's
/// error code, never the message (which may quote a file name the client sent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub time_ms: i64,
    pub request_id: String,
    pub endpoint: String,
    pub status: u16,
    pub code: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("audit trail {path}: {message}")]
    Other { path: PathBuf, message: String },
}

pub(crate) fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |source| AuditError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn other(path: &Path, message: impl Into<String>) -> AuditError {
    AuditError::Other {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// One row for the writer.
enum Row {
    Prediction(Record),
    Failure(Failure),
}

type Job = (Row, oneshot::Sender<bool>);

/// The writer thread's end of the trail.
pub struct AuditLog {
    tx: mpsc::SyncSender<Job>,
    path: PathBuf,
}

/// Requests that may wait for the writer before new ones are refused a row (they are answered
/// all the same, and the loss is logged).
const QUEUE: usize = 4096;
/// Rows per transaction at most.
const GROUP: usize = 512;

impl AuditLog {
    /// Open (or create) the trail and start its writer.
    pub fn open(opts: &AuditOptions) -> Result<AuditLog, AuditError> {
        let conn = open(&opts.path)?;
        if let Some(keep) = opts.keep {
            prune(&conn, keep).map_err(sql(&opts.path))?;
        }
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let path = opts.path.clone();
        let keep = opts.keep;
        std::thread::Builder::new()
            .name("graft-audit".into())
            .spawn(move || writer(conn, rx, keep, &path))
            .map_err(|e| other(&opts.path, format!("starting its writer: {e}")))?;
        Ok(AuditLog {
            tx,
            path: opts.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record one prediction; resolves once the row is committed (`false` if it could not be).
    pub async fn log(&self, record: Record) -> bool {
        self.send(Row::Prediction(record)).await
    }

    /// Record one failed prediction request (for the error rate).
    pub async fn log_failure(&self, failure: Failure) -> bool {
        self.send(Row::Failure(failure)).await
    }

    async fn send(&self, row: Row) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.try_send((row, ack)).is_err() {
            tracing::error!(
                "audit trail {}: writer queue full or stopped; a prediction is not recorded",
                self.path.display()
            );
            return false;
        }
        done.await.unwrap_or(false)
    }
}

/// Open a trail, WAL and migrated.
pub fn open(path: &Path) -> Result<Connection, AuditError> {
    let err = sql(path);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    let conn = graft_sqlite::open_wal(path).map_err(&err)?;
    graft_sqlite::migrate(&conn, MIGRATIONS).map_err(|e| match e {
        graft_sqlite::SchemaError::Sqlite(e) => err(e),
        newer @ graft_sqlite::SchemaError::Newer { .. } => other(
            path,
            format!("{newer}; upgrade graft or give another --audit file"),
        ),
    })?;
    Ok(conn)
}

/// Milliseconds since the Unix epoch, as rows record time.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn prune(conn: &Connection, keep: Duration) -> rusqlite::Result<usize> {
    let cutoff = now_ms() - keep.as_millis() as i64;
    let n = conn.execute(
        "DELETE FROM predictions WHERE time_ms < ?1",
        params![cutoff],
    )?;
    Ok(n + conn.execute("DELETE FROM failures WHERE time_ms < ?1", params![cutoff])?)
}

/// Group commit: whatever is queued when the writer is free goes in one transaction.
fn writer(mut conn: Connection, rx: mpsc::Receiver<Job>, keep: Option<Duration>, path: &Path) {
    let mut last_prune = std::time::Instant::now();
    let mut failed_before = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let ok = match insert(&mut conn, &batch) {
            Ok(()) => true,
            Err(e) => {
                if !failed_before {
                    tracing::error!(
                        "audit trail {}: {e}; predictions go unrecorded",
                        path.display()
                    );
                }
                failed_before = true;
                false
            }
        };
        for (_, ack) in batch {
            let _ = ack.send(ok);
        }
        if let Some(keep) = keep.filter(|_| last_prune.elapsed() > Duration::from_secs(3600)) {
            let _ = prune(&conn, keep);
            last_prune = std::time::Instant::now();
        }
    }
}

fn insert(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO predictions (time_ms, request_id, endpoint, model, version, sha256,
                 key_hash, predicted, probability, confident, top, latency_ms, width, height,
                 mean_r, mean_g, mean_b, std_r, std_g, std_b, brightness, blur, embedding, arm,
                 answered)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
        )?;
        let mut failed = tx.prepare_cached(
            "INSERT INTO failures (time_ms, request_id, endpoint, status, code)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (row, _) in batch {
            let r = match row {
                Row::Prediction(r) => r,
                Row::Failure(f) => {
                    failed.execute(params![
                        f.time_ms,
                        f.request_id,
                        f.endpoint,
                        f.status,
                        f.code
                    ])?;
                    continue;
                }
            };
            let s = &r.stats;
            let top = serde_json::to_string(&r.top).unwrap_or_else(|_| "[]".into());
            stmt.execute(params![
                r.time_ms,
                r.request_id,
                r.endpoint,
                r.model,
                r.version,
                r.sha256,
                r.key_hash,
                r.predicted,
                r.probability,
                r.confident,
                top,
                r.latency_ms,
                s.width,
                s.height,
                s.mean[0],
                s.mean[1],
                s.mean[2],
                s.std[0],
                s.std[1],
                s.std[2],
                s.brightness,
                s.blur,
                r.embedding.as_deref().map(f32s_to_bytes),
                r.arm.as_str(),
                r.answered,
            ])?;
        }
    }
    tx.commit()
}

/// An embedding as stored: little-endian f32s.
fn f32s_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn bytes_to_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A short, unique request id (time, process and a counter, hashed).
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}-{}-{n}", std::process::id(), now_ms());
    graft_model::weights::sha256_bytes(seed.as_bytes())[..16].to_string()
}

/// What the trail keeps of an API key: the start of its SHA-256.
pub fn key_hash(key: &str) -> String {
    graft_model::weights::sha256_bytes(key.as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        Record {
            time_ms: now_ms() - i as i64,
            request_id: request_id(),
            endpoint: "/predict".into(),
            model: "m".into(),
            version: None,
            sha256: "ab".into(),
            key_hash: Some(key_hash("secret")),
            predicted: "red".into(),
            probability: 0.9,
            confident: true,
            top: vec![("red".into(), 0.9), ("green".into(), 0.1)],
            latency_ms: 3.5,
            stats: graft_data::image_stats::image_stats(&image::RgbImage::new(8, 8)),
            embedding: Some(vec![0.5, -1.25]),
            arm: if i == 1 { Arm::Canary } else { Arm::Champion },
            answered: i != 2,
        }
    }

    #[test]
    fn rows_are_committed_before_the_answer_and_read_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("audit.db");
        let log = AuditLog::open(&AuditOptions {
            path: path.clone(),
            keep: None,
        })
        .expect("open");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        for i in 0..5 {
            assert!(rt.block_on(log.log(record(i))));
        }
        assert!(rt.block_on(log.log_failure(Failure {
            time_ms: now_ms(),
            request_id: request_id(),
            endpoint: "/predict".into(),
            status: 415,
            code: "not_an_image".into(),
        })));
        let rows = read(&path, None).expect("read");
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].embedding.as_deref(), Some(&[0.5, -1.25][..]));
        let arms: Vec<(Arm, bool)> = rows.iter().map(|r| (r.arm, r.answered)).collect();
        assert_eq!(
            arms[..3],
            [
                (Arm::Champion, true),
                (Arm::Canary, true),
                (Arm::Champion, false)
            ]
        );
        let failures = read_failures(&path, None).expect("failures");
        assert_eq!((failures.len(), failures[0].status), (1, 415));
        assert_eq!(rows[0].top[0].0, "red");
        assert_ne!(rows[0].key_hash.as_deref(), Some("secret"));
        assert_ne!(rows[0].request_id, rows[1].request_id);
        std::thread::sleep(Duration::from_millis(5));
        assert!(read(&path, Some(Duration::ZERO)).expect("read").is_empty());
    }

    #[test]
    fn a_trail_from_before_canaries_reads_as_the_champions_answers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("audit.db");
        let conn = Connection::open(&path).expect("open");
        for (v, step) in MIGRATIONS[..2].iter().enumerate() {
            conn.execute_batch(&format!("{step}; PRAGMA user_version = {};", v + 1))
                .expect("old schema");
        }
        conn.execute(
            "INSERT INTO predictions (time_ms, request_id, endpoint, model, sha256, predicted,
                 probability, confident, top, latency_ms, width, height, mean_r, mean_g, mean_b,
                 std_r, std_g, std_b, brightness, blur)
             VALUES (1, 'r', '/predict', 'm', 'ab', 'red', 0.9, 1, '[]', 2.0, 8, 8, 0.5, 0.5,
                 0.5, 0.1, 0.1, 0.1, 0.5, 3.0)",
            [],
        )
        .expect("old row");
        drop(conn);
        let rows = read(&path, None).expect("read migrates");
        assert_eq!((rows[0].arm, rows[0].answered), (Arm::Champion, true));
    }

    #[test]
    fn old_rows_are_pruned_on_open() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("audit.db");
        let mut conn = open(&path).expect("open");
        let (ack, _) = oneshot::channel();
        let mut old = record(0);
        old.time_ms -= 3 * 86_400_000;
        insert(&mut conn, &[(Row::Prediction(old), ack)]).expect("insert");
        drop(conn);
        let _log = AuditLog::open(&AuditOptions {
            path: path.clone(),
            keep: Some(Duration::from_secs(86_400)),
        })
        .expect("open");
        assert!(read(&path, None).expect("read").is_empty());
    }
}
