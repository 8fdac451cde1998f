//! `graft cluster`: a run's extraction as a Slurm job array (graft-cluster), and its status.

use std::path::PathBuf;

use anyhow::Context as _;
use graft_cluster::slurm::{self, SubmitOptions};
use graft_cluster::{missing_shards, Book, ExtractPlan, SubmissionKind, Then};
use graft_run::settings::ClusterConfig;
use graft_run::{RunDir, Settings};

use crate::cli::{
    ClusterCommand, ClusterStatusArgs, K8sCommand, K8sExtractArgs, ResourceArgs, SlurmAblateArgs,
    SlurmCommand, SlurmExtractArgs, SlurmResumeArgs, SlurmTuneArgs, ThenArg,
};
use crate::config::{Config, Resolve};
use crate::terminal::Terminal;

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Slurm(SlurmCommand::Extract(a)) => extract(*a),
        ClusterCommand::Slurm(SlurmCommand::Resume(a)) => resume(a),
        ClusterCommand::Slurm(SlurmCommand::Tune(a)) => tune(*a),
        ClusterCommand::Slurm(SlurmCommand::Ablate(a)) => ablate(*a),
        ClusterCommand::Status(a) => status(a),
        ClusterCommand::K8s(K8sCommand::Extract(a)) => k8s_extract(*a),
    }
}

/// Flags over `[cluster]`.
fn apply(resources: &ResourceArgs, c: &mut ClusterConfig) {
    let set = |v: &Option<String>, slot: &mut Option<String>| {
        if v.is_some() {
            slot.clone_from(v);
        }
    };
    set(&resources.partition, &mut c.partition);
    set(&resources.account, &mut c.account);
    set(&resources.time, &mut c.time);
    set(&resources.mem, &mut c.mem);
    set(&resources.gres, &mut c.gres);
    if resources.cpus.is_some() {
        c.cpus = resources.cpus;
    }
}

fn graft_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(std::path::absolute(&p)?),
        None => std::env::current_exe().context("finding this graft binary (give --graft PATH)"),
    }
}

fn plan_for(
    cfg: &Settings,
    run: RunDir,
    graft: Option<PathBuf>,
    then: Then,
) -> anyhow::Result<ExtractPlan> {
    let workdir = std::env::current_dir()?;
    let run = RunDir::new(std::path::absolute(run.root())?);
    let mut plan = ExtractPlan::new(cfg, run, graft_binary(graft)?, workdir, then)?;
    plan.global = crate::tracked::global_flags();
    Ok(plan)
}

fn extract(args: SlurmExtractArgs) -> anyhow::Result<()> {
    let mut cfg = Config::resolve(&args.pipeline)?;
    apply(&args.resources, &mut cfg.cluster);
    if args.tasks.is_some() {
        cfg.cluster.tasks = args.tasks;
    }
    let then = match args.then {
        ThenArg::Train => Then::Train,
        ThenArg::None => Then::Nothing,
    };
    if let graft_model::Encoder::Onnx(o) = &cfg.encoder {
        anyhow::bail!(
            "graft cluster extracts with graft's own encoders; {} is an ONNX file: run \
             `graft train` with it on one machine, or `graft extract --shard i/N` on each",
            o.onnx.display()
        );
    }
    // The tasks read the weights from the shared cache: fetch them once, here.
    graft_run::pipeline::ensure_weights(&cfg.encoder, &Terminal)?;
    let run = graft_run::pipeline::prepare_only(&cfg, &Terminal)?;
    let plan = plan_for(&cfg, run, args.submit.graft, then)?;
    if plan.ready_cache()? {
        note!("the run's feature cache was made from other images or layout: cleared");
    }
    let scripts = slurm::write_scripts(&plan)?;
    if wrote(&scripts, args.submit.dry_run) {
        return Ok(());
    }
    let submitted = slurm::submit(
        &plan,
        &scripts,
        None,
        SubmitOptions {
            hold: args.submit.hold,
        },
    )
    .with_context(|| {
        format!(
            "submitting; the scripts are in {} (--dry-run writes them without submitting)",
            plan.run.cluster().display()
        )
    })?;
    report(&plan, &submitted, args.submit.hold);
    Ok(())
}

