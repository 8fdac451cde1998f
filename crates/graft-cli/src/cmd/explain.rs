//! `graft explain`: heatmaps with measured quality for images, a folder, the run's mistakes or
//! production photos; `graft explain query` filters what was written.

use anyhow::{bail, Context as _};
use graft_run::explain::{self, ExplainConfig, ExplainRecord, ExplainRequest, Item, Query, Target};
use graft_run::RunDir;
use graft_train::HeadModel;

use crate::cli::{ExplainArgs, ExplainCommand, ExplainQueryArgs, ExplainRunArgs};
use crate::cmd::runs::print_table;
use crate::terminal::Terminal;

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    match args.command {
        Some(ExplainCommand::Query(q)) => query(q),
        None => explain_run(args.explain),
    }
}

fn settings(args: &ExplainRunArgs) -> anyhow::Result<ExplainConfig> {
    // A file given, else the run's own settings (config.toml keeps an [explain] table).
    let saved = args
        .run
        .as_ref()
        .map(|r| RunDir::new(r).config())
        .filter(|p| p.is_file());
    let mut c = match args.config.as_ref().or(saved.as_ref()) {
        Some(path) => ExplainConfig::read(path)?,
        None => ExplainConfig::default(),
    };
    if let Some(m) = args.method {
        c.method = m;
    }
    c.sanity |= args.sanity;
    if args.layer.is_some() {
        c.layer = args.layer;
    }
    if let Some(s) = args.save {
        c.save = s;
    }
    if let Some(q) = args.top_share {
        if !(q > 0.0 && q < 1.0) {
            bail!("--top-share {q} must be between 0 and 1 (0.2: the hottest fifth of the image)");
        }
        c.top_share = q;
    }
    if let Some(s) = args.steps {
        if s == 0 || s > 1000 {
            bail!("--steps {s} must be between 1 and 1000");
        }
        c.steps = s;
    }
    if let Some(k) = args.top {
        if k == 0 {
            bail!("--top must be at least 1");
        }
        c.top_k = k;
    }
    Ok(c)
}

fn explain_run(args: ExplainRunArgs) -> anyhow::Result<()> {
    let Some(run) = args.run.clone() else {
        bail!(
            "--run DIR is required: the run folder whose model to explain (graft train writes one)"
        );
    };
    let config = settings(&args)?;
    let dir = RunDir::new(&run);
    let model = HeadModel::load(&run)
        .with_context(|| format!("loading the model of run {}", run.display()))?;
    let classes = &model.meta.classes;
    if let Some(c) = &args.class {
        if !classes.contains(c) {
            bail!(
                "--class {c:?} is not one of the run's classes: {}",
                classes.join(", ")
            );
        }
    }
    if args.class_mean {
        return class_mean(&args, &dir, &model, &config);
    }
    let (name, mut items, by_verdict) = if let Some(folder) = &args.dir {
        (
            folder_name(folder, "dir"),
            explain::folder_images(folder, classes)?,
            false,
        )
    } else if let Some(folder) = &args.production {
        (
            "production".to_string(),
            explain::folder_images(folder, classes)?,
            true,
        )
    } else if let Some(split) = &args.split {
        let split: graft_data::scan::Split = split
            .parse()
            .map_err(|e| anyhow::anyhow!("--split {split}: {e} (test, val or train)"))?;
        let limit = args.limit.unwrap_or(usize::MAX);
        let items = explain::split_items(&dir, &model, split, limit)?;
        (split.as_str().to_string(), items, false)
    } else if args.misclassified {
        let limit = args.limit.unwrap_or(usize::MAX);
        let wrong = explain::misclassified(&dir, &model, limit, args.sort, config.seed)?;
        if wrong.is_empty() {
            say!("The model makes no mistakes on the run's test split: nothing to explain.");
            return Ok(());
        }
        ("misclassified".to_string(), wrong, false)
    } else if !args.images.is_empty() {
        let items = args
            .images
            .iter()
            .map(|p| Item::in_class_folder(p.clone(), classes))
            .collect();
        ("images".to_string(), items, false)
    } else {
        bail!(
            "nothing to explain: give images, --dir DIR, --misclassified or --production DIR \
             (graft explain --help shows each)"
        );
    };
    if let Some(limit) = args.limit {
        items.truncate(limit);
    }
    if items.is_empty() {
        bail!("no images found to explain (.jpg, .png, .bmp, .webp, .gif, .tiff)");
    }
    let target = match (&args.class, args.true_class) {
        (Some(c), _) => Target::Class(c.clone()),
        (None, true) => Target::True,
        (None, false) => Target::Predicted,
    };
    let req = ExplainRequest {
        run: &dir,
        name: args.name.clone().unwrap_or(name),
        items,
        config,
        target,
        by_verdict,
    };
    let params = graft_track::Params::from([
        ("set".to_string(), req.name.clone()),
        ("method".to_string(), req.config.method.name().to_string()),
        (
            "layer".to_string(),
            req.config
                .layer
                .map_or_else(|| "last".to_string(), |b| b.to_string()),
        ),
        ("images".to_string(), req.items.len().to_string()),
        ("sanity".to_string(), req.config.sanity.to_string()),
    ]);
    let done = crate::tracked::tracked(graft_run::Job::Explain, &dir, params, || {
        explain::explain(&req, &Terminal)
            .with_context(|| format!("explaining with run {}", run.display()))
    })?;
    for (path, why) in &done.unreadable {
        note!(
            "{}: cannot read this image ({why}); skipped",
            path.display()
        );
    }
    if args.json {
        for r in &done.records {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print_records(&done.records);
        summary(&done.records, done.resumed);
        say!("Wrote {}", done.dir.join(explain::record::FILE).display());
    }
    if !done.unreadable.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

fn class_mean(
    args: &ExplainRunArgs,
    dir: &RunDir,
    model: &HeadModel,
    config: &ExplainConfig,
) -> anyhow::Result<()> {
    let split: graft_data::scan::Split = args
        .split
        .as_deref()
        .unwrap_or("test")
        .parse()
        .map_err(|e| anyhow::anyhow!("--split: {e} (test, val or train)"))?;
    let items = explain::split_items(dir, model, split, args.limit.unwrap_or(usize::MAX))?;
    let name = args.name.clone().unwrap_or_else(|| "class-mean".into());
    let (means, png) = explain::class_means(dir, &name, &items, config, &Terminal)?;
    let mut rows = vec![vec![
        "true".to_string(),
        "predicted".into(),
        "images".into(),
    ]];
    for m in means.classes.iter().chain(&means.confusions) {
        rows.push(vec![
            m.truth.clone(),
            m.predicted.clone(),
            m.images.to_string(),
        ]);
    }
    print_table("  ", &rows);
    say!(
        "Mean {} maps ({} layer) of {} classes and {} confusions: {}",
        means.method,
        means.layer,
        means.classes.len(),
        means.confusions.len(),
        png.display()
    );
    Ok(())
}

fn folder_name(folder: &std::path::Path, fallback: &str) -> String {
    std::fs::canonicalize(folder)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| fallback.to_string())
}

fn print_records(records: &[ExplainRecord]) {
    let mut rows = vec![[
        "image",
        "true",
        "predicted",
        "p",
        "explains",
        "drop",
        "conc.",
        "cover",
        "del.",
        "ins.",
        "verdict",
    ]
    .map(String::from)
    .to_vec()];
    for r in records {
        let file = std::path::Path::new(&r.path)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| r.path.clone());
        let q = &r.quality;
        rows.push(vec![
            file,
            r.truth.clone().unwrap_or_else(|| "?".into()),
            r.predicted.clone(),
            format!("{:.2}", r.probability),
            r.target.clone(),
            format!("{:.2}", q.confidence_drop),
            format!("{:.2}", q.concentration),
            format!("{:.2}", q.coverage),
            format!("{:.3}", q.deletion_auc),
            format!("{:.3}", q.insertion_auc),
            if r.suspicious {
                format!("suspicious: {}", r.reasons.join("; "))
            } else {
                "ok".into()
            },
        ]);
    }
    print_table("  ", &rows);
}

