//! The embedded tracking store: one SQLite file (`runs/graft.db`) in WAL mode, so a reader
//! (`graft runs list`) never blocks a training run and a `kill -9` loses at most the
//! transaction in flight — never the file, never earlier runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::TrackError;
use crate::process::{self, Process};
use crate::schema;

/// Parameters (or tags) of a run: key → value, as text.
pub type Params = BTreeMap<String, String>;

/// A run's id: 32 hexadecimal digits, like MLflow's.
pub type RunId = String;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Finished,
    Failed,
    /// The process ended without finishing the run (kill -9, a crash, a power cut): found and
    /// marked by the next process that opens the store.
    Killed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Killed => "killed",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        match s.to_ascii_lowercase().as_str() {
            "running" => Ok(Status::Running),
            "finished" => Ok(Status::Finished),
            "failed" => Ok(Status::Failed),
            "killed" => Ok(Status::Killed),
            other => Err(format!(
                "unknown status {other:?}; choose running, finished, failed or killed"
            )),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of a metric at a step (an epoch, a sweep configuration, a system sample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
}

/// A file a run wrote: its path relative to the run folder, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What a new run is.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// `<dataset>-training`, `<dataset>-evaluation`, …: created on first use.
    pub experiment: &'a str,
    /// The run folder's name.
    pub name: &'a str,
    /// The graft command that made it ("train", "train heads", "eval", …).
    pub command: &'a str,
    pub run_dir: &'a Path,
    /// Hash of the dataset's manifest, when the run has one.
    pub dataset_hash: Option<&'a str>,
    pub params: &'a Params,
    pub tags: &'a Params,
}

