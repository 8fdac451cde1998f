//! What a finished fine-tune leaves in `RUN/finetune/`.

use std::fmt::Write as _;
use std::path::Path;

use graft_model::arch::NetSpec;
use graft_model::weights::{save_safetensors, StateDict, Tensor as WTensor};
use graft_train::finetune::{Outcome, TopNet};
use graft_train::head::Head;
use graft_train::model::write_atomic;
use graft_train::{HeadModel, Standardizer};

/// `encoder.safetensors` (the pretrained layout, trained blocks written back with neutral
/// BatchNorm so folding reproduces them), the head as `model.json` + `model.safetensors`, and
/// `history.csv`.
pub const ENCODER_FILE: &str = "encoder.safetensors";

pub fn save_outputs(
    dir: &Path,
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
    net: &TopNet,
    out: &Outcome,
) -> anyhow::Result<()> {
    let mut sd = weights.clone();
    let mut i = 0;
    let f32t = |shape: Vec<usize>, data: Vec<f32>| WTensor {
        shape,
        data,
        dtype: graft_model::weights::DType::F32,
    };
    for b in &spec.blocks[net.first..] {
        for l in &b.layers {
            let c = l.out_ch;
            sd.insert(
                l.conv.clone(),
                f32t(net.slots[i].shape.clone(), out.values[i].clone()),
            );
            sd.insert(
                format!("{}.bias", l.bn),
                f32t(vec![c], out.values[i + 1].clone()),
            );
            sd.insert(format!("{}.weight", l.bn), f32t(vec![c], vec![1.0; c]));
            sd.insert(
                format!("{}.running_mean", l.bn),
                f32t(vec![c], vec![0.0; c]),
            );
            // var + eps = 1: the fold divides by exactly one.
            sd.insert(
                format!("{}.running_var", l.bn),
                f32t(vec![c], vec![1.0 - spec.bn_eps; c]),
            );
            i += 2;
        }
    }
    save_safetensors(&sd, &dir.join(ENCODER_FILE))?;
    let mut layers = model.head.layers.clone();
    for l in &mut layers {
        l.w.clone_from(&out.values[i]);
        l.b.clone_from(&out.values[i + 1]);
        i += 2;
    }
    let d = model.meta.feature_dim;
    let mut meta = model.meta.clone();
    meta.temperature = 1.0;
    meta.encoder_file = Some(ENCODER_FILE.to_string());
    let head = HeadModel {
        meta,
        head: Head {
            spec: model.head.spec,
            layers,
        },
        standardizer: Standardizer {
            mean: vec![0.0; d],
            std: vec![1.0; d],
        },
    };
    head.save(dir)?;
    let mut csv = String::from("stage,epoch,train_loss,val_accuracy,val_macro_f1\n");
    for r in &out.history {
        let _ = writeln!(
            csv,
            "{},{},{:.6},{:.6},{:.6}",
            r.stage + 1,
            r.epoch + 1,
            r.train_loss,
            r.val_accuracy,
            r.val_macro_f1
        );
    }
    write_atomic(&dir.join("history.csv"), csv.as_bytes())?;
    Ok(())
}
