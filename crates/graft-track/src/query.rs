//! Reading the store back: run lists with filters and sorting, one run in full, metric
//! histories, and what differs between runs.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::params;
use serde::Serialize;

use crate::error::TrackError;
use crate::store::{Artifact, Metric, Params, RunId, Status, Store};

/// One line of `graft runs list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: RunId,
    pub experiment: String,
    pub name: String,
    pub command: String,
    pub run_dir: String,
    pub status: Status,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub dataset_hash: Option<String>,
    pub graft_version: String,
    pub error: Option<String>,
}

impl RunSummary {
    /// Wall time of a run that ended.
    pub fn seconds(&self) -> Option<f64> {
        self.end_ms.map(|e| (e - self.start_ms) as f64 / 1000.0)
    }
}

/// Everything recorded for one run (`graft runs show`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetails {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub params: Params,
    pub tags: Params,
    /// Each metric's latest value (highest step, then latest time).
    pub metrics: BTreeMap<String, f64>,
    /// How many values each metric has.
    pub metric_steps: BTreeMap<String, usize>,
    pub artifacts: Vec<Artifact>,
}

/// Which runs `graft runs list` shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub experiment: Option<String>,
    pub status: Option<Status>,
    /// `key=value` parameters every run shown must have.
    pub params: Vec<(String, String)>,
    /// A dataset hash, or its first characters.
    pub dataset: Option<String>,
    /// Sort by this metric's latest value, highest first (runs without it last).
    pub sort: Option<String>,
    pub ascending: bool,
    pub limit: Option<usize>,
}

const SUMMARY_COLUMNS: &str = "r.id, e.name, r.name, r.command, r.run_dir, r.status, r.start_ms,
    r.end_ms, r.dataset_hash, r.graft_version, r.error";

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    let status: String = r.get(5)?;
    Ok(RunSummary {
        id: r.get(0)?,
        experiment: r.get(1)?,
        name: r.get(2)?,
        command: r.get(3)?,
        run_dir: r.get(4)?,
        status: status.parse().unwrap_or(Status::Failed),
        start_ms: r.get(6)?,
        end_ms: r.get(7)?,
        dataset_hash: r.get(8)?,
        graft_version: r.get(9)?,
        error: r.get(10)?,
    })
}

