//! The command line's [`Reporter`]: graft-run's events as the lines a person reads, and its
//! progress counts as bars. Every command that runs a stage prints through this one place, so
//! `graft extract` and the extract stage of `graft train DIR` say the same thing.

use std::fmt::Write as _;

use graft_eval::Evaluation;
use graft_run::extract::Extracted;
use graft_run::heads::{SweepStarted, Swept};
use graft_run::report::{Bar, Event, Reporter};
use graft_train::SweepEntry;

/// Prints on stdout (results) and stderr (notes), both silent under `-q`.
pub struct Terminal;

/// An indicatif bar that clears itself when the work is done.
struct Drawn(indicatif::ProgressBar);

impl Bar for Drawn {
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn set_position(&self, done: u64) {
        self.0.set_position(done);
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Drop for Drawn {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Reporter for Terminal {
    fn bar(&self, what: &str, len: u64) -> Box<dyn Bar> {
        Box::new(Drawn(crate::progress::bar(len, what)))
    }

    fn event(&self, event: Event<'_>) {
        match event {
            Event::Run {
                root,
                encoder,
                data,
            } => say!("Run {} ({} on {})", root.display(), encoder, data.display()),
            Event::Stage { stage, what } => say!("[{}/5] {what}", stage.number()),
            Event::Prepared(p) => {
                let a = &p.audit;
                say!(
                    "  {} images in {} classes{}; {} unreadable, {} exact-duplicate groups, {} near-duplicate groups",
                    a.images_ok,
                    a.classes.len(),
                    a.imbalance
                        .as_ref()
                        .map(|i| format!(" (imbalance {:.1}:1)", i.ratio))
                        .unwrap_or_default(),
                    a.files_found - a.images_ok,
                    a.exact_duplicates.len(),
                    a.near_duplicates.len()
                );
                say!(
                    "  split: {} train, {} val, {} test → {}",
                    p.totals[0],
                    p.totals[1],
                    p.totals[2],
                    p.manifest.display()
                );
            }
            Event::FetchingWeights(kind) => say!("  fetching {kind} weights (once) …"),
            Event::ExtractStarted(s) => note!(
                "Extracting {} images with {} ({}) into {}{}",
                s.images,
                s.encoder,
                s.backend,
                s.out.display(),
                if s.shard.count > 1 {
                    format!(", shard {}", s.shard)
                } else {
                    String::new()
                }
            ),
            Event::Extracted(x) => extracted(x),
            Event::SweepStarted(s) => sweep_started(s),
            Event::RetrainingSeeds(n) => {
                note!("Retraining the best configuration with {n} seeds …")
            }
            Event::Swept(s) => swept(s),
            Event::TuneStarted(t) => say!(
                "Tuning the head: {} trials ({}), {} at a time, on {} train / {} val rows; \
                 parameters {}{} → {}",
                t.trials,
                t.method,
                t.parallel,
                t.train_rows,
                t.val_rows,
                t.space.names().collect::<Vec<_>>().join(", "),
                if t.resumed > 0 {
                    format!("; {} finished before, kept", t.resumed)
                } else {
                    String::new()
                },
                t.dir.root().display()
            ),
            Event::Evaluated(e) => {
                print_summary(&e.eval);
                say!("Report: {}", e.report.display());
            }
            Event::Trained(stages) => {
                say!("[5/5] summary");
                for t in stages {
                    say!("  {:<14} {}", t.stage.title(), t.summary());
                }
            }
            Event::Calibrating(c) => say!(
                "Calibrating INT8 activation ranges on {} training images ({} weights{})…",
                c.images,
                c.weights.name(),
                match (c.weights, c.cpu_vnni) {
                    (graft_export::WeightBits::Seven, false) =>
                        ": this CPU has no VNNI, where 8-bit weights can saturate",
                    _ => "",
                }
            ),
            Event::Validated(a) => say!(
                "Validated on {n} held-out images: max |p_onnx − p_graft| = {:.2e}, same top-1 on {}/{n}",
                a.max_diff,
                a.same_top1,
                n = a.images
            ),
            Event::AccuracyChecked(c) => {
                let (lo, hi) = c.drop.interval();
                say!(
                    "  accuracy: graft (float) {:.4}, {} {:.4}: drop {:.1} points (95% interval {:.1} to {:.1})",
                    c.float,
                    graft_run::Precision::Int8.file_name(),
                    c.file,
                    c.drop.drop() * 100.0,
                    lo * 100.0,
                    hi * 100.0
                );
            }
            Event::ForcedPastLimit { max } => note!(
                "warning: INT8 loses more than --max-accuracy-drop {max}; written because of --force"
            ),
            Event::Tracked { id, db, mlflow } => {
                let short = graft_track::short_id(id);
                note!("Recorded as run {short} in {} (graft runs show {short})", db.display());
                if let Some((uri, remote)) = mlflow {
                    note!("Sent to MLflow at {uri} as run {remote}");
                }
            }
            Event::Note(text) => note!("{text}"),
        }
    }
}

fn extracted(x: &Extracted) {
    let summary = &x.summary;
    say!(
        "Encoded {} images in {:.1} s ({:.1} images/s); chunks: {} written, {} already done, \
         {} owned of {}.",
        summary.images_encoded,
        x.seconds(),
        x.images_per_second(),
        summary.chunks_written,
        summary.chunks_skipped,
        summary.chunks_owned,
        summary.chunks_total
    );
    if !summary.failed.is_empty() {
        say!(
            "{} image(s) could not be used (zero rows, left out of training):",
            summary.failed.len()
        );
        for f in summary.failed.iter().take(10) {
            say!("  {}: {}", f.path, f.reason);
        }
        if summary.failed.len() > 10 {
            say!(
                "  … and {} more (see failed-*.json)",
                summary.failed.len() - 10
            );
        }
    }
    if summary.cache_complete {
        say!("Cache complete: {}", x.out.display());
    } else {
        say!(
            "This part is done; the cache is complete once every --shard i/{} has run \
             (then: graft extract --merge --out DIR --from …).",
            x.shard.count
        );
    }
}

fn sweep_started(s: &SweepStarted) {
    say!(
        "Training {} heads ({}) on {} train / {} val rows of {} features, \
         {} classes{}, {} threads",
        s.runs,
        if s.auto_lr {
            format!("{} heads, rates from the range test", s.heads)
        } else {
            format!("{} × {} learning rates", s.heads, s.lrs)
        },
        s.train_rows,
        s.val_rows,
        s.dim,
        s.classes,
        match s.val_held_out {
            Some(f) => format!(" (val held out of train, {:.0}%)", f * 100.0),
            None => String::new(),
        },
        s.threads
    );
}

fn swept(s: &Swept) {
    let m = &s.metrics;
    let winner = &s.entries[s.best];
    say!("{}", sweep_table(&s.entries, s.best));
    say!(
        "Sweep: {} configurations in {:.1} s. Best: {} lr {} (val macro-F1 {:.4}, val acc {:.4}{}).",
        s.entries.len(),
        m.sweep_seconds,
        winner.config.head,
        winner.config.lr,
        winner.outcome.val_macro_f1,
        winner.outcome.val_acc,
        match (m.best.test_accuracy, m.best.test_macro_f1) {
            (Some(acc), Some(f1)) => format!(
                "; test acc {acc:.4}, macro-F1 {f1:.4} on {} images",
                m.rows.test
            ),
            _ => String::new(),
        }
    );
    if let Some(r) = &m.seeds {
        say!(
            "Over {} seeds ({} split): accuracy {:.4} ± {:.4}, macro-F1 {:.4} ± {:.4} (mean ± 95% CI)",
            r.seeds.len(),
            r.split,
            r.accuracy.mean,
            r.accuracy.ci95,
            r.macro_f1.mean,
            r.macro_f1.ci95
        );
    }
    let t = &m.temperature;
    say!(
        "Calibration: temperature {:.3} (val NLL {:.4} → {:.4}).",
        t.value,
        t.val_nll_before,
        t.val_nll_after
    );
    say!("Run folder: {}", s.dir.display());
}

fn sweep_table(entries: &[SweepEntry], best: usize) -> String {
    let mut s =
        String::from("  head            lr       epochs  best  val macro-F1  val acc   time\n");
    for (i, e) in entries.iter().enumerate() {
        let o = &e.outcome;
        let _ = writeln!(
            s,
            "{} {:<15} {:<8} {:>6} {:>5}  {:>11.4}  {:>7.4} {:>5.1} s",
            if i == best { "*" } else { " " },
            e.config.head.to_string(),
            e.config.lr,
            o.history.len(),
            o.best_epoch,
            o.val_macro_f1,
            o.val_acc,
            o.seconds
        );
    }
    s
}

fn print_summary(e: &Evaluation) {
    say!(
        "{} split, {} images: accuracy {:.4}, macro-F1 {:.4}{}, ECE {:.3}",
        e.split,
        e.images,
        e.accuracy,
        e.macro_f1,
        e.top_k
            .iter()
            .map(|(k, v)| format!(", top-{k} {v:.4}"))
            .collect::<String>(),
        e.calibration.ece
    );
    if let Some(l) = &e.latency {
        say!(
            "Latency per image ({} images, one at a time): P50 {:.1} ms, P95 {:.1} ms",
            l.images,
            l.p50_ms,
            l.p95_ms
        );
    }
    let mut worst: Vec<_> = e
        .per_class
        .iter()
        .filter(|c| c.metrics.support > 0)
        .collect();
    worst.sort_by(|a, b| a.metrics.f1.total_cmp(&b.metrics.f1));
    for c in worst.iter().take(3) {
        say!(
            "  weakest: {:<20} F1 {:.3} (precision {:.3}, recall {:.3}, {} images)",
            c.class,
            c.metrics.f1,
            c.metrics.precision,
            c.metrics.recall,
            c.metrics.support
        );
    }
}