/// Say which scripts were written and, for a dry run, how to submit them by hand; whether
/// it was a dry run.
fn wrote(scripts: &slurm::Scripts, dry_run: bool) -> bool {
    say!("Wrote {}", scripts.extract.display());
    say!("Wrote {}", scripts.collect.display());
    if dry_run {
        say!("Submit them with:");
        say!("  id=$(sbatch --parsable {})", scripts.extract.display());
        say!(
            "  sbatch --dependency=afterok:$id --kill-on-invalid-dep=yes {}",
            scripts.collect.display()
        );
    }
    dry_run
}

fn report(plan: &ExtractPlan, s: &slurm::Submitted, hold: bool) {
    if let Some(id) = &s.extract {
        say!(
            "Submitted job {id}: {} extraction task(s), shard(s) {} of {}{}",
            s.array.len(),
            slurm::array_spec(&s.array),
            plan.tasks,
            if hold {
                format!(" (held: scontrol release {id})")
            } else {
                String::new()
            }
        );
    }
    say!(
        "Submitted job {}: {} after them",
        s.collect,
        if plan.then == Then::Train {
            "merge check + head sweep + eval"
        } else {
            "merge check"
        }
    );
    say!("Logs: {}", plan.run.cluster().join("logs").display());
    say!("Next: graft cluster status {}", plan.run.root().display());
}

fn resume(args: SlurmResumeArgs) -> anyhow::Result<()> {
    let run = RunDir::new(&args.run);
    let mut cfg = Settings::of_run(&run)?;
    apply(&args.resources, &mut cfg.cluster);
    let book = Book::load(&run)?.with_context(|| {
        format!(
            "{} has no cluster jobs on record; start with graft cluster slurm extract",
            run.root().display()
        )
    })?;
    if book.tasks == 0 {
        anyhow::bail!(
            "{} has no extraction array on record (only tune or ablate arrays); \
             graft cluster slurm extract starts one",
            run.root().display()
        );
    }
    cfg.cluster.tasks = Some(book.tasks);
    let then = if std::fs::read_to_string(run.cluster().join("collect.sbatch"))
        .is_ok_and(|s| s.contains(" train --config "))
    {
        Then::Train
    } else {
        Then::Nothing
    };
    let plan = plan_for(&cfg, run, args.submit.graft, then)?;
    let missing = missing_shards(&plan.run, plan.tasks)?;
    if args.submit.dry_run {
        slurm::write_scripts(&plan)?;
        say!(
            "Missing shards: {}",
            if missing.is_empty() {
                "none".into()
            } else {
                slurm::array_spec(&missing)
            }
        );
        return Ok(());
    }
    let submitted = slurm::resume(
        &plan,
        SubmitOptions {
            hold: args.submit.hold,
        },
    )?;
    if submitted.extract.is_none() {
        say!("Every shard is extracted; only the job after them is resubmitted.");
    }
    report(&plan, &submitted, args.submit.hold);
    Ok(())
}

fn status(args: ClusterStatusArgs) -> anyhow::Result<()> {
    let run = RunDir::new(&args.run);
    let book = Book::load(&run)?.with_context(|| {
        format!(
            "{} has no cluster jobs on record (no {})",
            run.root().display(),
            Book::path(&run).display()
        )
    })?;
    if book.tasks > 0 {
        say!("{}: {} shard(s)", run.root().display(), book.tasks);
        cache_progress(&run, book.tasks)?;
    }
    arrays_progress(&run, &book);
    match slurm::queue(&book.job_ids()) {
        Ok(jobs) if jobs.is_empty() => say!("No job of this run is in Slurm's queue any more."),
        Ok(jobs) => {
            for j in jobs {
                let why = if j.reason.is_empty() || j.reason == "None" {
                    String::new()
                } else {
                    format!(" ({})", j.reason)
                };
                say!("  job {:<14} {}{why}", j.id, j.state);
            }
        }
        Err(e) => note!("cannot read Slurm's queue: {e}"),
    }
    if run.model_meta().is_file() && run.report().is_file() {
        say!("Trained: {}", run.report().display());
    }
    Ok(())
}

