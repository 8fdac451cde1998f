//! MLflow's REST API, the calls graft makes: experiments, runs, batched logging, the artifact
//! proxy (`mlflow-artifacts:` roots, `mlflow server --serve-artifacts`, its default), and the
//! model registry with aliases.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::store::{Metric, Status};

/// MLflow's own limits on one `runs/log-batch` call.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
/// Longest parameter value MLflow accepts, and longest tag value.
pub const MAX_PARAM_CHARS: usize = 6000;
pub const MAX_TAG_CHARS: usize = 8000;

/// What can go wrong talking to an MLflow server.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("{0:?} is not an MLflow tracking URI: give http://HOST:PORT (or https://…)")]
    BadUri(String),
    #[error("MLflow at {uri} did not answer: {message}")]
    Unreachable { uri: String, message: String },
    #[error("MLflow at {uri} refused {endpoint} ({status} {code}): {message}")]
    Api {
        uri: String,
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("MLflow at {uri} answered {endpoint} with something graft cannot read: {message}")]
    BadResponse {
        uri: String,
        endpoint: String,
        message: String,
    },
    #[error(
        "MLflow at {uri} stores artifacts at {artifact_uri}, which graft cannot reach; start the \
         server with --serve-artifacts (its default since MLflow 2) so files go through it"
    )]
    NotProxied { uri: String, artifact_uri: String },
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl MlflowError {
    /// The server answered that the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == "RESOURCE_DOES_NOT_EXIST")
            || matches!(self, MlflowError::Api { status: 404, .. })
    }

    fn is_already_there(&self) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == "RESOURCE_ALREADY_EXISTS")
    }
}

/// A run on the server, as graft needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteRun {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
    #[serde(default)]
    pub status: String,
}

/// A registered model version on the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl RemoteVersion {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// A file in a run's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteFile {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// One MLflow tracking server.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("uri", &self.base).finish()
    }
}

