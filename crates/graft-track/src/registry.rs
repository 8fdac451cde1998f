//! The model registry, in the same store as the runs: named models, numbered versions (each a
//! run's model with its dataset hash, config, final metrics, ONNX SHA-256 and model card) and
//! aliases (`champion`, `challenger`, any name) pointing at versions. Every alias move is kept,
//! with who forced it and why, so `rollback` knows the previous holder.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::error::TrackError;
use crate::store::{now_ms, Artifact, Store};

/// The alias `graft serve --model NAME@champion` and `promote` use.
pub const CHAMPION: &str = "champion";

/// What a new version is made of.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub name: &'a str,
    pub run_id: &'a str,
    pub run_dir: &'a str,
    pub dataset_hash: Option<&'a str>,
    pub onnx_sha256: Option<&'a str>,
    pub metrics: &'a BTreeMap<String, f64>,
    pub config: Option<&'a str>,
    pub card: Option<&'a str>,
    /// The files that make the model (relative to `run_dir`): what serving it needs.
    pub files: &'a [Artifact],
}

/// One registered version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub run_id: String,
    pub run_dir: String,
    pub dataset_hash: Option<String>,
    pub onnx_sha256: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    pub config: Option<String>,
    pub card: Option<String>,
    /// The files that make the model, relative to `run_dir`, with their SHA-256.
    pub files: Vec<Artifact>,
    pub created_ms: i64,
    /// Aliases pointing at it now.
    pub aliases: Vec<String>,
}

/// A registered model: its versions' count and where its aliases point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisteredModel {
    pub name: String,
    pub created_ms: i64,
    pub versions: i64,
    pub aliases: BTreeMap<String, i64>,
}

/// How an alias came to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Alias,
    Promote,
    Rollback,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Alias => "alias",
            Action::Promote => "promote",
            Action::Rollback => "rollback",
        }
    }
}

/// One move of an alias.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasEvent {
    pub alias: String,
    pub version: i64,
    pub previous: Option<i64>,
    pub action: String,
    /// Made with `--force` past a failed check.
    pub forced: bool,
    /// The check's verdict (the paired test), or why it was forced.
    pub reason: Option<String>,
    pub time_ms: i64,
}

/// A model named as `NAME@ALIAS`, `NAME/VERSION` or `NAME` (its latest version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Alias { name: String, alias: String },
    Version { name: String, version: i64 },
    Latest { name: String },
}

impl ModelRef {
    /// Parse `NAME@ALIAS`, `NAME/VERSION` or `NAME`, with or without MLflow's `models:/`.
    pub fn parse(spec: &str) -> Result<ModelRef, TrackError> {
        let s = spec.trim();
        let s = s.strip_prefix("models:/").unwrap_or(s);
        let bad = || TrackError::BadModelRef(spec.to_string());
        if let Some((name, alias)) = s.split_once('@') {
            if name.is_empty() || alias.is_empty() {
                return Err(bad());
            }
            return Ok(ModelRef::Alias {
                name: name.to_string(),
                alias: alias.to_string(),
            });
        }
        if let Some((name, version)) = s.rsplit_once('/') {
            let version = version.parse().map_err(|_| bad())?;
            if name.is_empty() {
                return Err(bad());
            }
            return Ok(ModelRef::Version {
                name: name.to_string(),
                version,
            });
        }
        if s.is_empty() {
            return Err(bad());
        }
        Ok(ModelRef::Latest {
            name: s.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            ModelRef::Alias { name, .. }
            | ModelRef::Version { name, .. }
            | ModelRef::Latest { name } => name,
        }
    }
}

/// Alias names MLflow accepts (and that read well in a URI).
fn check_alias(alias: &str) -> Result<(), TrackError> {
    let ok = !alias.is_empty()
        && alias.len() <= 255
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !alias.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(TrackError::BadAlias(alias.to_string()))
    }
}

