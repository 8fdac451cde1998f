//! `--encoder FILE.onnx`: a user's own feature extractor through the pipeline, with two files.
//!
//! - One graft writes itself: MobileNetV2 with the real weights, exported with its feature map
//!   as an output. Its features must equal the named `mobilenet-v2` encoder's, and the run
//!   trains, predicts, explains at the map and exports with the head grafted onto the file.
//! - One PyTorch's exporter wrote (`tests/fixtures/tinynet.onnx`, from
//!   scripts/onnx-encoder-fixture.py): two outputs, a batch fixed at 1, a fixed 64×64 input
//!   called "pixel_values". Every refusal names the file and the flag that fixes it.

mod common;
#[path = "serve/http.rs"]
mod http;

use std::path::Path;
use std::process::Output;

use common::{cache_with_mobilenet, demo_subset, graft_in, require_ort_library, stderr, stdout};
use graft_features::FeatureCache;
use graft_model::arch::{spec_for, EncoderKind};
use graft_model::onnx::{encoder_to_onnx, read_model, ExportOptions};

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    o
}

/// The command fails and its message contains every one of `want`.
fn refused(o: Output, want: &[&str]) {
    let msg = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "should fail: {msg}");
    for w in want {
        assert!(msg.contains(w), "`{w}` missing from: {msg}");
    }
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How far two caches' rows differ beyond what the arithmetic allows when both pool the same
/// non-negative map of `locations` values per channel (after a ReLU) in another order: each
/// mean of f32 values carries at most `locations`·2⁻²⁴ of its own size in rounding (recursive
/// summation, then the division), so two differ by up to twice that; storing each in f16 then
/// moves them apart by at most one f16 step (|x|·2⁻¹⁰, or 2⁻²⁴ among subnormals). Positive:
/// the largest excess; zero or below: within the bound.
fn worst_excess(a: &FeatureCache, b: &FeatureCache, locations: usize) -> f32 {
    let relative = 2.0 * locations as f32 * 2f32.powi(-24) + 2f32.powi(-10);
    assert_eq!(a.len(), b.len());
    assert_eq!(a.feature_dim(), b.feature_dim());
    let mut worst = f32::NEG_INFINITY;
    for i in 0..a.len() {
        let (ra, rb) = (a.row(i).expect("row"), b.row(i).expect("row"));
        for (x, y) in ra.iter().zip(&rb) {
            let allowed = x.abs().max(y.abs()) * relative + 2f32.powi(-24);
            worst = worst.max((x - y).abs() - allowed);
        }
    }
    worst
}

#[test]
fn a_graft_written_mobilenet_file_gives_the_named_encoders_features_and_a_whole_run() {
    require_ort_library();
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    let weights =
        graft_model::fetch::load(EncoderKind::MobileNetV2, &cache).expect("imported weights");
    let spec = spec_for(EncoderKind::MobileNetV2, &weights).expect("spec");
    let opts = ExportOptions {
        input_size: None,
        logits: false,
        feature_map: true,
    };
    let file = encoder_to_onnx(&spec, &weights, opts).expect("export");
    std::fs::write(cwd.join("mnv2.onnx"), &file).expect("write");
    demo_subset(&cwd.join("photos"), 3, 12);

    // The same network by name and as a file: the same features, to f16 storage.
    ok(graft_in(
        &cache,
        cwd,
        &[
            "extract",
            "--data",
            "photos",
            "--encoder",
            "mobilenet-v2",
            "--out",
            "named",
        ],
    ));
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "extract",
            "--data",
            "photos",
            "--encoder",
            "mnv2.onnx",
            "--output",
            "feature_map",
            "--out",
            "file",
        ],
    ));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("mnv2.onnx"), "{said}");
    let named = FeatureCache::open(&cwd.join("named")).expect("named cache");
    let from_file = FeatureCache::open(&cwd.join("file")).expect("file cache");
    // ONNX Runtime pools the named encoder's 7×7 map (after ReLU6), graft the file's.
    let excess = worst_excess(&named, &from_file, 49);
    assert!(
        excess <= 0.0,
        "features differ by {excess} beyond f16 rounding"
    );
    let header = from_file.header();
    assert!(header.weights.starts_with("mnv2-"), "{}", header.weights);
    assert_eq!(header.preprocess, EncoderKind::MobileNetV2.preprocess());

    // A whole run on the file.
    ok(graft_in(
        &cache,
        cwd,
        &[
            "train",
            "photos",
            "--encoder",
            "mnv2.onnx",
            "--output",
            "feature_map",
            "--name",
            "f",
            "--no-track",
        ],
    ));
    let run = cwd.join("runs/f");
    let model = json(&run.join("model.json"));
    assert_eq!(model["encoder"]["output"], "feature_map", "{model}");
    let metrics = json(&run.join("metrics.json"));
    let acc = metrics["best"]["test_accuracy"]
        .as_f64()
        .expect("test accuracy");
    assert!(
        acc >= 0.5,
        "MobileNetV2 features separate three demo classes: {acc}"
    );
    let img = std::fs::read_dir(cwd.join("photos/bag"))
        .expect("bag")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("an image");
    let img = img.to_str().expect("utf8");
    let o = ok(graft_in(&cache, cwd, &["predict", "--run", "runs/f", img]));
    assert!(stdout(&o).contains('%'), "{}", stdout(&o));
    ok(graft_in(&cache, cwd, &["explain", "--run", "runs/f", img]));
    let line = std::fs::read_to_string(run.join("explain/images/explain.jsonl")).expect("jsonl");
    let rec: serde_json::Value =
        serde_json::from_str(line.lines().next().expect("a line")).expect("a record");
    assert_eq!(rec["layer"], "last", "{rec}");
    let o = ok(graft_in(&cache, cwd, &["export", "--run", "runs/f"]));
    assert!(stdout(&o).contains("same top-1"), "{}", stdout(&o));
    // The head was appended: the file's outputs stay, graft's are added.
    let exported = std::fs::read(run.join("model.onnx")).expect("model.onnx");
    assert_eq!(
        &exported[..file.len()],
        &file[..],
        "the file's own bytes come first"
    );
    let info = read_model(&exported).expect("reads");
    for out in ["features", "feature_map", "probabilities"] {
        assert!(info.output(out).is_some(), "no output {out}");
    }
}