impl Store {
    /// Runs matching `filter`, newest first unless sorted by a metric.
    pub fn runs(&self, filter: &Filter) -> Result<Vec<RunSummary>, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id
                 WHERE (?1 IS NULL OR e.name = ?1)
                   AND (?2 IS NULL OR r.status = ?2)
                   AND (?3 IS NULL OR r.dataset_hash LIKE ?3 || '%')
                 ORDER BY r.start_ms DESC, r.rowid DESC"
            ))
            .map_err(&sql)?;
        let rows = stmt
            .query_map(
                params![
                    filter.experiment,
                    filter.status.map(Status::name),
                    filter.dataset
                ],
                summary_row,
            )
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            let run = row.map_err(&sql)?;
            if !filter.params.is_empty() {
                let params = self.params_of(&run.id)?;
                if !filter
                    .params
                    .iter()
                    .all(|(k, v)| params.get(k).is_some_and(|x| x == v))
                {
                    continue;
                }
            }
            out.push(run);
        }
        if let Some(key) = &filter.sort {
            let mut keyed = Vec::with_capacity(out.len());
            for run in out {
                let v = self.latest(&run.id, key)?;
                keyed.push((v, run));
            }
            // Stable: runs with equal values keep newest-first order; missing values go last.
            keyed.sort_by(|(a, _), (b, _)| match (a, b) {
                (Some(a), Some(b)) if filter.ascending => a.total_cmp(b),
                (Some(a), Some(b)) => b.total_cmp(a),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            out = keyed.into_iter().map(|(_, r)| r).collect();
        }
        if let Some(n) = filter.limit {
            out.truncate(n);
        }
        Ok(out)
    }

    fn params_of(&self, run: &str) -> Result<Params, TrackError> {
        self.map_of("params", run)
    }

    fn map_of(&self, table: &str, run: &str) -> Result<Params, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT key, value FROM {table} WHERE run_id = ?1"))
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// The latest value of one metric of a run.
    pub fn latest(&self, run: &str, key: &str) -> Result<Option<f64>, TrackError> {
        Ok(self.history(run, key)?.last().map(|m| m.value))
    }

    /// Every value of one metric of a run, by step (then time).
    pub fn history(&self, run: &str, key: &str) -> Result<Vec<Metric>, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT key, value, step, time_ms FROM metrics WHERE run_id = ?1 AND key = ?2
                 ORDER BY step, time_ms, rowid",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![run, key], |r| {
                Ok(Metric {
                    key: r.get(0)?,
                    value: r.get(1)?,
                    step: r.get(2)?,
                    time_ms: r.get(3)?,
                })
            })
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// One run in full.
    pub fn run(&self, id: &str) -> Result<RunDetails, TrackError> {
        let sql = TrackError::sql(self.path());
        let summary = self
            .conn()
            .query_row(
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM runs r JOIN experiments e
                     ON e.id = r.experiment_id WHERE r.id = ?1"
                ),
                params![id],
                summary_row,
            )
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => TrackError::NoRun(id.to_string()),
                e => sql(e),
            })?;
        let mut metrics = BTreeMap::new();
        let mut metric_steps: BTreeMap<String, usize> = BTreeMap::new();
        {
            let mut stmt = self
                .conn()
                .prepare_cached(
                    "SELECT key, value FROM metrics WHERE run_id = ?1
                     ORDER BY key, step, time_ms, rowid",
                )
                .map_err(&sql)?;
            let rows = stmt
                .query_map(params![id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
                })
                .map_err(&sql)?;
            for row in rows {
                let (k, v) = row.map_err(&sql)?;
                *metric_steps.entry(k.clone()).or_default() += 1;
                metrics.insert(k, v);
            }
        }
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT path, bytes, sha256 FROM artifacts WHERE run_id = ?1 ORDER BY path",
            )
            .map_err(&sql)?;
        let artifacts = stmt
            .query_map(params![id], |r| {
                Ok(Artifact {
                    path: r.get(0)?,
                    bytes: r.get::<_, i64>(1)? as u64,
                    sha256: r.get(2)?,
                })
            })
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        Ok(RunDetails {
            summary,
            params: self.params_of(id)?,
            tags: self.map_of("tags", id)?,
            metrics,
            metric_steps,
            artifacts,
        })
    }
}

/// What differs between runs: each parameter and final metric whose values are not all the
/// same (a value missing from some runs counts as different).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub runs: Vec<RunId>,
    pub params: Vec<Row<String>>,
    pub metrics: Vec<Row<f64>>,
}

/// One parameter or metric across the compared runs, in their order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row<T> {
    pub key: String,
    pub values: Vec<Option<T>>,
}

/// Compare runs; system metrics (`system/…`) are left out, they differ always.
pub fn compare(runs: &[RunDetails]) -> Comparison {
    fn differing<T: Clone + PartialEq>(
        maps: Vec<&BTreeMap<String, T>>,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<Row<T>> {
        let keys: BTreeSet<&String> = maps.iter().flat_map(|m| m.keys()).collect();
        keys.into_iter()
            .filter(|k| keep(k))
            .filter_map(|k| {
                let values: Vec<Option<T>> = maps.iter().map(|m| m.get(k).cloned()).collect();
                let same = values.windows(2).all(|w| w[0] == w[1]);
                (!same).then(|| Row {
                    key: k.clone(),
                    values,
                })
            })
            .collect()
    }
    Comparison {
        runs: runs.iter().map(|r| r.summary.id.clone()).collect(),
        params: differing(runs.iter().map(|r| &r.params).collect(), |_| true),
        metrics: differing(runs.iter().map(|r| &r.metrics).collect(), |k| {
            !k.starts_with(crate::system::PREFIX)
        }),
    }
}