/// Each tune's or ablation's array: its units written so far, and whether the summary is.
fn arrays_progress(run: &RunDir, book: &Book) {
    let mut seen = std::collections::BTreeSet::new();
    for s in &book.submissions {
        let (what, units, summary) = match s.kind {
            SubmissionKind::TuneTrials => ("tune", "trials", "tune.json"),
            SubmissionKind::AblateCells => ("ablate", "cells", "ablation.json"),
            _ => continue,
        };
        let Some(folder) = &s.folder else { continue };
        if !seen.insert((what, folder.clone())) {
            continue;
        }
        let dir = run.root().join(what).join(folder);
        let done = std::fs::read_dir(dir.join(units)).map_or(0, |d| d.count());
        say!(
            "{what} {folder}: {done} of {} {units} written{}",
            s.array.as_deref().map_or(0, slurm::array_size),
            if dir.join(summary).is_file() {
                format!("; summary: {}", dir.join(summary).display())
            } else {
                String::new()
            }
        );
    }
}

fn cache_progress(run: &RunDir, tasks: usize) -> anyhow::Result<()> {
    let dir = run.features();
    if !dir.join(graft_features::format::HEADER_FILE).is_file() {
        say!("Cache: no task has started writing {}", dir.display());
        return Ok(());
    }
    let header = graft_features::format::read_header(&dir)?;
    let done = (0..header.chunks())
        .filter(|&k| graft_features::format::chunk_complete(&dir, &header, k))
        .count();
    let missing = missing_shards(run, tasks)?;
    say!(
        "Cache: {done} of {} chunks{}",
        header.chunks(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                "; shard(s) still missing chunks: {}",
                slurm::array_spec(&missing)
            )
        }
    );
    Ok(())
}

/// Trials at once on the cluster when neither --parallel nor [tune] parallel says.
const CLUSTER_PARALLEL: usize = 4;

fn tune(args: SlurmTuneArgs) -> anyhow::Result<()> {
    let t = &args.search;
    let mut config = crate::cmd::tune::resolve(t, None)?;
    if config.parallel == 0 {
        config.parallel = CLUSTER_PARALLEL;
    }
    let run = RunDir::new(std::path::absolute(&t.run)?);
    let mut cfg = Settings::of_run(&run)?;
    apply(&args.resources, &mut cfg.cluster);
    let space = config.space()?;
    let trials = graft_run::tune::trials_asked(&config, &space);
    let name = t.name.clone().unwrap_or_else(|| config.method.to_string());
    graft_run::files::check_plain_name(&name, "tune")?;
    if t.fresh {
        graft_run::files::output_folder(&run.root().join("tune").join(&name), true)?;
    }
    let root = run.root().to_string_lossy().into_owned();
    let mut tune_args = vec![
        "--run".to_string(),
        root,
        "--name".into(),
        name.clone(),
        "--method".into(),
        config.method.to_string(),
        "--trials".into(),
        trials.to_string(),
        "--parallel".into(),
        config.parallel.to_string(),
        "--seed".into(),
        config.seed.to_string(),
    ];
    if let Some(c) = &t.config {
        tune_args.extend([
            "--config".into(),
            std::path::absolute(c)?.to_string_lossy().into_owned(),
        ]);
    }
    let plan = slurm::ArrayPlan {
        kind: slurm::ArrayKind::Tune,
        graft: graft_binary(args.submit.graft)?,
        workdir: std::env::current_dir()?,
        run,
        name,
        tasks: trials,
        throttle: Some(config.parallel),
        args: tune_args,
        global: crate::tracked::global_flags(),
        resources: cfg.cluster,
    };
    submit_array(&plan, args.submit.dry_run, args.submit.hold, "trial(s)")
}