impl Store {
    /// Register a run's model as the next version of `name` (created on first use).
    pub fn register(&self, v: &NewVersion<'_>) -> Result<i64, TrackError> {
        let sql = TrackError::sql(self.path());
        let tx = self.conn().unchecked_transaction().map_err(&sql)?;
        tx.execute(
            "INSERT OR IGNORE INTO models (name, created_ms) VALUES (?1, ?2)",
            params![v.name, now_ms()],
        )
        .map_err(&sql)?;
        let version: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?1",
                params![v.name],
                |r| r.get(0),
            )
            .map_err(&sql)?;
        let metrics = serde_json::to_string(v.metrics).unwrap_or_else(|_| "{}".into());
        let files = serde_json::to_string(v.files).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT INTO model_versions (name, version, run_id, run_dir, dataset_hash,
                 onnx_sha256, metrics, config, card, files, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                v.name,
                version,
                v.run_id,
                v.run_dir,
                v.dataset_hash,
                v.onnx_sha256,
                metrics,
                v.config,
                v.card,
                files,
                now_ms()
            ],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(version)
    }

    /// Every registered model, by name.
    pub fn models(&self) -> Result<Vec<RegisteredModel>, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT m.name, m.created_ms, (SELECT COUNT(*) FROM model_versions v
                     WHERE v.name = m.name) FROM models m ORDER BY m.name",
            )
            .map_err(&sql)?;
        let rows: Vec<(String, i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        rows.into_iter()
            .map(|(name, created_ms, versions)| {
                Ok(RegisteredModel {
                    aliases: self.aliases(&name)?,
                    name,
                    created_ms,
                    versions,
                })
            })
            .collect()
    }

    /// Where the aliases of `name` point.
    pub fn aliases(&self, name: &str) -> Result<BTreeMap<String, i64>, TrackError> {
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT alias, version FROM aliases WHERE name = ?1")
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        Ok(rows)
    }

    fn check_model(&self, name: &str) -> Result<(), TrackError> {
        let found: Option<i64> = self
            .conn()
            .query_row("SELECT 1 FROM models WHERE name = ?1", params![name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(TrackError::sql(self.path()))?;
        found
            .map(drop)
            .ok_or_else(|| TrackError::NoModel(name.to_string()))
    }

    /// Every version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<ModelVersion>, TrackError> {
        self.check_model(name)?;
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare("SELECT version FROM model_versions WHERE name = ?1 ORDER BY version")
            .map_err(&sql)?;
        let numbers: Vec<i64> = stmt
            .query_map(params![name], |r| r.get(0))
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        numbers
            .into_iter()
            .map(|v| self.model_version(name, v))
            .collect()
    }

    /// Version `version` of `name`.
    pub fn model_version(&self, name: &str, version: i64) -> Result<ModelVersion, TrackError> {
        let sql = TrackError::sql(self.path());
        let row = self
            .conn()
            .query_row(
                "SELECT run_id, run_dir, dataset_hash, onnx_sha256, metrics, config, card,
                     files, created_ms FROM model_versions WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| {
                    Ok(ModelVersion {
                        name: name.to_string(),
                        version,
                        run_id: r.get(0)?,
                        run_dir: r.get(1)?,
                        dataset_hash: r.get(2)?,
                        onnx_sha256: r.get(3)?,
                        metrics: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                        config: r.get(5)?,
                        card: r.get(6)?,
                        files: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                        created_ms: r.get(8)?,
                        aliases: Vec::new(),
                    })
                },
            )
            .optional()
            .map_err(&sql)?;
        let Some(mut v) = row else {
            self.check_model(name)?;
            return Err(TrackError::NoVersion {
                name: name.to_string(),
                version,
            });
        };
        v.aliases = self
            .aliases(name)?
            .into_iter()
            .filter(|(_, n)| *n == version)
            .map(|(a, _)| a)
            .collect();
        Ok(v)
    }

    /// The version a reference names.
    pub fn resolve_model(&self, model: &ModelRef) -> Result<ModelVersion, TrackError> {
        match model {
            ModelRef::Version { name, version } => self.model_version(name, *version),
            ModelRef::Alias { name, alias } => {
                let version =
                    self.alias_version(name, alias)?
                        .ok_or_else(|| TrackError::NoAlias {
                            name: name.clone(),
                            alias: alias.clone(),
                        })?;
                self.model_version(name, version)
            }
            ModelRef::Latest { name } => {
                let latest = self.versions(name)?.pop();
                latest.ok_or_else(|| TrackError::NoModel(name.clone()))
            }
        }
    }

    /// The version `alias` of `name` points at.
    pub fn alias_version(&self, name: &str, alias: &str) -> Result<Option<i64>, TrackError> {
        self.check_model(name)?;
        Ok(self.aliases(name)?.get(alias).copied())
    }

    /// Point `alias` of `name` at `version`, recording how; returns the version it left.
    pub fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
        action: Action,
        forced: bool,
        reason: Option<&str>,
    ) -> Result<Option<i64>, TrackError> {
        check_alias(alias)?;
        self.model_version(name, version)?;
        let sql = TrackError::sql(self.path());
        let previous = self.alias_version(name, alias)?;
        let tx = self.conn().unchecked_transaction().map_err(&sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO aliases (name, alias, version) VALUES (?1, ?2, ?3)",
            params![name, alias, version],
        )
        .map_err(&sql)?;
        tx.execute(
            "INSERT INTO alias_events (name, alias, version, previous, action, forced, reason,
                 time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                name,
                alias,
                version,
                previous,
                action.name(),
                forced as i64,
                reason,
                now_ms()
            ],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(previous)
    }

    /// How the aliases of `name` moved, oldest first.
    pub fn alias_events(&self, name: &str) -> Result<Vec<AliasEvent>, TrackError> {
        self.check_model(name)?;
        let sql = TrackError::sql(self.path());
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT alias, version, previous, action, forced, reason, time_ms
                 FROM alias_events WHERE name = ?1 ORDER BY id",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![name], |r| {
                Ok(AliasEvent {
                    alias: r.get(0)?,
                    version: r.get(1)?,
                    previous: r.get(2)?,
                    action: r.get(3)?,
                    forced: r.get::<_, i64>(4)? != 0,
                    reason: r.get(5)?,
                    time_ms: r.get(6)?,
                })
            })
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        Ok(rows)
    }

    /// The version `alias` of `name` held before its current holder, rollbacks undone: the
    /// holders form a stack that moves push and rollbacks pop.
    pub fn rollback_target(&self, name: &str, alias: &str) -> Result<Option<i64>, TrackError> {
        let mut stack: Vec<i64> = Vec::new();
        for e in self.alias_events(name)?.iter().filter(|e| e.alias == alias) {
            if e.action == Action::Rollback.name() {
                stack.pop();
            } else if stack.last() != Some(&e.version) {
                stack.push(e.version);
            }
        }
        Ok(stack.len().checked_sub(2).map(|i| stack[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_mlflow_uris() {
        let alias = |n: &str, a: &str| ModelRef::Alias {
            name: n.into(),
            alias: a.into(),
        };
        assert_eq!(
            ModelRef::parse("leaf@champion").ok(),
            Some(alias("leaf", "champion"))
        );
        assert_eq!(
            ModelRef::parse("models:/leaf@champion").ok(),
            Some(alias("leaf", "champion"))
        );
        assert_eq!(
            ModelRef::parse("models:/leaf/3").ok(),
            Some(ModelRef::Version {
                name: "leaf".into(),
                version: 3
            })
        );
        assert_eq!(
            ModelRef::parse("leaf").ok(),
            Some(ModelRef::Latest {
                name: "leaf".into()
            })
        );
        assert!(ModelRef::parse("leaf@").is_err());
        assert!(ModelRef::parse("leaf/x").is_err());
    }

    #[test]
    fn rollback_walks_back_through_promotions() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(&tmp.path().join("graft.db")).expect("store");
        let metrics = BTreeMap::new();
        for _ in 0..3 {
            store
                .register(&NewVersion {
                    name: "leaf",
                    run_id: "r",
                    run_dir: "/runs/r",
                    dataset_hash: None,
                    onnx_sha256: None,
                    metrics: &metrics,
                    config: None,
                    card: None,
                    files: &[],
                })
                .expect("register");
        }
        assert_eq!(store.rollback_target("leaf", CHAMPION).expect("t"), None);
        for v in 1..=3 {
            store
                .set_alias("leaf", CHAMPION, v, Action::Promote, false, None)
                .expect("promote");
        }
        assert_eq!(store.rollback_target("leaf", CHAMPION).expect("t"), Some(2));
        store
            .set_alias("leaf", CHAMPION, 2, Action::Rollback, false, None)
            .expect("rollback");
        assert_eq!(store.rollback_target("leaf", CHAMPION).expect("t"), Some(1));
        store
            .set_alias("leaf", CHAMPION, 1, Action::Rollback, false, None)
            .expect("rollback");
        assert_eq!(store.rollback_target("leaf", CHAMPION).expect("t"), None);
        assert_eq!(store.alias_version("leaf", CHAMPION).expect("a"), Some(1));
        let v1 = store.model_version("leaf", 1).expect("v1");
        assert_eq!(v1.aliases, vec![CHAMPION.to_string()]);
        assert!(matches!(
            store.set_alias("leaf", "bad alias", 1, Action::Alias, false, None),
            Err(TrackError::BadAlias(_))
        ));
        assert!(matches!(
            store.model_version("leaf", 9),
            Err(TrackError::NoVersion { .. })
        ));
        assert!(matches!(
            store.versions("other"),
            Err(TrackError::NoModel(_))
        ));
    }
}
