//! Kubernetes, on paper: the plan as an Indexed Job (`completionMode: Indexed`; the pod's
//! `JOB_COMPLETION_INDEX` is its shard) and a Job that merges and trains after it. Written
//! for a cluster we cannot run here; the tests check them against Kubernetes' schema.

use serde_json::{json, Value};

use crate::slurm::line;
use crate::{ClusterError, ExtractPlan, Then};

/// Where the pods run and what they get.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// The container image with graft, ONNX Runtime's library and the weights cache.
    pub image: String,
    /// The PersistentVolumeClaim holding the run folder (ReadWriteMany: every pod mounts it).
    pub claim: String,
    /// Where the claim is mounted in the pods: the run folder's path must be the same there.
    pub mount: String,
    pub namespace: Option<String>,
    /// CPU and memory requested per extraction pod (`2`, `4Gi`), and GPUs (`nvidia.com/gpu`).
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub gpus: Option<u32>,
    /// Retries of one failed index before it counts as failed.
    pub retries: u32,
}

/// A DNS-1123 label from `name` (lower case, digits and '-', at most 63 characters).
pub fn label(name: &str) -> String {
    let mut s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    s.trim_matches('-').to_string()
}

fn metadata(name: &str, run: &str, o: &K8sOptions) -> Value {
    let mut m = json!({
        "name": name,
        "labels": {"app.kubernetes.io/name": "graft", "graft/run": label(run)},
    });
    if let Some(ns) = &o.namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn pod(container: Value, o: &K8sOptions) -> Value {
    json!({
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "runs", "persistentVolumeClaim": {"claimName": o.claim}}],
        }
    })
}

fn container(name: &str, plan: &ExtractPlan, script: String, o: &K8sOptions, heavy: bool) -> Value {
    let mut c = json!({
        "name": name,
        "image": o.image,
        "workingDir": plan.workdir.to_string_lossy(),
        "command": ["/bin/sh", "-c", script],
        "volumeMounts": [{"name": "runs", "mountPath": o.mount}],
    });
    if heavy {
        let mut requests = serde_json::Map::new();
        if let Some(cpu) = &o.cpu {
            requests.insert("cpu".into(), json!(cpu));
        }
        if let Some(m) = &o.memory {
            requests.insert("memory".into(), json!(m));
        }
        let mut resources = serde_json::Map::new();
        if !requests.is_empty() {
            resources.insert("requests".into(), Value::Object(requests));
        }
        if let Some(g) = o.gpus {
            resources.insert("limits".into(), json!({"nvidia.com/gpu": g}));
        }
        if !resources.is_empty() {
            c["resources"] = Value::Object(resources);
        }
    }
    c
}

/// The extraction Job and the Job after it, as YAML.
pub fn extract_manifests(
    plan: &ExtractPlan,
    o: &K8sOptions,
) -> Result<(String, String), ClusterError> {
    let base = label(&format!("graft-extract-{}", plan.name));
    let manifest = plan.run.manifest();
    let m = crate::slurm::shell_word(&manifest.to_string_lossy());
    let extract = format!(
        "if [ ! -f {m} ]; then echo \"graft: pod $(hostname) cannot see {m}: mount the run \
         folder's volume at the same path in every pod\" >&2; exit 2; fi; exec {}",
        line(&plan.extract_command("${JOB_COMPLETION_INDEX}"))
    );
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(&base, &plan.name, o),
        "spec": {
            "completionMode": "Indexed",
            "completions": plan.tasks,
            "parallelism": plan.tasks,
            "backoffLimitPerIndex": o.retries,
            "template": pod(container("extract", plan, extract, o, true), o),
        }
    });
    let collect: Vec<String> = plan.collect_commands().iter().map(|c| line(c)).collect();
    let collect_name = label(&format!("graft-collect-{}", plan.name));
    let after = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(&collect_name, &plan.name, o),
        "spec": {
            "backoffLimit": o.retries,
            "template": pod(container("collect", plan, collect.join(" && "), o, false), o),
        }
    });
    let yaml = |v: &Value| {
        serde_yaml_ng::to_string(v).map_err(|e| ClusterError::Invalid(format!("YAML: {e}")))
    };
    let header = |what: &str| {
        format!(
            "# Written by `graft cluster k8s extract` for {}: {what}\n",
            plan.run.root().display()
        )
    };
    let then = if plan.then == Then::Train {
        "checks the cache, then trains the heads and writes the report"
    } else {
        "checks the cache"
    };
    Ok((
        header(&format!(
            "pod i extracts shard i/{} (JOB_COMPLETION_INDEX).",
            plan.tasks
        )) + &yaml(&job)?,
        header(&format!("after {base} completed, {then}.")) + &yaml(&after)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_dns_names() {
        assert_eq!(
            label("graft-extract-Photos_MobileNet v2"),
            "graft-extract-photos-mobilenet-v2"
        );
        assert_eq!(label(&"x".repeat(80)).len(), 63);
    }
}