fn summary(records: &[ExplainRecord], resumed: usize) {
    let n = records.len().max(1) as f64;
    let mean =
        |f: fn(&ExplainRecord) -> f32| records.iter().map(|r| f64::from(f(r))).sum::<f64>() / n;
    let suspicious = records.iter().filter(|r| r.suspicious).count();
    let sanity: Vec<f64> = records
        .iter()
        .filter_map(|r| r.sanity_rank_correlation)
        .collect();
    if !sanity.is_empty() {
        let mean_of = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        // The cascade: a random head, then the encoder's top blocks drawn at random too.
        let mut steps = vec![("head".to_string(), mean_of(&sanity))];
        let depth = records.first().map_or(0, |r| r.sanity_cascade.len());
        for k in 0..depth {
            let v: Vec<f64> = records
                .iter()
                .filter_map(|r| r.sanity_cascade.get(k).map(|s| s.rank_correlation))
                .collect();
            let name = records[0].sanity_cascade[k].randomised.clone();
            steps.push((name, mean_of(&v)));
        }
        let deepest = steps.last().map_or(1.0, |s| s.1);
        let shown: Vec<String> = steps
            .iter()
            .map(|(name, m)| format!("{name} {m:.2}"))
            .collect();
        say!(
            "Sanity check over {} images, rank correlation with maps from randomised models: {} ({})",
            sanity.len(),
            shown.join(" · "),
            if deepest < 0.3 {
                "below 0.3: the maps depend on what the model learned"
            } else {
                "0.3 or more: the maps change little when the model's weights do; distrust them"
            }
        );
    }
    let method = records.first().map_or("", |r| r.method.as_str());
    say!(
        "{} images explained ({method}{}): {suspicious} suspicious; mean deletion AUC {:.3} \
         (lower is better), insertion AUC {:.3} (higher is better), confidence drop {:.2}",
        records.len(),
        if resumed > 0 {
            format!(", {resumed} from an earlier run")
        } else {
            String::new()
        },
        mean(|r| r.quality.deletion_auc),
        mean(|r| r.quality.insertion_auc),
        mean(|r| r.quality.confidence_drop),
    );
}

fn query(args: ExplainQueryArgs) -> anyhow::Result<()> {
    let records = explain::record::read(&args.file)?;
    let q = Query {
        suspicious: args.suspicious,
        low_confidence: args.low_confidence,
        class: args.class.clone(),
        misclassified: args.misclassified,
    };
    let hits: Vec<ExplainRecord> = records.into_iter().filter(|r| q.matches(r)).collect();
    if args.json {
        for r in &hits {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print_records(&hits);
        say!("{} matching", hits.len());
    }
    Ok(())
}
