//! Deterministic weights and inputs that a short Python script reproduces bit for bit, so that
//! graft's architectures can be checked against torchvision's without torch at test time
//! (`scripts/torchvision-fixtures.py` writes the reference outputs once; see
//! `tests/torchvision.rs`). Not pretrained: random weights scaled so that activations stay
//! of order one through every block.
//!
//! Value `i` of the tensor named `name`, under `seed`: SplitMix64's `i + 1`-th output from
//! the state `seed ^ FNV-1a(name)`, its top 53 bits as `u` in [0, 1), mapped by the tensor's
//! role in f64 and rounded once to f32 — every step exact or correctly rounded in IEEE
//! arithmetic, so NumPy gives the same bits.

use crate::arch::{torchvision_tensors, EncoderKind};
use crate::weights::{DType, StateDict, Tensor};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` values in [0, 1) for the tensor `name`.
pub fn uniform(name: &str, n: usize, seed: u64) -> impl Iterator<Item = f64> {
    let base = seed ^ fnv1a(name);
    (1..=n as u64).map(move |i| {
        let z = mix(base.wrapping_add(GOLDEN.wrapping_mul(i)));
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    })
}

/// The lowest BatchNorm scale of `kind`'s weights (scales are drawn in [floor, floor + 0.4)).
/// Chosen by measurement so that the pooled features stay of order one and still depend on
/// the input (they differ between two images by 3–15% of their size): lower, the signal
/// fades through the blocks and every image gives the biases' output; higher, it explodes.
fn bn_scale_floor(kind: EncoderKind) -> f64 {
    match kind {
        EncoderKind::EfficientNetB0 => 0.82,
        EncoderKind::MobileNetV3Small => 0.7,
        EncoderKind::MobileNetV3Large => 0.65,
        _ => 0.3,
    }
}

/// How a tensor's values are drawn, from its name and shape.
fn draw(name: &str, shape: &[usize], floor: f64, u: f64) -> f64 {
    let fan_in: usize = shape.iter().skip(1).product();
    if name.ends_with("running_var") {
        0.5 + u
    } else if name.ends_with("running_mean") || name.ends_with("bias") {
        0.2 * (u - 0.5)
    } else if shape.len() == 1 {
        // BatchNorm's scale.
        floor + 0.4 * u
    } else {
        // He's uniform bound for ReLU networks: variance 2 / fan-in.
        (2.0 * u - 1.0) * (6.0 / fan_in.max(1) as f64).sqrt()
    }
}

/// One tensor of `kind`'s weights, of `shape`, named `name`.
pub fn tensor(kind: EncoderKind, name: &str, shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    let floor = bn_scale_floor(kind);
    Tensor {
        shape: shape.to_vec(),
        data: uniform(name, n, seed)
            .map(|u| draw(name, shape, floor, u) as f32)
            .collect(),
        dtype: DType::F32,
    }
}

/// The torchvision state dict of `kind` with deterministic weights, for the architectures
/// whose layout graft writes down ([`torchvision_tensors`]); `None` for the others.
pub fn state_dict(kind: EncoderKind, seed: u64) -> Option<StateDict> {
    let mut sd = StateDict::new(format!("synthetic-{}-{seed}.safetensors", kind.name()));
    for (name, shape) in torchvision_tensors(kind)? {
        let t = tensor(kind, &name, &shape, seed);
        sd.insert(name, t);
    }
    Some(sd)
}

/// `n` images of 3×`size`×`size`, in [−2, 2) like normalised photos.
pub fn input(n: usize, size: usize, seed: u64) -> Vec<f32> {
    uniform("input", n * 3 * size * size, seed)
        .map(|u| (4.0 * u - 2.0) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // FNV-1a's published test vector, and SplitMix64's first output from state 0.
        assert_eq!(fnv1a("a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(mix(GOLDEN), 0xE220_A839_7B1D_CDAF);
        let u: Vec<f64> = uniform("x", 3, 7).collect();
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
        assert_ne!(u[0], u[1]);
        // Another name or seed draws other values.
        assert_ne!(uniform("y", 1, 7).next(), Some(u[0]));
        assert_ne!(uniform("x", 1, 8).next(), Some(u[0]));
    }

    #[test]
    fn published_sizes() {
        // torchvision's parameter counts and GFLOPS (multiply-adds) for the architectures
        // graft writes down whole.
        for (kind, params, gmacs) in [
            (EncoderKind::ResNet18, 11_689_512, 1.81),
            (EncoderKind::ResNet34, 21_797_672, 3.66),
            (EncoderKind::ResNet50, 25_557_032, 4.09),
            (EncoderKind::EfficientNetB0, 5_288_548, 0.39),
            (EncoderKind::MobileNetV3Small, 2_542_856, 0.06),
            (EncoderKind::MobileNetV3Large, 5_483_032, 0.22),
        ] {
            let sd = state_dict(kind, 1).expect("a layout");
            let spec = crate::arch::spec_for(kind, &sd).expect("spec");
            // The shapes alone give the same spec as a file with every tensor.
            assert_eq!(crate::arch::torchvision_spec(kind).as_ref(), Some(&spec));
            assert_eq!(spec.parameters(), params, "{kind}");
            let g = spec.multiply_adds() as f64 / 1e9;
            assert!((g - gmacs).abs() < 0.006, "{kind}: {g} GMACs");
        }
    }

    #[test]
    fn resnet_weights_have_every_key() {
        let sd = state_dict(EncoderKind::ResNet18, 1).expect("resnet");
        let spec = crate::arch::spec_for(EncoderKind::ResNet18, &sd).expect("spec");
        assert_eq!(spec.feature_dim, 512);
        assert!(state_dict(EncoderKind::MobileNetV2, 1).is_none());
    }
}
