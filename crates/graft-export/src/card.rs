//! `model_card.md`: what a person deploying the file needs to know — its files and checks,
//! the preprocessing it expects, what it was trained on, how good it is, and its limits.

use std::fmt::Write as _;

use graft_train::HeadModel;

use crate::quant::WeightBits;
use crate::records::ExportRecords;

/// The headline evaluation the card quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct Quality {
    pub split: String,
    pub images: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Expected calibration error.
    pub ece: f64,
}

/// What the card is written from.
#[derive(Debug, Clone, Copy)]
pub struct Card<'a> {
    /// The run's name (the card's title).
    pub name: &'a str,
    pub model: &'a HeadModel,
    /// `None` when the run keeps no such evaluation (a fine-tuned run): the card then quotes
    /// the export checks only.
    pub quality: Option<&'a Quality>,
    /// Images trained and validated on.
    pub rows: Option<(usize, usize)>,
    pub records: &'a ExportRecords,
}

pub fn model_card(card: &Card<'_>) -> String {
    let m = &card.model.meta;
    let records = card.records;
    let mut s = String::new();
    let _ = writeln!(s, "# Model card: {}\n", card.name);
    let _ = writeln!(s, "## Files\n");
    for (precision, r) in records {
        let what = match precision.as_str() {
            "int8" => "INT8 weights and activations (QDQ), head in float",
            _ => "float32",
        };
        let _ = writeln!(
            s,
            "- `{}`: {what}, {:.1} MB, sha256 `{}`",
            r.file,
            r.bytes as f64 / 1e6,
            r.sha256
        );
    }
    let _ = writeln!(
        s,
        "- input `input` `[N, 3, {0}, {0}]` float32, RGB, CHW",
        m.preprocess.size
    );
    let _ = writeln!(
        s,
        "- outputs `probabilities` `[N, {}]` (softmax, calibrated), `features` `[N, {}]`\n",
        m.classes.len(),
        m.feature_dim
    );
    let _ = writeln!(s, "## Preprocessing (must match)\n");
    let _ = writeln!(
        s,
        "Resize the shorter side to {} ({:?}, antialiased), centre-crop {}×{}, scale to 0–1, subtract mean {:?}, divide by std {:?}.\n",
        m.preprocess.resize_shorter, m.preprocess.filter, m.preprocess.size, m.preprocess.size, m.preprocess.mean, m.preprocess.std
    );
    let _ = writeln!(s, "## Model\n");
    let _ = writeln!(
        s,
        "- encoder: {} (weights {}), frozen",
        m.encoder, m.weights
    );
    let _ = writeln!(
        s,
        "- head: {} (lr {}, balance {}), temperature {:.3}",
        m.head, m.train.lr, m.train.balance, m.temperature
    );
    let _ = writeln!(
        s,
        "- classes ({}): {}\n",
        m.classes.len(),
        m.classes.join(", ")
    );
    let _ = writeln!(s, "## Quality\n");
    if let Some(e) = &card.quality {
        let _ = writeln!(
            s,
            "- {} split, {} images: accuracy {:.4}, macro-F1 {:.4}, ECE {:.3}",
            e.split, e.images, e.accuracy, e.macro_f1, e.ece
        );
    }
    if let Some((train, val)) = card.rows {
        let _ = writeln!(s, "- trained on {train} images, validated on {val}");
    }
    for r in records.values() {
        let _ = write!(
            s,
            "- export check of `{}`: {} held-out images through ONNX Runtime vs graft, max probability difference {:.1e}, same top-1 on {}/{}",
            r.file, r.validated, r.max_diff, r.same_top1, r.validated
        );
        if let (Some(a), Some(b)) = (r.accuracy_graft, r.accuracy_file) {
            let _ = write!(s, "; accuracy {b:.4} (graft float {a:.4})");
        }
        if let Some(c) = r.calibration_images {
            let _ = write!(s, "; activation ranges from {c} training images");
        }
        if let Some(bits) = r.int8_weights {
            let cpu = match r.cpu_vnni {
                Some(true) => "a CPU with VNNI",
                Some(false) => "a CPU without VNNI",
                None => "an unrecorded CPU",
            };
            let _ = write!(
                s,
                "; {} weights, exported and checked on {cpu}",
                bits.name()
            );
        }
        if r.forced {
            let _ = write!(s, "; **written with --force past the accuracy limit**");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\n## Limits\n");
    let _ = writeln!(s, "- Knows only the classes above: any photo gets one of them. Treat a top probability below the threshold (default 0.70) as \"unsure\" and retake the photo.");
    let _ = writeln!(s, "- Quality holds for photos like the training set (same kind of camera, framing, light); measure again on new sources before relying on it.");
    match records.get("int8").and_then(|r| r.int8_weights) {
        Some(WeightBits::Eight) => {
            let _ = writeln!(s, "- The INT8 file has 8-bit weights: right on CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) and on ARM, but on x86-64 CPUs without VNNI (AVX2 laptops) ONNX Runtime's uint8×int8 kernels can saturate and lose accuracy. For those, export with `--int8-weights 7`.");
        }
        Some(WeightBits::Seven) => {
            let _ = writeln!(s, "- The INT8 file has 7-bit weights, which cannot saturate ONNX Runtime's 16-bit pair sums: right on every x86-64 CPU; fastest on CPUs with VNNI.");
        }
        None => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ExportRecord;
    use graft_model::arch::{EncoderKind, Preprocess};
    use graft_train::data::Standardizer;
    use graft_train::head::{Head, HeadSpec};
    use graft_train::model::ModelMeta;
    use graft_train::TrainConfig;

    fn model() -> HeadModel {
        let mut rng = graft_data::rng::SplitMix64::new(1);
        HeadModel {
            meta: ModelMeta {
                format_version: 1,
                head: HeadSpec::Linear,
                classes: vec!["healthy".into(), "rust".into()],
                feature_dim: 3,
                locations: 1,
                encoder: EncoderKind::MobileNetV2.into(),
                weights: "w1".into(),
                preprocess: Preprocess {
                    size: 224,
                    resize_shorter: 256,
                    mean: [0.485, 0.456, 0.406],
                    std: [0.229, 0.224, 0.225],
                    filter: Default::default(),
                },
                train: TrainConfig::default(),
                temperature: 1.25,
                encoder_file: None,
            },
            head: Head::new(HeadSpec::Linear, 3, 2, &mut rng),
            standardizer: Standardizer {
                mean: vec![0.0; 3],
                std: vec![1.0; 3],
            },
        }
    }

    fn record(file: &str, int8: Option<(WeightBits, bool)>, forced: bool) -> ExportRecord {
        ExportRecord {
            file: file.into(),
            sha256: "ab12".into(),
            bytes: 2_500_000,
            validated: 40,
            max_diff: 3e-7,
            same_top1: 40,
            accuracy_graft: Some(0.9),
            accuracy_file: Some(0.875),
            calibration_images: int8.map(|_| 16),
            int8_weights: int8.map(|(b, _)| b),
            cpu_vnni: int8.map(|(_, v)| v),
            forced,
        }
    }

    #[test]
    fn the_card_names_files_checks_quality_and_the_cpu_limits() {
        let m = model();
        let mut records = ExportRecords::new();
        records.insert("fp32".into(), record("model.onnx", None, false));
        let quality = Quality {
            split: "test".into(),
            images: 40,
            accuracy: 0.9,
            macro_f1: 0.88,
            ece: 0.031,
        };
        let card = model_card(&Card {
            name: "leaves",
            model: &m,
            quality: Some(&quality),
            rows: Some((120, 30)),
            records: &records,
        });
        for want in [
            "# Model card: leaves",
            "- `model.onnx`: float32, 2.5 MB, sha256 `ab12`",
            "`probabilities` `[N, 2]`",
            "Resize the shorter side to 256",
            "temperature 1.250",
            "- classes (2): healthy, rust",
            "- test split, 40 images: accuracy 0.9000, macro-F1 0.8800, ECE 0.031",
            "- trained on 120 images, validated on 30",
            "same top-1 on 40/40; accuracy 0.8750 (graft float 0.9000)",
        ] {
            assert!(card.contains(want), "missing {want:?} in\n{card}");
        }
        assert!(!card.contains("VNNI"), "{card}");

        // An INT8 file made without VNNI, forced past the limit; no quality figures known.
        records.insert(
            "int8".into(),
            record("model.int8.onnx", Some((WeightBits::Seven, false)), true),
        );
        let card = model_card(&Card {
            name: "leaves",
            model: &m,
            quality: None,
            rows: None,
            records: &records,
        });
        assert!(card.contains("7-bit weights, exported and checked on a CPU without VNNI"));
        assert!(card.contains("written with --force past the accuracy limit"));
        assert!(card.contains("activation ranges from 16 training images"));
        assert!(card.contains("cannot saturate"), "{card}");
        assert!(!card.contains("split,"), "{card}");
    }
}
