//! The registry mirrored to MLflow's: each version created once there (from its run, sent
//! first), found again by its `graft.version` tag, and the aliases set as they are here.

use serde::Serialize;

use super::client::Client;
use super::push::push_run;
use crate::error::TrackError;
use crate::registry::ModelVersion;
use crate::store::Store;

/// The tag that ties an MLflow model version to graft's version number.
pub const VERSION_TAG: &str = "graft.version";

/// What one push of a registered model did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelPushed {
    pub name: String,
    /// Versions created on the server (graft's numbers).
    pub created: Vec<i64>,
    /// Aliases set there: alias → the server's version number.
    pub aliases: Vec<(String, String)>,
}

impl Store {
    pub(crate) fn remote_version(
        &self,
        name: &str,
        version: i64,
        server: &str,
    ) -> Result<Option<String>, TrackError> {
        use rusqlite::OptionalExtension;
        self.conn()
            .query_row(
                "SELECT remote_version FROM mlflow_versions
                 WHERE name = ?1 AND version = ?2 AND server = ?3",
                rusqlite::params![name, version, server],
                |r| r.get(0),
            )
            .optional()
            .map_err(TrackError::sql(self.path()))
    }

    fn set_remote_version(
        &self,
        name: &str,
        version: i64,
        server: &str,
        remote: &str,
    ) -> Result<(), TrackError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO mlflow_versions (name, version, server, remote_version)
                 VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![name, version, server, remote],
            )
            .map_err(TrackError::sql(self.path()))?;
        Ok(())
    }
}

/// Send registered model `name` to the server: missing versions, then every alias.
pub fn push_model(store: &Store, client: &Client, name: &str) -> Result<ModelPushed, TrackError> {
    let server = client.uri();
    let mut out = ModelPushed {
        name: name.to_string(),
        ..ModelPushed::default()
    };
    client.ensure_model(name)?;
    let versions = store.versions(name)?;
    let mut remote_of = std::collections::BTreeMap::new();
    let mut listed = None;
    for v in &versions {
        if let Some(r) = store.remote_version(name, v.version, server)? {
            remote_of.insert(v.version, r);
            continue;
        }
        // A version created by a call whose answer was lost is found by its tag.
        let on_server = match &listed {
            Some(l) => l,
            None => listed.insert(client.versions(name)?),
        };
        let tag = v.version.to_string();
        let remote = match on_server.iter().find(|r| r.tag(VERSION_TAG) == Some(&tag)) {
            Some(r) => r.version.clone(),
            None => {
                let created = create(store, client, v)?;
                out.created.push(v.version);
                created
            }
        };
        store.set_remote_version(name, v.version, server, &remote)?;
        remote_of.insert(v.version, remote);
    }
    for (alias, version) in store.aliases(name)? {
        if let Some(remote) = remote_of.get(&version) {
            client.set_alias(name, &alias, remote)?;
            out.aliases.push((alias, remote.clone()));
        }
    }
    Ok(out)
}

/// Where a version's files go under its run's artifacts (MLflow's `runs:/RUN/model` layout).
pub const MODEL_PATH: &str = "model";

/// Create version `v` on the server: its run is sent first, then the files that make the
/// model go under the run's `model/`, which is the version's source.
fn create(store: &Store, client: &Client, v: &ModelVersion) -> Result<String, TrackError> {
    let pushed = push_run(store, client, &v.run_id)?;
    let remote = store
        .remote(&v.run_id, client.uri())?
        .ok_or_else(|| TrackError::NoRun(v.run_id.clone()))?;
    let root = std::path::Path::new(&v.run_dir);
    for f in &v.files {
        let file = root.join(&f.path);
        let same = graft_data::hash::sha256_file(&file).is_ok_and(|h| h == f.sha256);
        if !same {
            return Err(TrackError::VersionChanged {
                name: v.name.clone(),
                version: v.version,
                file,
            });
        }
        client.upload(
            &remote.artifact_uri,
            &format!("{MODEL_PATH}/{}", f.path),
            &file,
        )?;
    }
    let source = format!("{}/{MODEL_PATH}", remote.artifact_uri.trim_end_matches('/'));
    let mut tags = vec![
        (VERSION_TAG.to_string(), v.version.to_string()),
        (super::RUN_ID_TAG.to_string(), v.run_id.clone()),
    ];
    if let Some(h) = &v.dataset_hash {
        tags.push(("graft.dataset_hash".into(), h.clone()));
    }
    if let Some(h) = &v.onnx_sha256 {
        tags.push(("graft.onnx_sha256".into(), h.clone()));
    }
    for (k, value) in &v.metrics {
        tags.push((format!("metric.{k}"), value.to_string()));
    }
    let description = v.card.clone().unwrap_or_default();
    let created =
        client.create_version(&v.name, &source, &pushed.remote_id, &tags, &description)?;
    Ok(created.version)
}