/// An open tracking store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The first 8 digits of a run id: what tables show and what `graft runs` accepts back.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Open the store at `path`, creating it (and bringing an older schema up to date) when
    /// needed. Runs left `running` by a process that is gone are marked killed.
    pub fn open(path: &Path) -> Result<Store, TrackError> {
        let store = Store::connect(path)?;
        store.migrate()?;
        store.reap_killed()?;
        Ok(store)
    }

    /// Open an existing store; a missing file is [`TrackError::NoStore`], not a new store.
    pub fn open_existing(path: &Path) -> Result<Store, TrackError> {
        if !path.is_file() {
            return Err(TrackError::NoStore(path.to_path_buf()));
        }
        Store::open(path)
    }

    /// A second connection to a store that is already open (the system-metrics thread).
    pub(crate) fn attach(path: &Path) -> Result<Store, TrackError> {
        Store::connect(path)
    }

    fn connect(path: &Path) -> Result<Store, TrackError> {
        let sql = TrackError::sql(path);
        let conn = graft_sqlite::open_wal(path).map_err(&sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(&sql)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> TrackError + '_ {
        TrackError::sql(&self.path)
    }

    /// The schema version of the file.
    pub fn schema_version(&self) -> Result<i64, TrackError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.sql())
    }

    fn migrate(&self) -> Result<(), TrackError> {
        graft_sqlite::migrate(&self.conn, schema::MIGRATIONS).map_err(|e| match e {
            graft_sqlite::SchemaError::Sqlite(e) => TrackError::sql(&self.path)(e),
            graft_sqlite::SchemaError::Newer { found, known } => TrackError::NewerSchema {
                path: self.path.clone(),
                found,
                known,
            },
        })
    }

    /// Mark as killed every `running` run whose process is gone; returns their ids.
    pub fn reap_killed(&self) -> Result<Vec<RunId>, TrackError> {
        let sql = self.sql();
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid, pid_start FROM runs WHERE status = 'running'")
            .map_err(&sql)?;
        let running: Vec<(String, i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        let mut killed = Vec::new();
        for (id, pid, start) in running {
            let owner = Process {
                pid: pid as u32,
                start: start as u64,
            };
            if process::alive(owner) {
                continue;
            }
            self.conn
                .execute(
                    "UPDATE runs SET status = 'killed', error = ?2,
                     end_ms = COALESCE((SELECT MAX(time_ms) FROM metrics WHERE run_id = ?1), start_ms)
                     WHERE id = ?1 AND status = 'running'",
                    params![
                        id,
                        "the process ended without finishing the run (killed or crashed)"
                    ],
                )
                .map_err(&sql)?;
            tracing::info!(run = %id, pid, "run left running by a process that is gone: marked killed");
            killed.push(id);
        }
        Ok(killed)
    }

    fn experiment_id(&self, name: &str) -> Result<i64, TrackError> {
        let sql = self.sql();
        self.conn
            .execute(
                "INSERT OR IGNORE INTO experiments (name, created_ms) VALUES (?1, ?2)",
                params![name, now_ms()],
            )
            .map_err(&sql)?;
        self.conn
            .query_row(
                "SELECT id FROM experiments WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .map_err(&sql)
    }

    /// Record a new run, `running`, owned by this process.
    pub fn start_run(&self, run: &NewRun<'_>) -> Result<RunId, TrackError> {
        let sql = self.sql();
        let experiment = self.experiment_id(run.experiment)?;
        let me = process::current();
        let id = new_run_id(me);
        let tx = self.conn.unchecked_transaction().map_err(&sql)?;
        tx.execute(
            "INSERT INTO runs (id, experiment_id, name, command, run_dir, status, start_ms,
                               dataset_hash, graft_version, pid, pid_start)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10)",
            params![
                id,
                experiment,
                run.name,
                run.command,
                run.run_dir.to_string_lossy(),
                now_ms(),
                run.dataset_hash,
                env!("CARGO_PKG_VERSION"),
                me.pid as i64,
                me.start as i64,
            ],
        )
        .map_err(&sql)?;
        insert_map(&tx, "params", &id, run.params).map_err(&sql)?;
        insert_map(&tx, "tags", &id, run.tags).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(id)
    }

    /// Add or replace parameters of a run.
    pub fn log_params(&self, run: &str, params: &Params) -> Result<(), TrackError> {
        self.put_map("params", run, params)
    }

    /// Add or replace tags of a run.
    pub fn set_tags(&self, run: &str, tags: &Params) -> Result<(), TrackError> {
        self.put_map("tags", run, tags)
    }

    fn put_map(&self, table: &str, run: &str, map: &Params) -> Result<(), TrackError> {
        let sql = self.sql();
        let tx = self.conn.unchecked_transaction().map_err(&sql)?;
        insert_map(&tx, table, run, map).map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Append metric values, in one transaction.
    pub fn log_metrics(&self, run: &str, metrics: &[Metric]) -> Result<(), TrackError> {
        let sql = self.sql();
        let tx = self.conn.unchecked_transaction().map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO metrics (run_id, key, value, step, time_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(&sql)?;
            for m in metrics.iter().filter(|m| m.value.is_finite()) {
                stmt.execute(params![run, m.key, m.value, m.step, m.time_ms])
                    .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// Record files a run wrote (a path already recorded is replaced).
    pub fn log_artifacts(&self, run: &str, artifacts: &[Artifact]) -> Result<(), TrackError> {
        let sql = self.sql();
        let tx = self.conn.unchecked_transaction().map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO artifacts (run_id, path, bytes, sha256)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&sql)?;
            for a in artifacts {
                stmt.execute(params![run, a.path, a.bytes as i64, a.sha256])
                    .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// Set the dataset hash of a run once it is known (a run that splits its own data learns it
    /// after starting).
    pub fn set_dataset_hash(&self, run: &str, hash: &str) -> Result<(), TrackError> {
        self.conn
            .execute(
                "UPDATE runs SET dataset_hash = ?2 WHERE id = ?1",
                params![run, hash],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// End a run: finished, or failed with the error.
    pub fn end_run(
        &self,
        run: &str,
        status: Status,
        error: Option<&str>,
    ) -> Result<(), TrackError> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, end_ms = ?3, error = ?4 WHERE id = ?1",
                params![run, status.name(), now_ms(), error],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// The full id of the run `prefix` starts (like git's short hashes).
    pub fn resolve(&self, prefix: &str) -> Result<RunId, TrackError> {
        let sql = self.sql();
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(TrackError::NoRun(prefix));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM runs WHERE id LIKE ?1 || '%' LIMIT 2")
            .map_err(&sql)?;
        let ids: Vec<String> = stmt
            .query_map(params![prefix], |r| r.get(0))
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        match ids.len() {
            0 => Err(TrackError::NoRun(prefix)),
            1 => Ok(ids.into_iter().next().unwrap_or_default()),
            _ => {
                let count: i64 = self
                    .conn
                    .query_row(
                        "SELECT COUNT(*) FROM runs WHERE id LIKE ?1 || '%'",
                        params![prefix],
                        |r| r.get(0),
                    )
                    .map_err(&sql)?;
                Err(TrackError::Ambiguous {
                    prefix,
                    count: count as usize,
                })
            }
        }
    }

    /// Delete a run and everything recorded for it (not its folder).
    pub fn delete(&self, run: &str) -> Result<(), TrackError> {
        let n = self
            .conn
            .execute("DELETE FROM runs WHERE id = ?1", params![run])
            .map_err(self.sql())?;
        if n == 0 {
            return Err(TrackError::NoRun(run.to_string()));
        }
        Ok(())
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The status of one run, if it exists.
    pub fn status(&self, run: &str) -> Result<Option<Status>, TrackError> {
        let s: Option<String> = self
            .conn
            .query_row("SELECT status FROM runs WHERE id = ?1", params![run], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sql())?;
        Ok(s.and_then(|s| s.parse().ok()))
    }
}

/// Add or replace `map`'s keys in a key-value table (`params`, `tags`) of `run`.
fn insert_map(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    run: &str,
    map: &Params,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {table} (run_id, key, value) VALUES (?1, ?2, ?3)"
    ))?;
    for (k, v) in map {
        stmt.execute(params![run, k, v])?;
    }
    Ok(())
}

/// 128 random-looking bits: the process, its start, the clock and a counter, hashed.
fn new_run_id(me: Process) -> RunId {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(&me.pid.to_le_bytes());
    h.update(&me.start.to_le_bytes());
    h.update(&nanos.to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.finalize().to_hex()[..32].to_string()
}