impl Client {
    /// A client of the server at `uri` (`http://127.0.0.1:5000`). Nothing is sent yet.
    pub fn new(uri: &str) -> Result<Client, MlflowError> {
        let base = uri.trim().trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty()) {
            return Err(MlflowError::BadUri(uri.to_string()));
        }
        // Short waits for an answer: a server that is gone must not hold a run up. Bodies
        // (model files) may take as long as they take.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Client { base, agent })
    }

    /// The tracking URI, as the store keys what each server has.
    pub fn uri(&self) -> &str {
        &self.base
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/{endpoint}", self.base)
    }

    fn unreachable(&self, e: ureq::Error) -> MlflowError {
        MlflowError::Unreachable {
            uri: self.base.clone(),
            message: e.to_string(),
        }
    }

    /// The body of an answer, or the server's error.
    fn answer(
        &self,
        endpoint: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, MlflowError> {
        let mut resp = result.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let value: Value = if text.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": text }))
        };
        if status >= 400 {
            let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default();
            return Err(MlflowError::Api {
                uri: self.base.clone(),
                endpoint: endpoint.to_string(),
                status,
                code: field("error_code").to_string(),
                message: field("message").chars().take(500).collect(),
            });
        }
        Ok(value)
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let result = self
            .agent
            .post(self.url(endpoint))
            .content_type("application/json")
            .send(body.to_string());
        self.answer(endpoint, result)
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let mut req = self.agent.get(self.url(endpoint));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.answer(endpoint, req.call())
    }

    fn delete(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let result = self
            .agent
            .delete(self.url(endpoint))
            .force_send_body()
            .content_type("application/json")
            .send(body.to_string());
        self.answer(endpoint, result)
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        value: &Value,
        field: &str,
    ) -> Result<T, MlflowError> {
        let part = value.get(field).cloned().unwrap_or(Value::Null);
        serde_json::from_value(part).map_err(|e| MlflowError::BadResponse {
            uri: self.base.clone(),
            endpoint: endpoint.to_string(),
            message: format!("{field}: {e}"),
        })
    }

    /// The id of experiment `name`, created when the server has none by that name.
    pub fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        let get = || {
            let v = self.get(
                "mlflow/experiments/get-by-name",
                &[("experiment_name", name)],
            )?;
            let exp: Value = self.parse("mlflow/experiments/get-by-name", &v, "experiment")?;
            self.parse::<String>("mlflow/experiments/get-by-name", &exp, "experiment_id")
        };
        match get() {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        match self.post("mlflow/experiments/create", &json!({ "name": name })) {
            Ok(v) => self.parse("mlflow/experiments/create", &v, "experiment_id"),
            // Another client created it in between.
            Err(e) if e.is_already_there() => get(),
            Err(e) => Err(e),
        }
    }

    /// The run of `experiment_id` whose tag `key` is `value` (graft's own run id), if any.
    pub fn find_run(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<RemoteRun>, MlflowError> {
        let endpoint = "mlflow/runs/search";
        let v = self.post(
            endpoint,
            &json!({
                "experiment_ids": [experiment_id],
                "filter": format!("tags.`{key}` = '{}'", value.replace('\'', "")),
                "max_results": 1,
            }),
        )?;
        let runs: Vec<Value> = v
            .get("runs")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default();
        runs.first()
            .map(|r| self.parse(endpoint, r, "info"))
            .transpose()
    }

    /// A new run, `RUNNING`, with `tags`.
    pub fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RemoteRun, MlflowError> {
        let endpoint = "mlflow/runs/create";
        let v = self.post(
            endpoint,
            &json!({
                "experiment_id": experiment_id,
                "run_name": name,
                "start_time": start_ms,
                "tags": key_values(tags, MAX_TAG_CHARS),
            }),
        )?;
        let run: Value = self.parse(endpoint, &v, "run")?;
        self.parse(endpoint, &run, "info")
    }

    /// A run by id.
    pub fn get_run(&self, run_id: &str) -> Result<Value, MlflowError> {
        let v = self.get("mlflow/runs/get", &[("run_id", run_id)])?;
        Ok(v.get("run").cloned().unwrap_or(Value::Null))
    }

    /// One `runs/log-batch` call; the caller keeps within MLflow's limits.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|m| {
                json!({ "key": m.key, "value": m.value, "timestamp": m.time_ms, "step": m.step })
            })
            .collect();
        self.post(
            "mlflow/runs/log-batch",
            &json!({
                "run_id": run_id,
                "metrics": metrics,
                "params": key_values(params, MAX_PARAM_CHARS),
                "tags": key_values(tags, MAX_TAG_CHARS),
            }),
        )
        .map(drop)
    }

    /// End a run on the server with graft's status.
    pub fn end_run(&self, run_id: &str, status: Status, end_ms: i64) -> Result<(), MlflowError> {
        self.post(
            "mlflow/runs/update",
            &json!({ "run_id": run_id, "status": run_status(status), "end_time": end_ms }),
        )
        .map(drop)
    }

    /// The proxy URL of `path` under a run's artifact root.
    fn artifact_url(&self, artifact_uri: &str, path: &str) -> Result<String, MlflowError> {
        let root = artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .map(|r| r.trim_start_matches('/'))
            .ok_or_else(|| MlflowError::NotProxied {
                uri: self.base.clone(),
                artifact_uri: artifact_uri.to_string(),
            })?;
        let encoded: Vec<String> = path.split('/').map(encode_segment).collect();
        Ok(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/{}",
            self.base,
            encoded.join("/")
        ))
    }

    /// Upload `file` as `path` under a run's artifact root (replacing what is there).
    pub fn upload(&self, artifact_uri: &str, path: &str, file: &Path) -> Result<(), MlflowError> {
        let url = self.artifact_url(artifact_uri, path)?;
        let f = std::fs::File::open(file).map_err(|source| MlflowError::File {
            path: file.to_path_buf(),
            source,
        })?;
        let result = self
            .agent
            .put(url)
            .content_type("application/octet-stream")
            .send(f);
        self.answer("mlflow-artifacts/artifacts", result).map(drop)
    }

    /// Download `path` of a run's artifacts to `dest`.
    pub fn download(&self, artifact_uri: &str, path: &str, dest: &Path) -> Result<(), MlflowError> {
        let url = self.artifact_url(artifact_uri, path)?;
        let endpoint = "mlflow-artifacts/artifacts";
        let mut resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| self.unreachable(e))?;
        if resp.status().as_u16() >= 400 {
            return self.answer(endpoint, Ok(resp)).map(drop);
        }
        let file_err = |source| MlflowError::File {
            path: dest.to_path_buf(),
            source,
        };
        let mut out = std::fs::File::create(dest).map_err(file_err)?;
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        std::io::copy(&mut reader, &mut out).map_err(file_err)?;
        Ok(())
    }

    /// The files directly under `path` of a run's artifacts.
    pub fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<RemoteFile>, MlflowError> {
        let v = self.get(
            "mlflow/artifacts/list",
            &[("run_id", run_id), ("path", path)],
        )?;
        Ok(v.get("files")
            .cloned()
            .and_then(|f| serde_json::from_value(f).ok())
            .unwrap_or_default())
    }

    /// Every value of one metric of a run.
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, MlflowError> {
        let v = self.get(
            "mlflow/metrics/get-history",
            &[
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ],
        )?;
        let items: Vec<Value> = v
            .get("metrics")
            .cloned()
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default();
        Ok(items
            .iter()
            .map(|m| Metric {
                key: key.to_string(),
                value: m.get("value").and_then(Value::as_f64).unwrap_or(f64::NAN),
                step: m.get("step").and_then(Value::as_i64).unwrap_or(0),
                time_ms: m.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
            })
            .collect())
    }

    /// Create registered model `name` unless the server has it.
    pub fn ensure_model(&self, name: &str) -> Result<(), MlflowError> {
        match self.post("mlflow/registered-models/create", &json!({ "name": name })) {
            Err(e) if e.is_already_there() => Ok(()),
            other => other.map(drop),
        }
    }

    /// The versions of registered model `name`.
    pub fn versions(&self, name: &str) -> Result<Vec<RemoteVersion>, MlflowError> {
        let endpoint = "mlflow/model-versions/search";
        let v = self.get(
            endpoint,
            &[
                ("filter", &format!("name = '{}'", name.replace('\'', ""))),
                ("max_results", "10000"),
            ],
        )?;
        match v.get("model_versions") {
            Some(list) => {
                serde_json::from_value(list.clone()).map_err(|e| MlflowError::BadResponse {
                    uri: self.base.clone(),
                    endpoint: endpoint.to_string(),
                    message: e.to_string(),
                })
            }
            None => Ok(Vec::new()),
        }
    }

    /// A new version of `name` from a run's files.
    pub fn create_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[(String, String)],
        description: &str,
    ) -> Result<RemoteVersion, MlflowError> {
        let endpoint = "mlflow/model-versions/create";
        let v = self.post(
            endpoint,
            &json!({
                "name": name,
                "source": source,
                "run_id": run_id,
                "tags": key_values(tags, MAX_TAG_CHARS),
                "description": truncate(description, 4000),
            }),
        )?;
        self.parse(endpoint, &v, "model_version")
    }

    /// Point `alias` of `name` at `version`.
    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), MlflowError> {
        self.post(
            "mlflow/registered-models/alias",
            &json!({ "name": name, "alias": alias, "version": version }),
        )
        .map(drop)
    }

    /// Remove `alias` of `name` (absent is fine).
    pub fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        match self.delete(
            "mlflow/registered-models/alias",
            &json!({ "name": name, "alias": alias }),
        ) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// The version `alias` of `name` points at.
    pub fn alias(&self, name: &str, alias: &str) -> Result<RemoteVersion, MlflowError> {
        let endpoint = "mlflow/registered-models/alias";
        let v = self.get(endpoint, &[("name", name), ("alias", alias)])?;
        self.parse(endpoint, &v, "model_version")
    }

    /// Version `version` of `name`.
    pub fn version(&self, name: &str, version: &str) -> Result<RemoteVersion, MlflowError> {
        let endpoint = "mlflow/model-versions/get";
        let v = self.get(endpoint, &[("name", name), ("version", version)])?;
        self.parse(endpoint, &v, "model_version")
    }
}

