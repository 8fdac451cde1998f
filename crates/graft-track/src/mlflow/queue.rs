//! What each MLflow server already has of each run: the run it was given there, the last
//! metric row sent, and the parameters, tags and files sent. Everything else in the store is
//! the queue — so a run recorded while the server was down is sent whole later, and nothing
//! is sent twice.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use crate::error::TrackError;
use crate::store::{Metric, Store};

/// A run's counterpart on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remote {
    pub remote_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
    /// The last metric row (SQLite rowid) the server has.
    pub metrics_upto: i64,
    /// The server has the run's final status.
    pub ended: bool,
}

/// What is sent of a run, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Param,
    Tag,
    Artifact,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Param => "param",
            Kind::Tag => "tag",
            Kind::Artifact => "artifact",
        }
    }
}

impl Store {
    pub(crate) fn remote(&self, run: &str, server: &str) -> Result<Option<Remote>, TrackError> {
        self.conn()
            .query_row(
                "SELECT remote_id, experiment_id, artifact_uri, metrics_upto, ended
                 FROM mlflow_runs WHERE run_id = ?1 AND server = ?2",
                params![run, server],
                |r| {
                    Ok(Remote {
                        remote_id: r.get(0)?,
                        experiment_id: r.get(1)?,
                        artifact_uri: r.get(2)?,
                        metrics_upto: r.get(3)?,
                        ended: r.get::<_, i64>(4)? != 0,
                    })
                },
            )
            .optional()
            .map_err(TrackError::sql(self.path()))
    }

    pub(crate) fn set_remote(
        &self,
        run: &str,
        server: &str,
        remote: &Remote,
    ) -> Result<(), TrackError> {
        self.conn()
            .execute(
                "INSERT INTO mlflow_runs
                     (run_id, server, remote_id, experiment_id, artifact_uri, metrics_upto, ended)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (run_id, server) DO UPDATE SET
                     remote_id = ?3, experiment_id = ?4, artifact_uri = ?5,
                     metrics_upto = ?6, ended = ?7",
                params![
                    run,
                    server,
                    remote.remote_id,
                    remote.experiment_id,
                    remote.artifact_uri,
                    remote.metrics_upto,
                    remote.ended as i64
                ],
            )
            .map_err(TrackError::sql(self.path()))?;
        Ok(())
    }

    /// Metric rows of `run` after row `after`, oldest first, at most `limit`.
    pub(crate) fn metrics_after(
        &self,
        run: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Metric)>, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT rowid, key, value, step, time_ms FROM metrics
                 WHERE run_id = ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![run, after, limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    Metric {
                        key: r.get(1)?,
                        value: r.get(2)?,
                        step: r.get(3)?,
                        time_ms: r.get(4)?,
                    },
                ))
            })
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        Ok(rows)
    }

    pub(crate) fn sent(
        &self,
        run: &str,
        server: &str,
        kind: Kind,
    ) -> Result<BTreeMap<String, String>, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT key, value FROM mlflow_sent WHERE run_id = ?1 AND server = ?2 AND kind = ?3",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![run, server, kind.name()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        Ok(rows)
    }

    pub(crate) fn mark_sent(
        &self,
        run: &str,
        server: &str,
        kind: Kind,
        pairs: &[(String, String)],
    ) -> Result<(), TrackError> {
        let sql = TrackError::sql(self.path());
        let tx = self.conn().unchecked_transaction().map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO mlflow_sent (run_id, server, kind, key, value)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(&sql)?;
            for (k, v) in pairs {
                stmt.execute(params![run, server, kind.name(), k, v])
                    .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    pub(crate) fn set_metrics_upto(
        &self,
        run: &str,
        server: &str,
        upto: i64,
    ) -> Result<(), TrackError> {
        self.conn()
            .execute(
                "UPDATE mlflow_runs SET metrics_upto = ?3 WHERE run_id = ?1 AND server = ?2",
                params![run, server, upto],
            )
            .map_err(TrackError::sql(self.path()))?;
        Ok(())
    }

    pub(crate) fn set_ended(&self, run: &str, server: &str) -> Result<(), TrackError> {
        self.conn()
            .execute(
                "UPDATE mlflow_runs SET ended = 1 WHERE run_id = ?1 AND server = ?2",
                params![run, server],
            )
            .map_err(TrackError::sql(self.path()))?;
        Ok(())
    }

    /// Runs `server` does not have in full (or may not: a run still running), oldest first.
    pub fn unsent_runs(&self, server: &str) -> Result<Vec<String>, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT r.id FROM runs r
                 LEFT JOIN mlflow_runs m ON m.run_id = r.id AND m.server = ?1
                 WHERE m.run_id IS NULL OR m.ended = 0 OR r.status = 'running'
                    OR EXISTS (SELECT 1 FROM metrics x WHERE x.run_id = r.id
                               AND x.rowid > m.metrics_upto)
                    OR EXISTS (SELECT 1 FROM params p WHERE p.run_id = r.id AND NOT EXISTS
                               (SELECT 1 FROM mlflow_sent s WHERE s.run_id = r.id
                                AND s.server = ?1 AND s.kind = 'param' AND s.key = p.key))
                    OR EXISTS (SELECT 1 FROM artifacts a WHERE a.run_id = r.id AND NOT EXISTS
                               (SELECT 1 FROM mlflow_sent s WHERE s.run_id = r.id
                                AND s.server = ?1 AND s.kind = 'artifact' AND s.key = a.path
                                AND s.value = a.sha256))
                 ORDER BY r.start_ms",
            )
            .map_err(&sql)?;
        let ids = stmt
            .query_map(params![server], |r| r.get(0))
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        Ok(ids)
    }
}
