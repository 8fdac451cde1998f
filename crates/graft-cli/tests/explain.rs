//! `graft explain` on real MobileNetV2 runs trained by `graft train`: a synthetic localisation
//! test (the class is decided by a small patch at a random place; Grad-CAM must point at it),
//! Grad-CAM against a random map on Fashion-MNIST demo images (deletion AUC), every mode end to
//! end, `explain query`, resuming after kill -9, and clear errors.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    cache_with_mobilenet, demo, demo_subset, graft_in, require_ort_library, save, stderr, stdout,
};
use graft_data::rng::SplitMix64;
use image::{Rgb, RgbImage};
use serde_json::Value;

const QUICK: &str =
    "[heads]\nheads = [\"linear\"]\nlrs = [0.01]\nepochs = 30\n[eval]\nlatency = 0\n";

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    o
}

fn records(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn mean(records: &[Value], key: &str) -> f64 {
    records
        .iter()
        .map(|r| r[key].as_f64().expect("metric"))
        .sum::<f64>()
        / records.len() as f64
}

const SIDE: u32 = 256;
const PATCH: u32 = 64;
/// The pointing game's tolerance (Zhang et al. 2016): a peak within 15 px of the object hits.
const TOLERANCE: f64 = 15.0;
const CLASSES: [&str; 3] = ["red", "green", "blue"];
const COLOURS: [[u8; 3]; 3] = [[220, 30, 30], [30, 190, 30], [30, 30, 220]];

/// A grey clutter of random rectangles (the same for every class) with one `PATCH`-pixel
/// square of the class's colour at a random place inside the model's centre crop; returns the
/// image and the patch's top-left corner.
fn patch_image(seed: u64, class: usize) -> (RgbImage, (u32, u32)) {
    let mut rng = SplitMix64::new(seed);
    let mut below = |n: u32| rng.below(n as usize) as u32;
    let mut img = RgbImage::from_pixel(SIDE, SIDE, Rgb([128, 128, 128]));
    for _ in 0..CLUTTER {
        let (w, h) = (8 + below(56), 8 + below(56));
        let (x, y) = (below(SIDE - w), below(SIDE - h));
        let v = 100 + below(56) as u8;
        for yy in y..y + h {
            for xx in x..x + w {
                img.put_pixel(xx, yy, Rgb([v, v, v]));
            }
        }
    }
    // MobileNetV2 crops the centre 224 of 256: keep the patch inside it with a margin.
    let (lo, hi) = (24, SIDE - 24 - PATCH);
    let (px, py) = (lo + below(hi - lo), lo + below(hi - lo));
    for yy in py..py + PATCH {
        for xx in px..px + PATCH {
            img.put_pixel(xx, yy, Rgb(COLOURS[class]));
        }
    }
    (img, (px, py))
}

const CLUTTER: usize = 12;

#[test]
fn grad_cam_points_at_the_patch_that_decides_the_class() {
    require_ort_library();
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    for (k, class) in CLASSES.iter().enumerate() {
        for i in 0..TRAIN {
            let (img, _) = patch_image(1_000 * (k as u64 + 1) + i, k);
            save(
                &img,
                &cwd.join("photos").join(class).join(format!("{i:03}.png")),
            );
        }
    }
    std::fs::write(cwd.join("graft.toml"), QUICK).expect("config");
    ok(graft_in(
        &cache,
        cwd,
        &[
            "train",
            "photos",
            "--name",
            "patch",
            "--config",
            "graft.toml",
            "--no-track",
        ],
    ));
    // New images, never trained on, with known patch places.
    let mut places = std::collections::HashMap::new();
    for i in 0..HELD {
        let class = (i % 3) as usize;
        let (img, at) = patch_image(90_000 + i, class);
        let path = cwd
            .join("held")
            .join(CLASSES[class])
            .join(format!("{i:03}.png"));
        save(&img, &path);
        places.insert(path.to_string_lossy().into_owned(), at);
    }
    let held = cwd.join("held");
    // The pointing game at the last map (7×7) and at block 13 (14×14), against a random map;
    // the sanity check alongside.
    let mut hits_of = std::collections::BTreeMap::new();
    let mut cascade_of = std::collections::BTreeMap::new();
    for (method, layer) in [
        ("grad-cam", "last"),
        ("grad-cam++", "last"),
        ("layer-cam", "13"),
        ("grad-cam", "13"),
        ("integrated-gradients", "13"),
        ("score-cam", "last"),
    ] {
        let name = format!("{method}@{layer}");
        let mut args = vec![
            "explain",
            "--run",
            "runs/patch",
            "--dir",
            held.to_str().expect("utf-8"),
            "--method",
            method,
            "--name",
            &name,
            "--save",
            "none",
            "--json",
            "--sanity",
        ];
        if layer != "last" {
            args.extend(["--layer", layer]);
        }
        let recs = records(&ok(graft_in(&cache, cwd, &args)));
        assert_eq!(recs.len(), HELD as usize);
        let right = recs.iter().filter(|r| r["predicted"] == r["true"]).count();
        assert!(
            right * 10 >= HELD as usize * 9,
            "the model must see the patch: {right}/{HELD}"
        );
        let hits = recs.iter().filter(|r| on_patch(r, &places)).count();
        let sanity: Vec<f64> = recs
            .iter()
            .filter_map(|r| r["sanity_rank_correlation"].as_f64())
            .collect();
        let sanity = sanity.iter().sum::<f64>() / sanity.len().max(1) as f64;
        // The cascade (head, then the encoder's top blocks too): each step's mean.
        let steps = recs[0]["sanity_cascade"].as_array().map_or(0, Vec::len);
        let cascade: Vec<f64> = (0..steps)
            .map(|k| {
                let v: Vec<f64> = recs
                    .iter()
                    .filter_map(|r| r["sanity_cascade"][k]["rank_correlation"].as_f64())
                    .collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            })
            .collect();
        eprintln!(
            "{name}: peak on the patch for {hits}/{HELD} images; sanity {sanity:.2}, \
             cascade {cascade:.2?}"
        );
        hits_of.insert(name.clone(), (hits, sanity));
        cascade_of.insert(name.clone(), cascade);
    }
    // A peak on a random cell of the 7×7 map hits as often as the share of cell centres
    // (at 32 + 32·i on the original image: the crop starts at 16) inside the hit window.
    let window = |lo: u32| {
        (0..7)
            .filter(|i| {
                let c = f64::from(32 + 32 * i);
                (f64::from(lo) - TOLERANCE..f64::from(lo + PATCH) + TOLERANCE).contains(&c)
            })
            .count()
    };
    let chance: f64 = places
        .values()
        .map(|&(px, py)| (window(px) * window(py)) as f64 / 49.0)
        .sum();
    // Measured on this data (AVX-512 VNNI, ONNX Runtime 1.32): 55 of 60 for Grad-CAM at the
    // last map, 48 for Grad-CAM++; at block 13, 58 for integrated gradients, 50 for Layer-CAM
    // and 38 for Grad-CAM (its one weight per channel loses where the patch is; border cells
    // light up). Grad-CAM at the last map and integrated gradients at block 13 are held to the
    // issue's 90%; Grad-CAM++ and Layer-CAM to two thirds of the images, and every gradient
    // method to twice what a random cell would hit (10.7).
    eprintln!("a random cell would hit {chance:.1} of {HELD}");
    for name in ["grad-cam@last", "integrated-gradients@13"] {
        let (hits, _) = hits_of[name];
        assert!(
            hits * 10 >= HELD as usize * 9,
            "{name}: pointing game {hits}/{HELD}, below 90%"
        );
    }
    for name in ["grad-cam++@last", "layer-cam@13"] {
        let (hits, _) = hits_of[name];
        assert!(
            hits * 3 >= HELD as usize * 2,
            "{name}: pointing game {hits}/{HELD}"
        );
    }
    for name in [
        "grad-cam@last",
        "grad-cam++@last",
        "layer-cam@13",
        "grad-cam@13",
        "integrated-gradients@13",
    ] {
        let (hits, _) = hits_of[name];
        assert!(
            hits as f64 >= 2.0 * chance,
            "{name}: {hits} hits, chance {chance:.1}"
        );
    }
    // Score-CAM, gradient-free, is the cross-check: measured 40 of 60.
    let (score, _) = hits_of["score-cam@last"];
    assert!(
        score as f64 >= 2.0 * chance,
        "score-cam: {score} hits, chance {chance:.1}"
    );
    // The randomisation check (Adebayo et al.'s cascade): with the head and the encoder's top
    // three blocks drawn at random, no gradient method's map still looks like the real one.
    // Measured, head then one, two, three blocks: Grad-CAM at the last map 0.22, 0.17, 0.01,
    // 0.00; at block 13 0.01 … −0.02; integrated gradients at block 13 0.00 … 0.02;
    // Layer-CAM at block 13 0.29 … 0.22. Grad-CAM++ at a
    // pooled head barely follows the head (its channel weight is nearly the gradient's sign;
    // measured 0.92) but does follow the encoder (−0.31 at the deepest step): the cascade
    // shows both.
    for name in [
        "grad-cam@last",
        "grad-cam++@last",
        "layer-cam@13",
        "grad-cam@13",
        "integrated-gradients@13",
    ] {
        let cascade = &cascade_of[name];
        assert_eq!(cascade.len(), 3, "{name}: {cascade:?}");
        assert!(
            cascade[2] < 0.3,
            "{name}: maps barely change with the top of the model random ({cascade:.2?})"
        );
    }
    for name in ["grad-cam@13", "integrated-gradients@13"] {
        assert!(hits_of[name].1 < 0.3, "{name}: {hits_of:?}");
    }
    assert!(hits_of["grad-cam++@last"].1 > 0.5, "{hits_of:?}");
    assert!(cascade_of["score-cam@last"].is_empty());
}

/// Whether a record's peak lies on the image's patch, within the pointing game's tolerance.
fn on_patch(r: &Value, places: &std::collections::HashMap<String, (u32, u32)>) -> bool {
    let (px, py) = places[r["path"].as_str().expect("path")];
    let (x, y) = (
        r["peak"]["x"].as_f64().expect("x"),
        r["peak"]["y"].as_f64().expect("y"),
    );
    let near = |v: f64, lo: u32| {
        (f64::from(lo) - TOLERANCE..f64::from(lo + PATCH) + TOLERANCE).contains(&v)
    };
    near(x, px) && near(y, py)
}

const TRAIN: u64 = 200;
const HELD: u64 = 60;

#[test]
fn every_mode_on_the_demo_run_with_query_resume_and_quality_against_random() {
    require_ort_library();
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    // graft train takes the [explain] table too, and graft explain reads it from the run.
    std::fs::write(
        cwd.join("graft.toml"),
        format!("{QUICK}[explain]\ntop_k = 2\n"),
    )
    .expect("config");
    let demo = demo();
    ok(graft_in(
        &cache,
        cwd,
        &[
            "train",
            demo.to_str().expect("utf-8"),
            "--name",
            "demo",
            "--config",
            "graft.toml",
            "--no-track",
        ],
    ));
    let run = "runs/demo";

    // Grad-CAM against a random map on the same 40 test images: deletion AUC lower.
    demo_subset(&cwd.join("few"), 10, 2);
    let mut auc = Vec::new();
    for method in ["grad-cam", "random"] {
        let o = ok(graft_in(
            &cache,
            cwd,
            &[
                "explain", "--run", run, "--split", "test", "--limit", "40", "--method", method,
                "--name", method, "--save", "none", "--json",
            ],
        ));
        let recs = records(&o);
        assert_eq!(recs.len(), 40);
        auc.push((mean(&recs, "deletion_auc"), mean(&recs, "insertion_auc")));
    }
    eprintln!(
        "deletion AUC grad-cam {:.3} vs random {:.3}; insertion {:.3} vs {:.3}",
        auc[0].0, auc[1].0, auc[0].1, auc[1].1
    );
    assert!(auc[0].0 < auc[1].0, "deletion: {auc:?}");

    // Each explanation is a tracked run (runs/graft.db): its set, method and mean metrics.
    let listed = ok(graft_in(&cache, cwd, &["runs", "list", "--json"]));
    let runs: Value = serde_json::from_str(&stdout(&listed)).expect("runs JSON");
    let explained: Vec<&Value> = runs
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["command"] == "explain")
        .collect();
    assert_eq!(explained.len(), 2, "{runs}");
    let gc = explained
        .iter()
        .find(|r| r["params"]["set"] == "grad-cam")
        .expect("the grad-cam set");
    assert_eq!(gc["status"], "finished");
    assert_eq!(gc["params"]["method"], "grad-cam");
    assert_eq!(gc["metrics"]["explained_images"].as_f64(), Some(40.0));
    let tracked = gc["metrics"]["deletion_auc"]
        .as_f64()
        .expect("deletion_auc");
    assert!(
        (tracked - auc[0].0).abs() < 1e-4,
        "{tracked} vs {}",
        auc[0].0
    );

    // A few images: the four-panel figure, the records in a table.
    let one = cwd.join("few/ankle_boot");
    let first = std::fs::read_dir(&one)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .min()
        .expect("an image");
    let o = ok(graft_in(
        &cache,
        cwd,
        &["explain", "--run", run, first.to_str().expect("utf-8")],
    ));
    let out = stdout(&o);
    assert!(
        out.contains("deletion AUC") && out.contains("explain.jsonl"),
        "{out}"
    );
    let figures: Vec<_> = std::fs::read_dir(cwd.join(run).join("explain/images/figures"))
        .expect("figures")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(figures.len(), 1);
    let fig = image::open(figures[0].path()).expect("a PNG").to_rgb8();
    assert!(
        fig.width() > 900 && fig.height() > 500,
        "{:?}",
        fig.dimensions()
    );

    // Score-CAM, with its figure (each top class's map from the same masked images).
    let score = records(&ok(graft_in(
        &cache,
        cwd,
        &[
            "explain",
            "--run",
            run,
            first.to_str().expect("utf-8"),
            "--method",
            "score-cam",
            "--name",
            "score",
            "--json",
        ],
    )));
    assert_eq!(score[0]["method"], "score-cam");
    assert!(score[0]["figure"].is_string(), "{}", score[0]);

    // The test split's mistakes, most confident first, true class beside the predicted.
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "explain",
            "--run",
            run,
            "--misclassified",
            "--limit",
            "3",
            "--json",
        ],
    ));
    let wrong = records(&o);
    assert!(!wrong.is_empty() && wrong.len() <= 3);
    for w in &wrong {
        assert_ne!(w["true"], w["predicted"], "{w}");
        assert_eq!(
            w["top"].as_array().expect("top").len(),
            2,
            "[explain] top_k: {w}"
        );
        assert!(w["figure"].is_string(), "{w}");
    }
    let p: Vec<f64> = wrong
        .iter()
        .map(|w| w["probability"].as_f64().expect("p"))
        .collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "{p:?}");

    // Mean maps per class and per confusion over the test split.
    let o = ok(graft_in(
        &cache,
        cwd,
        &["explain", "--run", run, "--class-mean"],
    ));
    assert!(stdout(&o).contains("confusions"), "{}", stdout(&o));
    let means: Value = serde_json::from_slice(
        &std::fs::read(cwd.join(run).join("explain/class-mean/class_means.json")).expect("json"),
    )
    .expect("parses");
    let counted: u64 = ["classes", "confusions"]
        .iter()
        .flat_map(|k| means[k].as_array().expect("list").iter())
        .map(|m| m["images"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted, 150, "every test image in one group");
    assert_eq!(means["classes"].as_array().expect("classes").len(), 10);
    let side = means["side"].as_u64().expect("side") as usize;
    assert!(means["classes"][0]["heat"].as_array().expect("heat").len() == side * side);
    image::open(cwd.join(run).join("explain/class-mean/class_means.png")).expect("a PNG");

    // graft eval embeds what graft explain wrote for the current model.
    ok(graft_in(
        &cache,
        cwd,
        &["eval", "--run", run, "--latency", "0", "--no-track"],
    ));
    let html = std::fs::read_to_string(cwd.join(run).join("report.html")).expect("report");
    assert!(
        html.contains("<h2>Explanations</h2>"),
        "no Explanations section"
    );
    assert!(html.contains("<td>misclassified</td>") && html.contains("mean maps per class"));

    // Production photos: verdicts filed as folders; suspicious-only saves no normal figure.
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "explain",
            "--run",
            run,
            "--production",
            "few",
            "--save",
            "suspicious-only",
            "--json",
        ],
    ));
    let prod = records(&o);
    let base = cwd.join(run).join("explain/production");
    let count = |sub: &str| std::fs::read_dir(base.join(sub)).map_or(0, |d| d.count());
    let suspicious = prod.iter().filter(|r| r["suspicious"] == true).count();
    assert_eq!(count("suspicious"), suspicious);
    assert_eq!(count("normal"), 0);

    // explain query filters the file.
    let file = base.join("explain.jsonl");
    let file = file.to_str().expect("utf-8");
    let all = records(&ok(graft_in(
        &cache,
        cwd,
        &["explain", "query", file, "--json"],
    )));
    assert_eq!(all.len(), 20);
    let sus = records(&ok(graft_in(
        &cache,
        cwd,
        &["explain", "query", file, "--suspicious", "--json"],
    )));
    assert_eq!(sus.len(), suspicious);
    assert!(sus
        .iter()
        .all(|r| !r["reasons"].as_array().expect("reasons").is_empty()));
    let low = records(&ok(graft_in(
        &cache,
        cwd,
        &[
            "explain",
            "query",
            file,
            "--low-confidence",
            "0.7",
            "--class",
            "bag",
            "--json",
        ],
    )));
    assert!(low
        .iter()
        .all(|r| r["probability"].as_f64().expect("p") < 0.7
            && [&r["predicted"], &r["target"], &r["true"]]
                .iter()
                .any(|c| *c == "bag")));
    let table = stdout(&ok(graft_in(
        &cache,
        cwd,
        &["explain", "query", file, "--suspicious"],
    )));
    assert!(table.contains(&format!("{suspicious} matching")), "{table}");

    // Resumable: kill -9 once the first image is written, rerun, every image once.
    std::fs::write(cwd.join("slow.toml"), "[explain]\nbatch = 1\n").expect("config");
    let log = cwd.join(run).join("explain/resume/explain.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args([
            "explain",
            "--run",
            run,
            "--dir",
            "few",
            "--name",
            "resume",
            "--config",
            "slow.toml",
            "--save",
            "none",
        ])
        .current_dir(cwd)
        .env("GRAFT_CACHE", &cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 2 {
        assert!(Instant::now() < deadline, "no record after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let before = std::fs::read_to_string(&log).expect("log").lines().count();
    assert!(before < 20, "finished before the kill; nothing resumed");
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "explain", "--run", run, "--dir", "few", "--name", "resume", "--save", "none",
        ],
    ));
    assert!(stderr(&o).contains("explained before"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).expect("log");
    let paths: std::collections::BTreeSet<&str> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("whole lines only");
            v["path"].as_str().expect("path").to_string().leak() as &str
        })
        .collect();
    assert_eq!(text.lines().count(), 20, "each image once");
    assert_eq!(paths.len(), 20);

    // Bad input: a clear message, not a panic.
    std::fs::write(cwd.join("few/not-an-image.png"), b"hello").expect("write");
    let o = graft_in(
        &cache,
        cwd,
        &["explain", "--run", run, "few/not-an-image.png"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not-an-image.png"), "{}", stderr(&o));
    let o = graft_in(
        &cache,
        cwd,
        &["explain", "--run", run, "--class", "zebra", "x.png"],
    );
    assert!(!o.status.success() && stderr(&o).contains("not one of the run's classes"));
    let o = graft_in(&cache, cwd, &["explain", "--run", "runs/nope", "x.png"]);
    assert!(
        !o.status.success() && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );

    // The benchmark runs (its timings are for people, not for asserts): every case timed.
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "bench",
            "explain",
            "--run",
            run,
            "--limit",
            "3",
            "--steps",
            "4",
            "--no-reference",
            "--json",
            "bench.json",
        ],
    ));
    assert!(stdout(&o).contains("Grad-CAM, block 13"), "{}", stdout(&o));
    let bench: Value =
        serde_json::from_slice(&std::fs::read(cwd.join("bench.json")).expect("bench.json"))
            .expect("JSON");
    assert!(
        stdout(&o).contains("Integrated grads, block 13"),
        "{}",
        stdout(&o)
    );
    for case in [
        "grad_cam_last",
        "grad_cam_block",
        "grad_cam_quality",
        "ig_block",
    ] {
        let ms = bench[case]["graft_ms"].as_f64().unwrap_or(0.0);
        assert!(ms > 0.0, "{case}: {bench}");
    }
}
