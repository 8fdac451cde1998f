//! `graft lr-find` on a run trained by `graft train`: the range test's curve, its suggestion,
//! its picture, and clear errors.

mod common;

use common::{coloured_run, graft_in as run_graft, stderr, stdout};

#[test]
fn the_range_test_suggests_a_rate_on_the_falling_part_of_the_curve() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = coloured_run(tmp.path());

    for rule in ["steepest", "valley"] {
        let o = run_graft(
            &cache,
            tmp.path(),
            &["lr-find", "--run", "runs/t", "--rule", rule, "--json"],
        );
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        let r: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
        let lrs: Vec<f64> = r["lrs"]
            .as_array()
            .expect("lrs")
            .iter()
            .map(|v| v.as_f64().expect("lr"))
            .collect();
        assert!(lrs.len() >= 10 && lrs.windows(2).all(|w| w[1] > w[0]));
        let smoothed: Vec<f64> = r["smoothed"]
            .as_array()
            .expect("smoothed")
            .iter()
            .map(|v| v.as_f64().expect("loss"))
            .collect();
        let low = smoothed.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(low < 0.5 * smoothed[0], "the loss falls: {smoothed:?}");
        let suggested = r["suggested"].as_f64().expect("a suggestion");
        let minimum = r["minimum"].as_f64().expect("minimum");
        assert!(
            suggested > lrs[0] && suggested <= minimum,
            "{rule}: {suggested} should lie on the fall, before the minimum {minimum}"
        );
    }
    let png = tmp.path().join("runs/t/lr_find/lr_find.png");
    let img = image::open(&png).expect("the curve is a PNG");
    assert!(img.width() >= 600);
    assert!(tmp.path().join("runs/t/lr_find/lr_find.json").is_file());
    let o = run_graft(&cache, tmp.path(), &["lr-find", "--run", "runs/t"]);
    assert!(
        stdout(&o).contains("Suggested learning rate") && stdout(&o).contains("lr_find.png"),
        "{}",
        stdout(&o)
    );

    // Bad input: a message that says what to do, never a panic.
    let o = run_graft(
        &cache,
        tmp.path(),
        &["lr-find", "--run", "runs/t", "--start", "0"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("--start"),
        "{}",
        stderr(&o)
    );
    let o = run_graft(
        &cache,
        tmp.path(),
        &["lr-find", "--run", "runs/t", "--head", "attention"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("pooled"),
        "{}",
        stderr(&o)
    );
    // --lr auto: one configuration per head, each at the rate its range test suggests (the
    // same test lr-find ran: same rows, same settings).
    let o = run_graft(
        &cache,
        tmp.path(),
        &["lr-find", "--run", "runs/t", "--head", "linear", "--json"],
    );
    let found: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    let linear = found["suggested"].as_f64().expect("a suggestion");
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "train",
            "heads",
            "--features",
            "runs/t/features",
            "--lr",
            "auto",
            "--name",
            "auto",
            "--no-track",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("rates from the range test"),
        "{}",
        stdout(&o)
    );
    let sweep = std::fs::read_to_string(tmp.path().join("runs/auto/sweep.csv")).expect("sweep");
    let rows: Vec<Vec<&str>> = sweep
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3, "one per head: {sweep}");
    assert_eq!(rows[0][0], "linear");
    let lr: f64 = rows[0][1].parse().expect("lr");
    assert!(
        (lr - linear).abs() <= 1e-6 * linear,
        "sweep {lr} vs lr-find {linear}"
    );
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "train",
            "heads",
            "--features",
            "runs/t/features",
            "--lr",
            "fast",
        ],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("auto:valley"),
        "{}",
        stderr(&o)
    );

    let o = run_graft(&cache, tmp.path(), &["lr-find", "--run", "runs/nope"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("graft train")
            && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );
}
