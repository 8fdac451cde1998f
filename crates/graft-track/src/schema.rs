//! The store's tables, and how an older store is brought up to date. Each entry of
//! [`MIGRATIONS`] moves the schema one version up; SQLite's `user_version` says which ran.

/// Schema migrations, oldest first: entry `i` takes a store from version `i` to `i + 1`.
/// Append only — a released migration is never edited.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: runs, their parameters, tags, metrics and artifacts.
    "
    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        name TEXT NOT NULL,
        command TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'killed')),
        start_ms INTEGER NOT NULL,
        end_ms INTEGER,
        dataset_hash TEXT,
        graft_version TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start INTEGER NOT NULL,
        error TEXT
    );
    CREATE INDEX runs_by_start ON runs(start_ms);
    CREATE TABLE params (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE TABLE tags (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value REAL NOT NULL,
        step INTEGER NOT NULL,
        time_ms INTEGER NOT NULL
    );
    CREATE INDEX metrics_by_run ON metrics(run_id, key, step);
    CREATE TABLE artifacts (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (run_id, path)
    );
    ",
    // 2: the queue of what is still to send to MLflow servers (what each server already has),
    // and the model registry.
    "
    CREATE TABLE mlflow_runs (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        server TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        experiment_id TEXT NOT NULL,
        artifact_uri TEXT NOT NULL,
        metrics_upto INTEGER NOT NULL DEFAULT 0,
        ended INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, server)
    );
    CREATE TABLE mlflow_sent (
        run_id TEXT NOT NULL,
        server TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('param', 'tag', 'artifact')),
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, server, kind, key),
        FOREIGN KEY (run_id, server) REFERENCES mlflow_runs(run_id, server) ON DELETE CASCADE
    );
    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE model_versions (
        name TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        dataset_hash TEXT,
        onnx_sha256 TEXT,
        metrics TEXT NOT NULL,
        config TEXT,
        card TEXT,
        files TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE aliases (
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (name, alias),
        FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE
    );
    CREATE TABLE alias_events (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version INTEGER,
        previous INTEGER,
        action TEXT NOT NULL,
        forced INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        time_ms INTEGER NOT NULL
    );
    CREATE TABLE mlflow_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        server TEXT NOT NULL,
        remote_version TEXT NOT NULL,
        PRIMARY KEY (name, version, server),
        FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE
    );
    ",
];

/// The schema version this build writes.
#[cfg(test)]
pub(crate) fn current() -> i64 {
    MIGRATIONS.len() as i64
}
