//! What a finished fine-tune leaves in `RUN/finetune/`.

use graft_model::arch::NetSpec;
use graft_model::weights::{save_safetensors, StateDict, Tensor as WTensor};
use graft_run::files::write_file;
use graft_run::RunDir;
use graft_train::finetune::{Outcome, TopNet};
use graft_train::head::Head;
use graft_train::{HeadModel, Standardizer};

/// `encoder.safetensors` (the pretrained layout, trained blocks written back with neutral
/// BatchNorm so folding reproduces them), the head as `model.json` + `model.safetensors`, and
/// `history.csv`.
pub fn save_outputs(
    dir: &RunDir,
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
        for l in b.convs() {
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
        // Squeeze-and-excitation has no BatchNorm: its tensors go back as trained.
        for l in b.se.iter().flat_map(|se| [&se.reduce, &se.expand]) {
            sd.insert(
                l.weight.clone(),
                f32t(net.slots[i].shape.clone(), out.values[i].clone()),
            );
            sd.insert(
                l.bias.clone(),
                f32t(net.slots[i + 1].shape.clone(), out.values[i + 1].clone()),
            );
            i += 2;
        }
    }
    save_safetensors(&sd, &dir.encoder_weights())?;
    let mut layers = model.head.layers.clone();
    for l in &mut layers {
        l.w.clone_from(&out.values[i]);
        l.b.clone_from(&out.values[i + 1]);
        i += 2;
    }
    let d = model.meta.feature_dim;
    let mut meta = model.meta.clone();
    meta.temperature = 1.0;
    meta.encoder_file = Some(graft_run::ENCODER_FILE.to_string());
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
    head.save(dir.root())?;
    let header = [
        "stage",
        "epoch",
        "train_loss",
        "val_accuracy",
        "val_macro_f1",
    ];
    let rows = out.history.iter().map(|r| {
        [
            (r.stage + 1).to_string(),
            (r.epoch + 1).to_string(),
            format!("{:.6}", r.train_loss),
            format!("{:.6}", r.val_accuracy),
            format!("{:.6}", r.val_macro_f1),
        ]
    });
    let csv = graft_data::table::to_csv(&header, rows)?;
    write_file(&dir.history(), csv.as_bytes())?;
    Ok(())
}
