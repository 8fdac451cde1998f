//! `graft finetune --lr auto` and `--lr-find`: the range test on stage 2's net.

use graft_run::RunDir;
use graft_train::finetune::{Acts, CachedSource, FinetuneConfig, TopNet};
use graft_train::lr_find::{RangeTest, Rule};

/// The learning-rate range test on stage 2's net over the cached training activations; writes
/// RUN/finetune/lr_find/ and prints the suggestion, which comes back.
pub(super) fn range_test(
    net: &TopNet,
    start: &graft_train::finetune::Values,
    train: &Acts,
    cfg: &FinetuneConfig,
    rule: Rule,
    tuned: &RunDir,
    device: &graft_model::burn_backend::Device,
) -> anyhow::Result<Option<f32>> {
    let test = RangeTest {
        start: 1e-7,
        end: 1.0,
        steps: 100,
        ..RangeTest::default()
    };
    let source = CachedSource {
        acts: train.clone(),
        start: net.top,
        classes: net.classes,
    };
    say!(
        "Learning-rate range test: {} updates of {} activations, the rate from {:.0e} to {:.0e}",
        test.steps,
        cfg.batch,
        test.start,
        test.end
    );
    let curve =
        graft_train::finetune::lr_range::range_test(net, start, &source, cfg, &test, device)?;
    let found = graft_run::lr_find::LrFound {
        head: format!("fine-tune from block {} + head", net.top),
        rule,
        suggested: curve.suggestion_or_edge(rule),
        train_rows: source.acts.len(),
        curve,
    };
    let dir = tuned.root().join("lr_find");
    graft_run::lr_find::write(&dir, &found)?;
    let how = if found.curve.suggestion(rule).is_some() {
        format!("{rule} rule")
    } else {
        "the loss does not fall from the trained start: a tenth of the rate where it starts to \
         rise"
            .to_string()
    };
    match found.suggested {
        Some(lr) => say!(
            "  suggested --lr {lr:.2e} ({how}); curve: {}",
            dir.join("lr_find.png").display()
        ),
        None => say!("  no suggestion; see {}", dir.join("lr_find.png").display()),
    }
    Ok(found.suggested)
}
