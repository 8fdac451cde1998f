//! `graft runs sync`: send an MLflow server what it lacks of the store's runs.

use anyhow::Context as _;
use graft_track::mlflow::{push_model, push_run, Client, Pushed};
use graft_track::short_id;

use crate::cli::RunsSyncArgs;

pub fn run(args: RunsSyncArgs) -> anyhow::Result<()> {
    let uri = crate::tracked::mlflow().context(
        "no MLflow server to send to: give --mlflow http://HOST:PORT (or set MLFLOW_TRACKING_URI)",
    )?;
    let client = Client::new(&uri)?;
    let store = super::runs::open(&args.store)?;
    let ids: Vec<String> = if args.ids.is_empty() {
        store.unsent_runs(client.uri())?
    } else {
        args.ids
            .iter()
            .map(|id| store.resolve(id))
            .collect::<Result<_, _>>()?
    };
    let mut pushed: Vec<Pushed> = Vec::new();
    for id in &ids {
        let p = push_run(&store, &client, id).with_context(|| {
            format!(
                "sending run {} to MLflow (what was sent is kept; run graft runs sync again)",
                short_id(id)
            )
        })?;
        if !args.json {
            print_pushed(&p);
        }
        pushed.push(p);
    }
    // The registry follows its runs (a version needs its run on the server).
    let mut models = Vec::new();
    if args.ids.is_empty() {
        for m in store.models()? {
            let p = push_model(&store, &client, &m.name)
                .with_context(|| format!("sending registered model {} to MLflow", m.name))?;
            if !args.json {
                for v in &p.created {
                    say!("{} version {v} → MLflow's registry", p.name);
                }
            }
            models.push(p);
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "runs": pushed, "models": models }))?
        );
    } else if pushed.iter().all(Pushed::is_empty) && models.iter().all(|m| m.created.is_empty()) {
        say!(
            "MLflow at {} has every run of {}",
            client.uri(),
            store.path().display()
        );
    }
    Ok(())
}

fn print_pushed(p: &Pushed) {
    if p.is_empty() {
        return;
    }
    let verb = if p.created { "created" } else { "updated" };
    say!(
        "{} → MLflow run {} ({verb}): {} metric values, {} params, {} tags, {} files{}",
        short_id(&p.run),
        p.remote_id,
        p.metrics,
        p.params,
        p.tags,
        p.files,
        if p.ended { ", ended" } else { "" }
    );
    if !p.skipped_files.is_empty() {
        note!(
            "  not sent (changed or gone since the run): {}",
            p.skipped_files.join(", ")
        );
    }
}