#[test]
fn a_pytorch_exported_file_with_two_outputs_and_a_fixed_batch() {
    require_ort_library();
    common::required_dir("GRAFT_ORT_WEB_DIR");
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cwd.join("cache");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tinynet.onnx");
    std::fs::copy(&fixture, cwd.join("tinynet.onnx")).expect("copy fixture");
    demo_subset(&cwd.join("photos"), 3, 10);
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "photos",
            "--encoder",
            "tinynet.onnx",
            "--no-track",
            "--epochs",
            "3",
        ];
        args.extend_from_slice(extra);
        graft_in(&cache, cwd, &args)
    };

    // What the file cannot be told apart on, or cannot do, is named with the fix.
    refused(
        train(&[]),
        &["tinynet.onnx", "conv_map", "embedding", "--output"],
    );
    refused(
        train(&["--output", "embedding", "--input-size", "224"]),
        &["tinynet.onnx", "fixed at 64×64", "--input-size 224"],
    );
    refused(
        train(&["--output", "embedding", "--backend", "burn"]),
        &["ONNX Runtime", "not burn"],
    );
    refused(train(&["--output", "logits"]), &["no output `logits`"]);
    refused(
        graft_in(
            &cache,
            cwd,
            &[
                "train",
                "photos",
                "--encoder",
                "mobilenet-v2",
                "--mean",
                "0.5,0.5,0.5",
            ],
        ),
        &["--mean", "--encoder FILE.onnx"],
    );

    // Pooled features: the file's own mean over the map.
    ok(train(&["--output", "embedding", "--name", "pooled"]));
    let pooled = cwd.join("runs/pooled");
    let config = std::fs::read_to_string(pooled.join("config.toml")).expect("config");
    assert!(
        config.contains("size = 64") && config.contains("resize_shorter = 73"),
        "the input size comes from the file, the resize from torchvision's ratio: {config}"
    );
    let model = json(&pooled.join("model.json"));
    let id = model["weights"].as_str().expect("weights id");
    let sha = graft_data::hash::sha256_bytes(&std::fs::read(&fixture).expect("fixture"));
    assert_eq!(id, format!("tinynet-{}", &sha[..12]));
    let img = std::fs::read_dir(cwd.join("photos/coat"))
        .expect("coat")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("an image");
    let img = img.to_str().expect("utf8");
    ok(graft_in(
        &cache,
        cwd,
        &["predict", "--run", "runs/pooled", img],
    ));
    refused(
        graft_in(&cache, cwd, &["explain", "--run", "runs/pooled", img]),
        &["pooled features", "--output"],
    );
    refused(
        graft_in(&cache, cwd, &["finetune", "--run", "runs/pooled"]),
        &["Fine-tuning", "tinynet.onnx", "graft models list"],
    );
    refused(
        graft_in(
            &cache,
            cwd,
            &["export", "--run", "runs/pooled", "--precision", "int8"],
        ),
        &["INT8 export", "tinynet.onnx"],
    );
    let o = ok(graft_in(&cache, cwd, &["export", "--run", "runs/pooled"]));
    assert!(stdout(&o).contains("same top-1"), "{}", stdout(&o));
    let info = read_model(&std::fs::read(pooled.join("model.onnx")).expect("onnx")).expect("reads");
    assert_eq!(info.inputs[0].name, "pixel_values");
    assert!(info.output("probabilities").is_some());

    // The map, average-pooled by graft, equals the file's own pooled output.
    for (out, dir) in [("embedding", "e"), ("conv_map", "m")] {
        ok(graft_in(
            &cache,
            cwd,
            &[
                "extract",
                "--data",
                "photos",
                "--encoder",
                "tinynet.onnx",
                "--output",
                out,
                "--out",
                dir,
            ],
        ));
    }
    let e = FeatureCache::open(&cwd.join("e")).expect("cache");
    let m = FeatureCache::open(&cwd.join("m")).expect("cache");
    // The 8×8 map comes after a ReLU.
    let excess = worst_excess(&e, &m, 64);
    assert!(
        excess <= 0.0,
        "graft's pooling differs from the file's by {excess}"
    );

    // The map: an attention head reads it, Grad-CAM explains it, export appends to it.
    ok(train(&[
        "--output",
        "conv_map",
        "--name",
        "map",
        "--heads",
        "attention",
    ]));
    ok(graft_in(
        &cache,
        cwd,
        &["explain", "--run", "runs/map", img],
    ));
    // The randomisation check re-draws the head alone (the file's blocks are not graft's).
    ok(graft_in(
        &cache,
        cwd,
        &[
            "explain", "--run", "runs/map", "--sanity", "--name", "s", img,
        ],
    ));
    let line =
        std::fs::read_to_string(cwd.join("runs/map/explain/s/explain.jsonl")).expect("jsonl");
    let rec: serde_json::Value =
        serde_json::from_str(line.lines().next().expect("a line")).expect("a record");
    assert!(rec["sanity_rank_correlation"].is_number(), "{rec}");
    assert!(rec["sanity_cascade"].is_null(), "no encoder step: {rec}");
    refused(
        graft_in(
            &cache,
            cwd,
            &[
                "explain",
                "--run",
                "runs/pooled",
                "--layer",
                "1",
                "--name",
                "l",
                img,
            ],
        ),
        &["earlier block", "tinynet.onnx"],
    );
    let o = ok(graft_in(&cache, cwd, &["export", "--run", "runs/map"]));
    assert!(stdout(&o).contains("same top-1"), "{}", stdout(&o));

    // Served: the head appended to the file answers as `graft predict` does, explains, and
    // refuses bad input with 4xx JSON.
    let o = ok(graft_in(
        &cache,
        cwd,
        &["predict", "--run", "runs/map", "--json", "-", img],
    ));
    let predicted: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    let top = &predicted["predictions"][0]["top"][0];
    let server = http::Server::spawn(&cache, cwd, &["--run", "runs/map"], &[]);
    let a = http::agent();
    let png = std::fs::read(img).expect("image");
    let r = http::post(&a, &server.url("/predict"), Some("image/png"), &png);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["prediction"], top["class"], "{}", r.text);
    // Two f32 paths to one probability (the file's graph then Rust's head, and the graph with
    // the head folded in): a few ulps of the largest logit apart, far below 1e-4.
    let (p_api, p_cli) = (
        r.json["probability"].as_f64().expect("p"),
        top["probability"].as_f64().expect("p"),
    );
    assert!((p_api - p_cli).abs() < 1e-4, "{p_api} vs {p_cli}");
    let r = http::post(&a, &server.url("/explain"), Some("image/png"), &png);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["map"]["side"], 8, "{}", r.text);
    http::assert_error(
        &http::post(
            &a,
            &server.url("/explain"),
            Some("image/png"),
            &png[..png.len() / 2],
        ),
        422,
        "corrupt_image",
    );
    drop(server);

    // The offline web page feeds the file's own input name.
    let web = cwd.join("web");
    ok(graft_in(
        &cache,
        cwd,
        &[
            "export",
            "--run",
            "runs/map",
            "--format",
            "web",
            "--out",
            web.to_str().expect("utf8"),
        ],
    ));
    assert_eq!(json(&web.join("model.json"))["input"], "pixel_values");

    // A file changed after training is not silently used with the old head.
    let mut bytes = std::fs::read(cwd.join("tinynet.onnx")).expect("read");
    // ModelProto field 6 (doc_string): a valid model, other bytes.
    bytes.extend_from_slice(&[0x32, 0x01, b'x']);
    std::fs::write(cwd.join("tinynet.onnx"), &bytes).expect("write");
    refused(
        graft_in(&cache, cwd, &["predict", "--run", "runs/pooled", img]),
        &["tinynet.onnx changed", "put the original file back"],
    );
    // Training again takes the new file: its features replace the old ones.
    ok(train(&["--output", "embedding", "--name", "pooled"]));
    let model = json(&pooled.join("model.json"));
    let sha = graft_data::hash::sha256_bytes(&bytes);
    assert_eq!(model["weights"], format!("tinynet-{}", &sha[..12]));
    ok(graft_in(
        &cache,
        cwd,
        &["predict", "--run", "runs/pooled", img],
    ));
}
