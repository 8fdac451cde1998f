//! Which encoder a run uses: an architecture graft knows by name ([`EncoderKind`]), or a
//! user's own ONNX feature extractor ([`OnnxEncoder`]). Written in every file that names the
//! encoder (config.toml, cache headers, model.json): a known one as its name, as before, a
//! file as a table, so older files read unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arch::{EncoderKind, Preprocess, UnknownEncoder};

mod onnx_file;
pub use onnx_file::{OnnxEncoder, OnnxEncoderError, OnnxLayout};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[serde(try_from = "Written")]
pub enum Encoder {
    Known(EncoderKind),
    Onnx(OnnxEncoder),
}

/// An encoder as a file may give it: a name or a path to an `.onnx` file (the sizes and
/// output left open), or the whole table.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Text(String),
    File(OnnxEncoder),
}

/// A name that is neither an encoder graft knows nor an `.onnx` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}, or your own ONNX feature extractor as FILE.onnx")]
pub struct NotAnEncoder(pub UnknownEncoder);

impl TryFrom<Written> for Encoder {
    type Error = NotAnEncoder;

    fn try_from(w: Written) -> Result<Encoder, NotAnEncoder> {
        match w {
            Written::Text(s) => s.parse(),
            Written::File(o) => Ok(Encoder::Onnx(o)),
        }
    }
}

impl Encoder {
    /// The architecture graft knows, if it is one.
    pub fn known(&self) -> Option<EncoderKind> {
        match self {
            Encoder::Known(k) => Some(*k),
            Encoder::Onnx(_) => None,
        }
    }

    pub fn onnx(&self) -> Option<&OnnxEncoder> {
        match self {
            Encoder::Known(_) => None,
            Encoder::Onnx(o) => Some(o),
        }
    }

    /// How images are prepared for it.
    pub fn preprocess(&self) -> Preprocess {
        match self {
            Encoder::Known(k) => k.preprocess(),
            Encoder::Onnx(o) => o.preprocess,
        }
    }

    /// A short name for run folders: the known name, or the file's stem.
    pub fn short_name(&self) -> String {
        match self {
            Encoder::Known(k) => k.name().to_string(),
            Encoder::Onnx(o) => o.stem(),
        }
    }

    /// Everything an ONNX file leaves open filled in ([`OnnxEncoder::resolve`]).
    pub fn resolve(&self) -> Result<Encoder, OnnxEncoderError> {
        match self {
            Encoder::Known(k) => Ok(Encoder::Known(*k)),
            Encoder::Onnx(o) => Ok(Encoder::Onnx(o.resolve()?)),
        }
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::Known(EncoderKind::MobileNetV2)
    }
}

impl From<EncoderKind> for Encoder {
    fn from(k: EncoderKind) -> Encoder {
        Encoder::Known(k)
    }
}

impl PartialEq<EncoderKind> for Encoder {
    fn eq(&self, other: &EncoderKind) -> bool {
        self.known() == Some(*other)
    }
}

/// `encoder == "mobilenet-v2"`: compares the name users type.
impl PartialEq<&str> for Encoder {
    fn eq(&self, other: &&str) -> bool {
        self.known().is_some_and(|k| k == *other)
    }
}

/// The known name, or the file's name.
impl std::fmt::Display for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoder::Known(k) => f.write_str(k.name()),
            Encoder::Onnx(o) => match o.onnx.file_name() {
                Some(n) => f.write_str(&n.to_string_lossy()),
                None => write!(f, "{}", o.onnx.display()),
            },
        }
    }
}

/// A path ending in `.onnx` is a file (resolved later); anything else a known name.
impl std::str::FromStr for Encoder {
    type Err = NotAnEncoder;

    fn from_str(s: &str) -> Result<Encoder, NotAnEncoder> {
        if is_onnx_path(s) {
            return Ok(Encoder::Onnx(OnnxEncoder::unresolved(s)));
        }
        s.parse().map(Encoder::Known).map_err(NotAnEncoder)
    }
}

/// Whether `--encoder` names a file rather than an architecture.
pub fn is_onnx_path(s: &str) -> bool {
    Path::new(s)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// `--encoder NAME|FILE.onnx` on the command line: the names listed in `--help` and
/// completions, a file parsed as one.
#[cfg(feature = "clap")]
mod cli {
    use super::Encoder;
    use crate::arch::cli::{names, ByName};
    use clap::builder::ValueParserFactory;

    fn names_or_file() -> Vec<&'static str> {
        let mut all = names();
        all.push("FILE.onnx");
        all
    }

    impl ValueParserFactory for Encoder {
        type Parser = ByName<Encoder>;

        fn value_parser() -> ByName<Encoder> {
            ByName::new(names_or_file)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_and_files_parse_and_round_trip() {
        let k: Encoder = "resnet18".parse().expect("name");
        assert_eq!(k, EncoderKind::ResNet18);
        assert_eq!(serde_json::to_string(&k).expect("json"), "\"resnet18\"");
        let f: Encoder = "models/leaf net.ONNX".parse().expect("file");
        assert_eq!(f.short_name(), "leaf net");
        assert_eq!(f.to_string(), "leaf net.ONNX");
        let json = serde_json::to_string(&f).expect("json");
        let back: Encoder = serde_json::from_str(&json).expect("back");
        assert_eq!(back, f);
        // Files written before ONNX encoders existed name the architecture alone.
        let old: Encoder = serde_json::from_str("\"mobilenet-v2\"").expect("old");
        assert_eq!(old, Encoder::Known(EncoderKind::MobileNetV2));
        // A config file may name a file alone.
        let short: Encoder = serde_json::from_str("\"nets/leaf.onnx\"").expect("path");
        assert_eq!(
            short,
            Encoder::Onnx(OnnxEncoder::unresolved("nets/leaf.onnx"))
        );
        let bad = serde_json::from_str::<Encoder>("\"resnet19\"").expect_err("unknown");
        assert!(bad.to_string().contains("resnet19"), "{bad}");
        assert!("resnet19".parse::<Encoder>().is_err());
    }
}