fn ablate(args: SlurmAblateArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let run = RunDir::new(std::path::absolute(t.checked_run()?.root())?);
    let (file, name) = t.read()?;
    let cells = graft_run::ablate::cell_count(&file)?;
    graft_run::files::check_plain_name(&name, "ablation")?;
    let mut cfg = Settings::of_run(&run)?;
    apply(&args.resources, &mut cfg.cluster);
    let mut ablate_args = vec![
        "--run".to_string(),
        run.root().to_string_lossy().into_owned(),
        std::path::absolute(&t.file)?.to_string_lossy().into_owned(),
        "--name".into(),
        name.clone(),
    ];
    if let Some(s) = t.seeds {
        ablate_args.extend(["--seeds".into(), s.to_string()]);
    }
    let plan = slurm::ArrayPlan {
        kind: slurm::ArrayKind::Ablate,
        graft: graft_binary(args.submit.graft)?,
        workdir: std::env::current_dir()?,
        run,
        name,
        tasks: cells,
        throttle: None,
        args: ablate_args,
        global: crate::tracked::global_flags(),
        resources: cfg.cluster,
    };
    submit_array(&plan, args.submit.dry_run, args.submit.hold, "cell(s)")
}

fn submit_array(
    plan: &slurm::ArrayPlan,
    dry_run: bool,
    hold: bool,
    units: &str,
) -> anyhow::Result<()> {
    let scripts = plan.write_scripts()?;
    if wrote(&scripts, dry_run) {
        return Ok(());
    }
    let (tasks_job, collect) =
        plan.submit(&scripts, SubmitOptions { hold })
            .with_context(|| {
                format!(
                    "submitting; the scripts are in {} (--dry-run writes them without submitting)",
                    plan.run.cluster().display()
                )
            })?;
    if let Some(id) = tasks_job {
        match plan.throttle {
            Some(p) => say!(
                "Submitted job {id}: {} {units}, {p} at once (--array={})",
                plan.tasks,
                plan.array()
            ),
            None => say!(
                "Submitted job {id}: {} {units} (--array={})",
                plan.tasks,
                plan.array()
            ),
        }
    }
    say!("Submitted job {collect}: the summary after them");
    Ok(())
}

fn k8s_extract(args: K8sExtractArgs) -> anyhow::Result<()> {
    let mut cfg = Config::resolve(&args.pipeline)?;
    if args.tasks.is_some() {
        cfg.cluster.tasks = args.tasks;
    }
    let then = match args.then {
        ThenArg::Train => Then::Train,
        ThenArg::None => Then::Nothing,
    };
    let run = graft_run::pipeline::prepare_only(&cfg, &Terminal)?;
    let workdir = std::env::current_dir()?;
    let run = RunDir::new(std::path::absolute(run.root())?);
    let mut plan = ExtractPlan::new(&cfg, run, args.graft.clone(), workdir.clone(), then)?;
    plan.global = crate::tracked::global_flags();
    if plan.ready_cache()? {
        note!("the run's feature cache was made from other images or layout: cleared");
    }
    let mount = args.mount.clone().unwrap_or_else(|| workdir.clone());
    if !plan.run.root().starts_with(&mount) {
        anyhow::bail!(
            "the run folder {} is not under --mount {}: the pods would not see it",
            plan.run.root().display(),
            mount.display()
        );
    }
    let options = graft_cluster::k8s::K8sOptions {
        image: args.image,
        claim: args.claim,
        mount: mount.to_string_lossy().into_owned(),
        namespace: args.namespace,
        cpu: args.cpu,
        memory: args.memory,
        gpus: args.gpus,
        retries: args.retries,
    };
    let (extract, collect) = graft_cluster::k8s::extract_manifests(&plan, &options)?;
    let dir = plan.run.cluster().join("k8s");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (e, c) = (dir.join("extract-job.yaml"), dir.join("collect-job.yaml"));
    graft_run::files::write_file(&e, extract.as_bytes())?;
    graft_run::files::write_file(&c, collect.as_bytes())?;
    say!("Wrote {}", e.display());
    say!("Wrote {}", c.display());
    say!("Apply them with:");
    say!("  kubectl apply -f {}", e.display());
    say!(
        "  kubectl wait --for=condition=complete --timeout=24h job/{}",
        graft_cluster::k8s::label(&format!("graft-extract-{}", plan.name))
    );
    say!("  kubectl apply -f {}", c.display());
    Ok(())
}
