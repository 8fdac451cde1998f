//! `graft registry`: register a run's model, alias, promote (paired test against the
//! champion), roll back, list and show; each change mirrored to MLflow when it is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use graft_run::paired::{paired, test_outcomes, Paired};
use graft_run::RunDir;
use graft_track::registry::Action;
use graft_track::{short_id, Filter, NewVersion, Status, Store, CHAMPION};

use crate::cli::{
    AliasArgs, PromoteArgs, RegisterArgs, RegistryCommand, RegistryListArgs, RegistryShowArgs,
    RollbackArgs, StoreArgs,
};

pub fn run(command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Register(a) => register(a),
        RegistryCommand::Alias(a) => alias(a),
        RegistryCommand::Promote(a) => promote(a),
        RegistryCommand::Rollback(a) => rollback(a),
        RegistryCommand::List(a) => list(a),
        RegistryCommand::Show(a) => show(a),
    }
}

/// The store the registry lives in, created when new (registering is a first use).
fn open(store: &StoreArgs) -> anyhow::Result<Store> {
    super::runs::open(store)
}

/// Mirror `name` to MLflow when a server is set; a failure is one warning, the change stays.
fn mirror(store: &Store, name: &str) {
    let Some(uri) = crate::tracked::mlflow() else {
        return;
    };
    let sent = graft_track::mlflow::Client::new(&uri)
        .map_err(graft_track::TrackError::from)
        .and_then(|c| graft_track::mlflow::push_model(store, &c, name));
    match sent {
        Ok(p) => {
            for v in &p.created {
                note!("Sent version {v} of {name} to MLflow's registry at {uri}");
            }
            for (alias, remote) in &p.aliases {
                note!("  MLflow: {name}@{alias} → version {remote}");
            }
        }
        Err(e) => note!(
            "warning: {e}\n  the change is kept in {}; `graft runs sync` sends it to MLflow \
             when the server is back",
            store.path().display()
        ),
    }
}

/// The run `spec` names: a run folder (its latest finished training run) or a run id.
fn find_run(store: &Store, spec: &str) -> anyhow::Result<graft_track::RunDetails> {
    let path = Path::new(spec);
    if path.is_dir() {
        let dir = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let runs = store.runs(&Filter {
            status: Some(Status::Finished),
            ..Filter::default()
        })?;
        let found = runs.into_iter().find(|r| {
            Path::new(&r.run_dir) == dir && matches!(r.command.as_str(), "train" | "train heads")
        });
        let Some(run) = found else {
            bail!(
                "{spec} has no finished training run in {} (train it with graft train, or give \
                 a run id from graft runs list)",
                store.path().display()
            );
        };
        return Ok(store.run(&run.id)?);
    }
    let id = store.resolve(spec)?;
    let run = store.run(&id)?;
    if run.summary.status != Status::Finished {
        bail!(
            "run {} is {}, not finished: only a finished run's model can be registered",
            short_id(&id),
            run.summary.status
        );
    }
    Ok(run)
}

fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let run = find_run(&store, &args.run)?;
    let dir = RunDir::new(&run.summary.run_dir);
    let onnx = dir.onnx(graft_run::Precision::Fp32);
    if !dir.is_current(&onnx) {
        bail!(
            "{} is missing or older than the model: a version is the exported model; write it \
             with `graft export --run {}` and register again",
            onnx.display(),
            dir.root().display()
        );
    }
    let onnx_sha256 = graft_data::hash::sha256_file(&onnx)
        .with_context(|| format!("reading {}", onnx.display()))?;
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let config = read(dir.config());
    let card = read(dir.model_card());
    let metrics: BTreeMap<String, f64> = run
        .metrics
        .iter()
        .filter(|(k, _)| !k.starts_with("system/"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let version = store.register(&NewVersion {
        name: &args.name,
        run_id: &run.summary.id,
        run_dir: &run.summary.run_dir,
        dataset_hash: run.summary.dataset_hash.as_deref(),
        onnx_sha256: Some(&onnx_sha256),
        metrics: &metrics,
        config: config.as_deref(),
        card: card.as_deref(),
        files: &graft_run::tracking::model_files(&dir),
    })?;
    let v = store.model_version(&args.name, version)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        say!(
            "Registered {} version {version} from run {} ({})",
            args.name,
            short_id(&run.summary.id),
            dir.root().display()
        );
        say!("  model.onnx sha256 {onnx_sha256}");
        if let Some(h) = &v.dataset_hash {
            say!("  dataset {}", &h[..h.len().min(16)]);
        }
    }
    mirror(&store, &args.name);
    Ok(())
}

fn alias(args: AliasArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let before = store.set_alias(
        &args.name,
        &args.alias,
        args.version,
        Action::Alias,
        false,
        None,
    )?;
    say!(
        "{}@{} → version {}{}",
        args.name,
        args.alias,
        args.version,
        before.map_or(String::new(), |b| format!(" (was {b})"))
    );
    mirror(&store, &args.name);
    Ok(())
}

