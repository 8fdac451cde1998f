//! `graft ablate` on a run trained by `graft train`: the table with intervals and paired tests,
//! the chart, the same seeds giving the same rows twice, resuming, the report's section, and
//! clear errors.

mod common;

use common::{coloured_run, graft_in as run_graft, stderr, stdout};

/// Learning rate 1e-6 for 3 epochs barely moves a fresh head: those cells must lose.
const PLAN: &str = "\
seeds = 3
[factors]
lr = [3e-3, 1e-6]
head = [\"linear\", \"mlp\"]
epochs = [3]
";

#[test]
fn ablate_writes_intervals_and_paired_tests_repeatably_and_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = coloured_run(tmp.path());
    std::fs::write(tmp.path().join("plan.toml"), PLAN).expect("plan");

    let o = run_graft(
        &cache,
        tmp.path(),
        &["ablate", "--run", "runs/t", "plan.toml"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("reference"), "{}", stdout(&o));
    let dir = tmp.path().join("runs/t/ablate/plan");
    let table = std::fs::read_to_string(dir.join("ablation.csv")).expect("table");
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 5, "header and 2 × 2 × 1 cells: {table}");
    assert_eq!(
        rows[0],
        [
            "cell",
            "epochs",
            "head",
            "lr",
            "seeds",
            "macro_f1_mean",
            "macro_f1_ci95",
            "accuracy_mean",
            "accuracy_ci95",
            "macro_f1_diff_vs_reference",
            "diff_ci95",
            "p_value"
        ]
    );
    // The reference row is every factor's first value.
    assert_eq!(&rows[1][..4], ["0", "3", "linear", "0.003"]);
    assert_eq!(rows[1][9], "reference");
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ablation.json")).expect("json"))
            .expect("JSON");
    let cells = a["cells"].as_array().expect("cells");
    for c in cells {
        assert_eq!(c["macro_f1"]["values"].as_array().expect("values").len(), 3);
        let lr = c["factors"][2][1].as_str().expect("lr");
        if lr == "0.000001" || lr == "1e-6" {
            let diff = c["vs_reference"]["diff"]["mean"].as_f64().expect("diff");
            assert!(diff < 0.0, "a rate of 1e-6 should lose: {c}");
        }
        if c["cell"] != 0 {
            let p = c["vs_reference"]["p_value"].as_f64().expect("p");
            assert!((0.0..=1.0).contains(&p), "{c}");
        }
    }
    let runs = std::fs::read_to_string(dir.join("runs.csv")).expect("runs");
    assert_eq!(runs.lines().count(), 13, "4 cells × 3 seeds: {runs}");
    let img = image::open(dir.join("ablation.png")).expect("chart");
    assert!(img.width() >= 700);

    // The ablation is a tracked run: each cell's mean as a step metric, labels as parameters.
    let o = run_graft(&cache, tmp.path(), &["runs", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("runs JSON");
    let tracked = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["command"] == "ablate")
        .unwrap_or_else(|| panic!("the ablation in {listed}"));
    assert_eq!(tracked["status"], "finished");
    assert_eq!(tracked["params"]["cell.0"], "epochs=3 head=linear lr=0.003");
    assert_eq!(tracked["metrics"]["cells"].as_f64(), Some(4.0));

    // The same seeds give the same rows twice.
    let o = run_graft(
        &cache,
        tmp.path(),
        &["ablate", "--run", "runs/t", "plan.toml", "--name", "again"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let again = tmp.path().join("runs/t/ablate/again");
    assert_eq!(
        std::fs::read_to_string(again.join("ablation.csv")).expect("again"),
        table
    );

    // Cut to 5 trainings, as a kill leaves it: the rerun keeps them and ends the same.
    let first: Vec<&str> = runs.lines().take(6).collect();
    std::fs::write(again.join("runs.csv"), first.join("\n") + "\n").expect("cut");
    std::fs::remove_file(again.join("ablation.csv")).expect("rm");
    let o = run_graft(
        &cache,
        tmp.path(),
        &["ablate", "--run", "runs/t", "plan.toml", "--name", "again"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("5 trainings finished before, kept"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(again.join("ablation.csv")).expect("again"),
        table
    );

    // graft eval puts the ablations in the report.
    let o = run_graft(
        &cache,
        tmp.path(),
        &["eval", "--run", "runs/t", "--no-track"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let html = std::fs::read_to_string(tmp.path().join("runs/t/report.html")).expect("report");
    assert!(
        html.contains("<h2>Ablations</h2>") && html.contains("head=mlp"),
        "no section"
    );

    // Errors say what to do.
    std::fs::write(
        tmp.path().join("other.toml"),
        "[factors]\nhead = [\"mlp\"]\n",
    )
    .expect("w");
    let o = run_graft(
        &cache,
        tmp.path(),
        &["ablate", "--run", "runs/t", "other.toml", "--name", "plan"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("another ablation file"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        tmp.path().join("enc.toml"),
        "[factors]\nencoder = [\"mobilenet-v2\"]\n",
    )
    .expect("w");
    let o = run_graft(
        &cache,
        tmp.path(),
        &["ablate", "--run", "runs/t", "enc.toml"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("separate runs"),
        "{}",
        stderr(&o)
    );
    std::fs::write(tmp.path().join("bad.toml"), "seeds = 3\nfactors = 4\n").expect("w");
    let o = run_graft(
        &cache,
        tmp.path(),
        &["ablate", "--run", "runs/t", "bad.toml"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("[factors]") && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );
}
