//! Sending one run from the store to an MLflow server: whatever the server does not have yet
//! (see [`super::queue`]), in batches within MLflow's limits. Sending again after a failure
//! picks up where the last call that succeeded left off; the run is found again by its
//! `graft.run_id` tag, so it is never created twice.

use std::path::Path;

use serde::Serialize;

use super::client::{Client, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH};
use super::queue::{Kind, Remote};
use crate::error::TrackError;
use crate::store::{Status, Store};

/// The tag that ties an MLflow run to graft's.
pub const RUN_ID_TAG: &str = "graft.run_id";

/// What one push sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// graft's run id.
    pub run: String,
    /// The run's id on the server.
    pub remote_id: String,
    /// The run was created on the server by this push.
    pub created: bool,
    pub metrics: usize,
    pub params: usize,
    pub tags: usize,
    pub files: usize,
    /// Files the store lists that are gone or changed since the run (rewritten by a later
    /// command): not sent, so the server never holds a file the run did not write.
    pub skipped_files: Vec<String>,
    /// The server has the run's final status.
    pub ended: bool,
}

impl Pushed {
    /// Nothing was sent.
    pub fn is_empty(&self) -> bool {
        !self.created
            && self.metrics == 0
            && self.params == 0
            && self.tags == 0
            && self.files == 0
            && !self.ended
    }
}

/// Send what `client`'s server lacks of run `run`.
pub fn push_run(store: &Store, client: &Client, run: &str) -> Result<Pushed, TrackError> {
    let server = client.uri();
    let details = store.run(run)?;
    let s = &details.summary;
    let mut out = Pushed {
        run: run.to_string(),
        ..Pushed::default()
    };

    // The run, found again by its tag or created.
    let remote = match store.remote(run, server)? {
        Some(r) => r,
        None => {
            let experiment_id = client.experiment_id(&s.experiment)?;
            let found = client.find_run(&experiment_id, RUN_ID_TAG, run)?;
            let remote = match found {
                Some(r) => r,
                None => {
                    out.created = true;
                    client.create_run(
                        &experiment_id,
                        &s.name,
                        s.start_ms,
                        &[(RUN_ID_TAG.to_string(), run.to_string())],
                    )?
                }
            };
            let r = Remote {
                remote_id: remote.run_id,
                experiment_id: remote.experiment_id,
                artifact_uri: remote.artifact_uri,
                metrics_upto: 0,
                ended: false,
            };
            store.set_remote(run, server, &r)?;
            r
        }
    };
    out.remote_id = remote.remote_id.clone();
    let id = remote.remote_id.as_str();

    // Parameters (MLflow's are write-once: a key is sent once) and tags.
    let sent_params = store.sent(run, server, Kind::Param)?;
    let params: Vec<(String, String)> = details
        .params
        .iter()
        .filter(|(k, _)| !sent_params.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut tags = graft_tags(&details);
    let sent_tags = store.sent(run, server, Kind::Tag)?;
    tags.retain(|(k, v)| sent_tags.get(k) != Some(v));
    for chunk in params.chunks(MAX_PARAMS_TAGS_PER_BATCH) {
        client.log_batch(id, &[], chunk, &[])?;
        store.mark_sent(run, server, Kind::Param, chunk)?;
        out.params += chunk.len();
    }
    for chunk in tags.chunks(MAX_PARAMS_TAGS_PER_BATCH) {
        client.log_batch(id, &[], &[], chunk)?;
        store.mark_sent(run, server, Kind::Tag, chunk)?;
        out.tags += chunk.len();
    }

    // Metrics, in store order; the watermark moves after each batch the server took.
    let mut upto = remote.metrics_upto;
    loop {
        let rows = store.metrics_after(run, upto, MAX_METRICS_PER_BATCH)?;
        let Some(&(last, _)) = rows.last() else {
            break;
        };
        let batch: Vec<_> = rows.into_iter().map(|(_, m)| m).collect();
        client.log_batch(id, &batch, &[], &[])?;
        store.set_metrics_upto(run, server, last)?;
        out.metrics += batch.len();
        upto = last;
    }

    // Files the run wrote, each once per content.
    let sent_files = store.sent(run, server, Kind::Artifact)?;
    let root = Path::new(&s.run_dir);
    for a in &details.artifacts {
        if sent_files.get(&a.path) == Some(&a.sha256) {
            continue;
        }
        let file = root.join(&a.path);
        let same = graft_data::hash::sha256_file(&file).is_ok_and(|h| h == a.sha256);
        if same {
            client.upload(&remote.artifact_uri, &a.path, &file)?;
            out.files += 1;
        } else {
            out.skipped_files.push(a.path.clone());
        }
        store.mark_sent(
            run,
            server,
            Kind::Artifact,
            &[(a.path.clone(), a.sha256.clone())],
        )?;
    }

    // The end, once the run has one.
    if s.status != Status::Running && !remote.ended {
        client.end_run(id, s.status, s.end_ms.unwrap_or(s.start_ms))?;
        store.set_ended(run, server)?;
        out.ended = true;
    }
    Ok(out)
}

/// The run's tags, and what graft knows of it, as MLflow tags.
fn graft_tags(details: &crate::RunDetails) -> Vec<(String, String)> {
    let s = &details.summary;
    let mut tags: Vec<(String, String)> = details
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut put = |k: &str, v: &str| tags.push((k.to_string(), v.to_string()));
    put("mlflow.source.name", "graft");
    put("mlflow.source.type", "LOCAL");
    put("graft.version", &s.graft_version);
    put("graft.run_dir", &s.run_dir);
    if let Some(h) = &s.dataset_hash {
        put("graft.dataset_hash", h);
    }
    if let Some(e) = &s.error {
        put("graft.error", e);
    }
    tags
}
