//! The SQLite files graft keeps (the tracking store, the audit trail of `graft serve`):
//! opened in WAL mode with a busy timeout, and brought up to date by numbered migrations that
//! SQLite's `user_version` counts. Several processes may open the same new file at once (two
//! servers on one run, parallel `graft train`s in one runs folder): one creates the schema,
//! the others wait for it and find it done.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// How long a connection waits for another process's write before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("written by a newer graft (schema {found}, this graft knows up to {known})")]
    Newer { found: i64, known: i64 },
}

/// Open (or create) `path` in WAL mode: readers and the one writer do not block each other,
/// and a commit is one append, durable across a killed process with `synchronous = NORMAL`
/// (only a power cut can lose the last commit, never the file).
pub fn open_wal(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching a new file to WAL needs it to itself, and SQLite answers SQLITE_BUSY there
    // without consulting the busy handler when another process is opening it too; so wait
    // here the way the busy timeout would.
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other?,
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// The schema version of the file (`user_version`).
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Run the migrations the file has not had yet, in one IMMEDIATE transaction: a second
/// process opening the file at the same time waits, then reads the version again and finds
/// nothing left to do. A file from a newer graft is refused, not touched.
pub fn migrate(conn: &Connection, migrations: &[&str]) -> Result<(), SchemaError> {
    let known = migrations.len() as i64;
    let found = schema_version(conn)?;
    if found > known {
        return Err(SchemaError::Newer { found, known });
    }
    if found == known {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let found = schema_version(&tx)?;
    for (version, step) in migrations.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[&str] = &[
        "CREATE TABLE a (x INTEGER NOT NULL)",
        "ALTER TABLE a ADD COLUMN y TEXT; CREATE TABLE b (z INTEGER)",
    ];

    fn open_and_migrate(path: &Path) -> Result<Connection, SchemaError> {
        let conn = open_wal(path)?;
        migrate(&conn, STEPS)?;
        Ok(conn)
    }

    #[test]
    fn many_threads_opening_one_new_file_all_succeed_and_migrate_once() {
        // Each round races 8 connections on a file that does not exist yet: the switch to
        // WAL and the migrations both collide there.
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(format!("race-{round}.db"));
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            open_and_migrate(&path).map(|_| ())
                        })
                    })
                    .collect();
                for h in handles {
                    let result = h.join().expect("thread");
                    assert!(result.is_ok(), "round {round}: {result:?}");
                }
            });
            let conn = open_wal(&path).expect("reopen");
            assert_eq!(schema_version(&conn).expect("version"), 2);
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .expect("mode");
            assert_eq!(mode, "wal");
            conn.execute("INSERT INTO a (x, y) VALUES (1, 'one')", [])
                .expect("both migrations ran");
        }
    }

    #[test]
    fn a_newer_file_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.db");
        let conn = open_and_migrate(&path).expect("open");
        conn.pragma_update(None, "user_version", 7).expect("bump");
        let err = migrate(&conn, STEPS).expect_err("newer");
        assert!(
            matches!(err, SchemaError::Newer { found: 7, known: 2 }),
            "{err}"
        );
        assert_eq!(schema_version(&conn).expect("version"), 7);
    }

    #[test]
    fn an_up_to_date_file_runs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("done.db");
        drop(open_and_migrate(&path).expect("first"));
        // A step that would fail if it ran again proves it does not.
        open_and_migrate(&path).expect("second open");
    }
}
