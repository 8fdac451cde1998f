//! `graft lr-find`: the learning-rate range test for a head on the run's cached features, its
//! curve written beside the run (`RUN/lr_find/`).

use graft_train::lr_find::{range_test, LrCurve, RangeTest, Rule};
use graft_train::{HeadSpec, TrainConfig};
use serde::Serialize;

use crate::{RunDir, RunError};

/// What to test.
#[derive(Debug, Clone)]
pub struct LrFindRequest<'a> {
    pub run: &'a RunDir,
    /// The head to test; the first of the run's `[heads]` list when `None`.
    pub head: Option<HeadSpec>,
    pub test: RangeTest,
    pub rule: Rule,
}

/// What `RUN/lr_find/lr_find.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct LrFound {
    pub head: String,
    pub rule: Rule,
    /// The suggested rate by `rule`, when the curve has one.
    pub suggested: Option<f32>,
    pub train_rows: usize,
    #[serde(flatten)]
    pub curve: LrCurve,
}

/// Run the range test with the run's own training settings (batch, weight decay, label
/// smoothing, balance, clipping, seed, val hold-out) and write the curve and its picture.
pub fn lr_find(req: &LrFindRequest<'_>) -> Result<LrFound, RunError> {
    let run = req.run;
    let settings = crate::settings::Settings::of_run(run)?;
    let head = match req.head {
        Some(h) => h,
        None => settings
            .head_specs()?
            .into_iter()
            .next()
            .unwrap_or(HeadSpec::Linear),
    };
    if head.spatial() {
        return Err(RunError::Invalid(
            "the range test runs on pooled features: give --head linear or mlp:…".into(),
        ));
    }
    let ds = crate::heads::pooled_dataset(run, &settings)?;
    let h = &settings.heads;
    let cfg = TrainConfig {
        head,
        batch: h.batch,
        weight_decay: h.weight_decay,
        label_smoothing: h.label_smoothing,
        balance: settings.balance()?,
        clip: h.clip,
        seed: h.seed,
        ..TrainConfig::default()
    };
    let curve = range_test(&ds, &cfg, &req.test);
    let found = LrFound {
        head: head.to_string(),
        rule: req.rule,
        suggested: curve.suggestion(req.rule),
        train_rows: ds.train.len(),
        curve,
    };
    write(&run.root().join("lr_find"), &found)?;
    Ok(found)
}

/// Write `found` into `dir`: `lr_find.json` and the curve `lr_find.png` with the suggested
/// rate and the minimum marked.
pub fn write(dir: &std::path::Path, found: &LrFound) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|e| RunError::write(dir, e))?;
    crate::files::write_json(&dir.join("lr_find.json"), found)?;
    let mut marks = Vec::new();
    if let Some(s) = found.suggested {
        let label = match found.rule {
            _ if found.curve.suggestion(found.rule).is_none() => "edge / 10",
            Rule::Steepest => "steepest",
            Rule::Valley => "valley",
        };
        marks.push((label, s));
    }
    marks.push(("minimum", found.curve.minimum));
    graft_eval::lr_plot::lr_curve(&found.curve, &marks, &dir.join("lr_find.png"))?;
    Ok(())
}
