use burn::tensor::Device;
use graft_data::augment::one_hot;
use graft_data::rng::SplitMix64;

use super::*;
use crate::finetune::Source;
use crate::TrainError;

/// Images in memory: class 0 is bright in the top half, class 1 in the bottom half, class 2
/// in the left half; noise everywhere.
struct Synthetic {
    x: Vec<f32>,
    labels: Vec<usize>,
    per: usize,
}

impl Synthetic {
    fn new(n: usize, size: usize, seed: u64) -> Synthetic {
        let mut rng = SplitMix64::new(seed);
        let per = 3 * size * size;
        let mut x = Vec::with_capacity(n * per);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % 3;
            labels.push(class);
            for _c in 0..3 {
                for r in 0..size {
                    for col in 0..size {
                        let lit = match class {
                            0 => r < size / 2,
                            1 => r >= size / 2,
                            _ => col < size / 2,
                        };
                        let v = if lit { 0.5 } else { -0.5 };
                        x.push(v + rng.normal() as f32);
                    }
                }
            }
        }
        Synthetic { x, labels, per }
    }
}

impl Source for Synthetic {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn labels(&self) -> &[usize] {
        &self.labels
    }
    fn start(&self) -> usize {
        0
    }
    fn train_batch(&self, rows: &[usize], _epoch: u64) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let labels: Vec<usize> = rows.iter().map(|&i| self.labels[i]).collect();
        Ok((self.eval_batch(rows)?, one_hot(&labels, 3)))
    }
    fn eval_batch(&self, rows: &[usize]) -> Result<Vec<f32>, TrainError> {
        Ok(rows
            .iter()
            .flat_map(|&i| self.x[i * self.per..(i + 1) * self.per].iter().copied())
            .collect())
    }
}

fn quiet(_: &Event<'_>) -> bool {
    true
}

#[test]
fn resnet20_has_the_published_size_and_cost() {
    // He et al. 2016's ResNet-20 with zero-padding shortcuts (option A) has 269,722
    // parameters and ~41M multiply-adds at 32×32; the two projection shortcuts (option B)
    // add 2,752 parameters (1×1 convolutions and their BatchNorm) and 262,144 multiply-adds.
    let net = Net::new(Arch::Resnet20, 32, 10).expect("net");
    assert_eq!(net.parameters(), 269_722 + 2_752);
    let m = net.macs();
    assert!((40_000_000..42_000_000).contains(&m), "{m} multiply-adds");
    let cnn = Net::new(Arch::Cnn, 32, 10).expect("cnn");
    // 3·32·9 + 32·64·9 + 64·128·9 + 128·256·9 weights, 2 BatchNorm vectors each, the linear.
    let convs = 3 * 32 * 9 + 32 * 64 * 9 + 64 * 128 * 9 + 128 * 256 * 9;
    assert_eq!(
        cnn.parameters(),
        convs + 2 * (32 + 64 + 128 + 256) + 256 * 10 + 10
    );
    assert!(Net::new(Arch::Cnn, 8, 10).is_err());
}

#[test]
fn both_architectures_learn_a_synthetic_task() {
    let dev = Device::flex();
    let train = Synthetic::new(96, 16, 1);
    let val = Synthetic::new(48, 16, 2);
    for arch in [Arch::Cnn, Arch::Resnet20] {
        let tmp = tempfile::tempdir().expect("tmp");
        let net = Net::new(arch, 16, 3).expect("net");
        let cfg = BaselineConfig {
            size: 16,
            epochs: 6,
            batch: 16,
            lr: 3e-3,
            patience: 10,
            ..BaselineConfig::new(arch)
        };
        let out = run(
            &net,
            &cfg,
            &train,
            &val,
            &tmp.path().join("ck.bin"),
            &dev,
            &mut quiet,
        )
        .expect("train");
        assert!(out.best_f1 > 0.9, "{arch}: val macro-F1 {}", out.best_f1);
        let first = out.history[0].train_loss;
        let last = out.history.last().expect("rows").train_loss;
        assert!(last < first, "{arch}: loss {first} → {last}");
        // The kept weights score what their epoch recorded.
        let pred = predictions(&net, &out.values, &out.stats, &val, &dev).expect("pred");
        let conf = crate::Confusion::from_pairs(3, val.labels(), &pred);
        assert_eq!(conf.macro_f1(), out.best_f1);
    }
}

#[test]
fn stopped_mid_epoch_and_resumed_gives_the_same_weights() {
    let dev = Device::flex();
    let train = Synthetic::new(64, 16, 3);
    let val = Synthetic::new(24, 16, 4);
    let net = Net::new(Arch::Resnet20, 16, 3).expect("net");
    let cfg = BaselineConfig {
        size: 16,
        epochs: 2,
        batch: 16,
        checkpoint_every: 3,
        ..BaselineConfig::new(Arch::Resnet20)
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = run(
        &net,
        &cfg,
        &train,
        &val,
        &tmp.path().join("a.bin"),
        &dev,
        &mut quiet,
    )
    .expect("whole");
    let ck = tmp.path().join("b.bin");
    // Stop after update 5 (mid epoch 2 of 4 updates each), then after an epoch's end.
    let stop_at =
        |at: usize| move |e: &Event<'_>| !matches!(e, Event::Update { done, .. } if *done == at);
    assert!(run(&net, &cfg, &train, &val, &ck, &dev, &mut stop_at(5)).is_err());
    let resumed = run(&net, &cfg, &train, &val, &ck, &dev, &mut quiet).expect("resumed");
    assert!(resumed.resumed);
    assert_eq!(resumed.values, whole.values);
    assert_eq!(resumed.stats, whole.stats);
    assert_eq!(resumed.history.len(), whole.history.len());
    for (a, b) in resumed.history.iter().zip(&whole.history) {
        assert_eq!(a.train_loss, b.train_loss);
        assert_eq!(a.val_macro_f1, b.val_macro_f1);
    }
    // A finished checkpoint returns its result without training again.
    let again = run(&net, &cfg, &train, &val, &ck, &dev, &mut |e| {
        !matches!(e, Event::Update { .. })
    })
    .expect("finished");
    assert_eq!(again.values, whole.values);
}