/// MLflow's name for a run status.
pub fn run_status(status: Status) -> &'static str {
    match status {
        Status::Running => "RUNNING",
        Status::Finished => "FINISHED",
        Status::Failed => "FAILED",
        Status::Killed => "KILLED",
    }
}

fn key_values(pairs: &[(String, String)], max: usize) -> Vec<Value> {
    pairs
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": truncate(v, max) }))
        .collect()
}

/// At most `max` characters (MLflow refuses longer values; a long error message is cut).
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One path segment, percent-encoded except for what URLs carry as is.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_must_be_http() {
        assert!(Client::new("http://127.0.0.1:5000/").is_ok());
        assert_eq!(
            Client::new("http://127.0.0.1:5000/")
                .map(|c| c.uri().to_string())
                .ok(),
            Some("http://127.0.0.1:5000".to_string())
        );
        assert!(matches!(Client::new("mlruns"), Err(MlflowError::BadUri(_))));
        assert!(matches!(
            Client::new("http://"),
            Err(MlflowError::BadUri(_))
        ));
    }

    #[test]
    fn artifact_paths_go_through_the_proxy() {
        let c = Client::new("http://h:1").expect("client");
        let url = c
            .artifact_url("mlflow-artifacts:/1/abc/artifacts", "finetune/a b.png")
            .expect("url");
        assert_eq!(
            url,
            "http://h:1/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/finetune/a%20b.png"
        );
        assert!(matches!(
            c.artifact_url("s3://bucket/1/abc", "x"),
            Err(MlflowError::NotProxied { .. })
        ));
    }

    #[test]
    fn long_values_are_cut_at_mlflows_limit() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