fn promote(args: PromoteArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha must be between 0 and 1");
    }
    let store = open(&args.store)?;
    let candidate = store.model_version(&args.name, args.version)?;
    let current = store.alias_version(&args.name, CHAMPION)?;
    let (test, reason): (Option<Paired>, String) = match current {
        None => (None, "first champion".to_string()),
        Some(c) if c == args.version => {
            bail!("version {c} of {} is already the champion", args.name)
        }
        Some(c) => {
            let champion = store.model_version(&args.name, c)?;
            let test = test_outcomes(Path::new(&candidate.run_dir)).and_then(|cand| {
                let champ = test_outcomes(Path::new(&champion.run_dir))?;
                paired(&cand, &champ)
            });
            match test {
                Ok(t) => {
                    let summary = format!("version {} vs {c} {}", args.version, t.summary());
                    (Some(t), summary)
                }
                Err(e) if args.force => (None, format!("paired test not run: {e}")),
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "comparing version {} with the champion (version {c}); --force \
                         promotes without the test",
                        args.version
                    )))
                }
            }
        }
    };
    let wins = match (&test, current) {
        (Some(t), _) => t.candidate_wins(args.alpha),
        (None, None) => true,
        (None, Some(_)) => false,
    };
    if !wins && !args.force {
        bail!(
            "version {} does not beat the champion (version {}) at alpha {}: {reason}. \
             Promote anyway with --force (recorded as forced)",
            args.version,
            current.unwrap_or_default(),
            args.alpha
        );
    }
    let forced = !wins;
    store.set_alias(
        &args.name,
        CHAMPION,
        args.version,
        Action::Promote,
        forced,
        Some(&reason),
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "name": args.name,
                "version": args.version,
                "previous": current,
                "forced": forced,
                "reason": reason,
                "paired_test": test,
            }))?
        );
    } else {
        say!(
            "{}@champion → version {}{}",
            args.name,
            args.version,
            current.map_or(String::new(), |c| format!(" (was {c})"))
        );
        say!("  {reason}");
        if forced {
            note!("warning: promoted with --force past the paired test; recorded as forced");
        }
    }
    mirror(&store, &args.name);
    Ok(())
}

fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let current = store.alias_version(&args.name, &args.alias)?;
    let Some(target) = store.rollback_target(&args.name, &args.alias)? else {
        bail!(
            "{}@{} has no earlier holder to roll back to (graft registry show {} lists how it \
             moved)",
            args.name,
            args.alias,
            args.name
        );
    };
    store.set_alias(
        &args.name,
        &args.alias,
        target,
        Action::Rollback,
        false,
        None,
    )?;
    say!(
        "{}@{} → version {target} (rolled back from {})",
        args.name,
        args.alias,
        current.map_or("none".to_string(), |c| c.to_string())
    );
    mirror(&store, &args.name);
    Ok(())
}

fn list(args: RegistryListArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let models = store.models()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(());
    }
    if models.is_empty() {
        say!(
            "No registered models in {} (graft registry register RUN --name NAME)",
            store.path().display()
        );
        return Ok(());
    }
    let mut rows = vec![vec![
        "name".to_string(),
        "versions".into(),
        "aliases".into(),
    ]];
    for m in &models {
        let aliases: Vec<String> = m.aliases.iter().map(|(a, v)| format!("{a}→{v}")).collect();
        rows.push(vec![
            m.name.clone(),
            m.versions.to_string(),
            aliases.join(" "),
        ]);
    }
    super::runs::print_table("", &rows);
    Ok(())
}

fn show(args: RegistryShowArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let versions = store.versions(&args.name)?;
    let events = store.alias_events(&args.name)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "name": args.name,
                "versions": versions,
                "alias_events": events,
            }))?
        );
        return Ok(());
    }
    say!("{}", args.name);
    let mut rows = vec![vec![
        "version".to_string(),
        "run".into(),
        "test_accuracy".into(),
        "test_macro_f1".into(),
        "aliases".into(),
        "model.onnx sha256".into(),
    ]];
    let metric = |v: &graft_track::ModelVersion, k: &str| {
        v.metrics
            .get(k)
            .map_or("-".to_string(), |x| format!("{x:.4}"))
    };
    for v in &versions {
        rows.push(vec![
            v.version.to_string(),
            short_id(&v.run_id).to_string(),
            metric(v, "test_accuracy"),
            metric(v, "test_macro_f1"),
            v.aliases.join(" "),
            v.onnx_sha256
                .as_deref()
                .map_or("-", |h| &h[..h.len().min(16)])
                .to_string(),
        ]);
    }
    super::runs::print_table("  ", &rows);
    if !events.is_empty() {
        say!("Alias history:");
        for e in &events {
            say!(
                "  {}  {} {}@{} → {}{}{}",
                super::runs::when(e.time_ms),
                e.action,
                args.name,
                e.alias,
                e.version,
                e.previous.map_or(String::new(), |p| format!(" (was {p})")),
                if e.forced { " FORCED" } else { "" }
            );
            if let Some(r) = &e.reason {
                say!("      {r}");
            }
        }
    }
    Ok(())
}
