//! A registered model as `graft serve --model` finds it: in the registry of RUNS/graft.db
//! (NAME@ALIAS, NAME/VERSION, NAME), or on the MLflow server (models:/NAME@ALIAS), whose run
//! files are fetched once into the cache and checked against the version's ONNX SHA-256.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use graft_serve::Registered;
use graft_track::mlflow::{Client, RemoteVersion};
use graft_track::{ModelRef, Store};

/// The run folder to serve for `spec`, and what the registry calls it.
pub fn locate(spec: &str, runs: &Path) -> anyhow::Result<(PathBuf, Registered)> {
    let model = ModelRef::parse(spec)?;
    let alias = match &model {
        ModelRef::Alias { alias, .. } => Some(alias.clone()),
        _ => None,
    };
    if spec.trim().starts_with("models:/") {
        let uri = crate::tracked::mlflow().context(
            "models:/… names a model in MLflow's registry: give the server with --mlflow URI \
             (or MLFLOW_TRACKING_URI), or drop models:/ to use the local registry",
        )?;
        let client = Client::new(&uri)?;
        let version = remote_version(&client, &model)?;
        let dir = fetch(&client, &version)?;
        return Ok((
            dir,
            Registered {
                name: version.name.clone(),
                version: version.version.clone(),
                alias,
                registry: client.uri().to_string(),
            },
        ));
    }
    let db = crate::tracked::db_in(runs);
    let store = Store::open_existing(&db)?;
    let v = store.resolve_model(&model)?;
    let dir = PathBuf::from(&v.run_dir);
    let onnx = dir.join("model.onnx");
    if let Some(want) = &v.onnx_sha256 {
        let have = graft_data::hash::sha256_file(&onnx).with_context(|| {
            format!(
                "reading {} (version {} of {})",
                onnx.display(),
                v.version,
                v.name
            )
        })?;
        if &have != want {
            bail!(
                "{} has changed since version {} of {} was registered (sha256 {} there, {} \
                 now): it was exported again; register the new export as a new version",
                onnx.display(),
                v.version,
                v.name,
                &want[..12],
                &have[..12]
            );
        }
    }
    Ok((
        dir,
        Registered {
            name: v.name.clone(),
            version: v.version.to_string(),
            alias,
            registry: db.display().to_string(),
        },
    ))
}

fn remote_version(client: &Client, model: &ModelRef) -> anyhow::Result<RemoteVersion> {
    Ok(match model {
        ModelRef::Alias { name, alias } => client.alias(name, alias)?,
        ModelRef::Version { name, version } => client.version(name, &version.to_string())?,
        ModelRef::Latest { name } => {
            let mut all = client.versions(name)?;
            all.sort_by_key(|v| v.version.parse::<i64>().unwrap_or(0));
            all.pop()
                .with_context(|| format!("MLflow's registry has no version of {name}"))?
        }
    })
}

/// The version's run files, fetched from MLflow into the cache (once per version).
fn fetch(client: &Client, v: &RemoteVersion) -> anyhow::Result<PathBuf> {
    let safe: String = v
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = graft_model::fetch::cache_dir()
        .join("mlflow-models")
        .join(format!(
            "{safe}-v{}-{}",
            v.version,
            graft_track::short_id(&v.run_id)
        ));
    let want = v.tag("graft.onnx_sha256").map(str::to_string);
    let onnx = dir.join("model.onnx");
    if onnx.is_file() {
        let have = graft_data::hash::sha256_file(&onnx).ok();
        if want.is_none() || have == want {
            return Ok(dir);
        }
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    // The version's files: its source, MLflow's `runs:/RUN/model` layout.
    let prefix = format!("{}/", graft_track::mlflow::MODEL_PATH);
    let mut files: Vec<String> = client
        .list_artifacts(&v.run_id, graft_track::mlflow::MODEL_PATH)?
        .into_iter()
        .filter(|f| !f.is_dir)
        .filter_map(|f| f.path.strip_prefix(&prefix).map(str::to_string))
        .collect();
    if !files.iter().any(|f| f == "model.onnx") {
        bail!(
            "version {} of {} on MLflow has no model.onnx in {} (was it registered by graft?)",
            v.version,
            v.name,
            v.source
        );
    }
    // model.onnx last: it must be at least as new as model.json to count as current.
    files.sort_by_key(|f| f == "model.onnx");
    eprintln!(
        "Fetching version {} of {} from MLflow ({} files)",
        v.version,
        v.name,
        files.len()
    );
    for f in &files {
        client.download(&v.source, f, &partial.join(f))?;
    }
    if let Some(want) = &want {
        let have = graft_data::hash::sha256_file(&partial.join("model.onnx"))?;
        if &have != want {
            bail!(
                "model.onnx of version {} of {} fetched from MLflow has sha256 {have}, not the \
                 {want} it was registered with",
                v.version,
                v.name
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))?;
    Ok(dir)
}
