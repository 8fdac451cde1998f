//! Architecture description shared by every backend.

pub use graft_data::preprocess::{Filter, Preprocess};
use serde::{Deserialize, Serialize};

/// A pretrained encoder graft knows. Written and read as the name users type
/// ([`EncoderKind::name`]) in every file (config.toml, model.json, cache headers); parsed
/// leniently ([`std::str::FromStr`]: case, `_` for `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum EncoderKind {
    MobileNetV2,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    ResNet18,
    ResNet34,
    ResNet50,
    EfficientNetB0,
    MobileNetV3Small,
    MobileNetV3Large,
}

impl EncoderKind {
    pub const ALL: [EncoderKind; 10] = [
        EncoderKind::MobileNetV2,
        EncoderKind::EfficientNetLite0,
        EncoderKind::EfficientNetLite1,
        EncoderKind::EfficientNetLite2,
        EncoderKind::ResNet18,
        EncoderKind::ResNet34,
        EncoderKind::ResNet50,
        EncoderKind::EfficientNetB0,
        EncoderKind::MobileNetV3Small,
        EncoderKind::MobileNetV3Large,
    ];

    /// The name users type (`--encoder mobilenet-v2`).
    pub fn name(self) -> &'static str {
        match self {
            EncoderKind::MobileNetV2 => "mobilenet-v2",
            EncoderKind::EfficientNetLite0 => "efficientnet-lite0",
            EncoderKind::EfficientNetLite1 => "efficientnet-lite1",
            EncoderKind::EfficientNetLite2 => "efficientnet-lite2",
            EncoderKind::ResNet18 => "resnet18",
            EncoderKind::ResNet34 => "resnet34",
            EncoderKind::ResNet50 => "resnet50",
            EncoderKind::EfficientNetB0 => "efficientnet-b0",
            EncoderKind::MobileNetV3Small => "mobilenet-v3-small",
            EncoderKind::MobileNetV3Large => "mobilenet-v3-large",
        }
    }

    /// The names, for messages and `--help`.
    pub fn names() -> String {
        EncoderKind::ALL.map(EncoderKind::name).join(", ")
    }

    /// How images must be prepared for this encoder's pretrained weights.
    pub fn preprocess(self) -> Preprocess {
        // torchvision: resize shorter side to 256, centre crop 224, ImageNet mean/std.
        // EfficientNet-Lite: crop fraction 0.875 (size + 32), bicubic, (x-127)/128 — the
        // evaluation transform its reference probabilities were measured with.
        let lite = |size: u32| Preprocess {
            size,
            resize_shorter: size + 32,
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
            filter: Filter::Bicubic,
        };
        match self {
            // torchvision's IMAGENET1K_V1 weights of these were measured this way.
            EncoderKind::MobileNetV2
            | EncoderKind::ResNet18
            | EncoderKind::ResNet34
            | EncoderKind::ResNet50
            | EncoderKind::MobileNetV3Small
            | EncoderKind::MobileNetV3Large => Preprocess {
                size: 224,
                resize_shorter: 256,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                filter: Filter::Bilinear,
            },
            EncoderKind::EfficientNetB0 => Preprocess {
                size: 224,
                resize_shorter: 256,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
                filter: Filter::Bicubic,
            },
            EncoderKind::EfficientNetLite0 => lite(224),
            EncoderKind::EfficientNetLite1 => lite(240),
            EncoderKind::EfficientNetLite2 => lite(260),
        }
    }
}

impl std::fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `kind == "mobilenet-v2"`: compares the name users type.
impl PartialEq<&str> for EncoderKind {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// A name that is no encoder graft knows: the one message for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encoder {0:?}; choose one of {names} (see `graft models list`)", names = EncoderKind::names())]
pub struct UnknownEncoder(pub String);

impl std::str::FromStr for EncoderKind {
    type Err = UnknownEncoder;

    fn from_str(name: &str) -> Result<EncoderKind, UnknownEncoder> {
        let n = name.to_ascii_lowercase().replace('_', "-");
        EncoderKind::ALL
            .into_iter()
            .find(|k| k.name() == n || k.name().replace('-', "") == n.replace('-', ""))
            .ok_or_else(|| UnknownEncoder(name.to_string()))
    }
}

impl From<EncoderKind> for &'static str {
    fn from(k: EncoderKind) -> &'static str {
        k.name()
    }
}

impl TryFrom<String> for EncoderKind {
    type Error = UnknownEncoder;

    fn try_from(name: String) -> Result<EncoderKind, UnknownEncoder> {
        name.parse()
    }
}

/// `--encoder NAME` on the command line: parsed like [`std::str::FromStr`] (with its message),
/// the names listed in `--help` and completions.
#[cfg(feature = "clap")]
pub(crate) mod cli {
    use super::EncoderKind;
    use clap::builder::{PossibleValue, TypedValueParser, ValueParserFactory};

    /// A value parsed by its [`std::str::FromStr`], whose error is clap's message, and whose
    /// `--help` lists `names` (`--encoder` and `--arch`: an [`EncoderKind`], or graft's
    /// `Encoder`, which also takes a file).
    pub struct ByName<T> {
        names: fn() -> Vec<&'static str>,
        parsed: std::marker::PhantomData<fn() -> T>,
    }

    impl<T> ByName<T> {
        pub fn new(names: fn() -> Vec<&'static str>) -> Self {
            ByName {
                names,
                parsed: std::marker::PhantomData,
            }
        }
    }

    impl<T> Clone for ByName<T> {
        fn clone(&self) -> Self {
            ByName::new(self.names)
        }
    }

    impl<T> TypedValueParser for ByName<T>
    where
        T: std::str::FromStr + Clone + Send + Sync + 'static,
        T::Err: std::fmt::Display,
    {
        type Value = T;

        fn parse_ref(
            &self,
            cmd: &clap::Command,
            _arg: Option<&clap::Arg>,
            value: &std::ffi::OsStr,
        ) -> Result<T, clap::Error> {
            value.to_string_lossy().parse().map_err(|e: T::Err| {
                clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{e}\n"))
                    .with_cmd(cmd)
            })
        }

        fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
            Some(Box::new((self.names)().into_iter().map(PossibleValue::new)))
        }
    }

    /// The names users type, in `--help`'s order.
    pub fn names() -> Vec<&'static str> {
        EncoderKind::ALL.map(EncoderKind::name).to_vec()
    }

    impl ValueParserFactory for EncoderKind {
        type Parser = ByName<EncoderKind>;

        fn value_parser() -> ByName<EncoderKind> {
            ByName::new(names)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    /// The same number of zeros on every side.
    Symmetric(usize),
    /// TensorFlow "SAME": output = ceil(input / stride); when the total padding is odd the
    /// extra zero goes at the bottom/right.
    TfSame,
}

impl Padding {
    /// (before, after) padding along one axis of length `input`.
    pub fn amounts(self, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Symmetric(p) => (p, p),
            Padding::TfSame => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(input);
                (total / 2, total - total / 2)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    /// min(max(x, 0), 6)
    Relu6,
    /// max(x, 0)
    Relu,
    /// x · sigmoid(x) (swish)
    Silu,
    /// x · min(max(x + 3, 0), 6) / 6
    Hardswish,
}

impl Act {
    /// The activation of one value (reference implementations and tests).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Relu => x.max(0.0),
            Act::Silu => x / (1.0 + (-x).exp()),
            Act::Hardswish => x * Gate::HardSigmoid.apply(x),
        }
    }
}

/// What squeeze-and-excitation scales channels by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gate {
    /// 1 / (1 + e^−x)
    Sigmoid,
    /// min(max(x / 6 + 1/2, 0), 1)
    HardSigmoid,
}

impl Gate {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Gate::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Gate::HardSigmoid => (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }
}

/// Squeeze-and-excitation (Hu et al. 2018) on the output of layer `after`: each channel
/// scaled by `gate(expand(act(reduce(mean over locations))))`, `reduce` and `expand` being
/// 1×1 convolutions with bias (weights `[out, in, 1, 1]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqueezeExcite {
    pub after: usize,
    pub reduce: Linear,
    pub expand: Linear,
    pub act: Act,
    pub gate: Gate,
}

/// Max pooling over `kernel`×`kernel` windows; padding counts as −∞ (never the maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxPool {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool {
    /// Output side for a square input of side `s`.
    pub fn output_size(&self, s: usize) -> usize {
        (s + 2 * self.padding).saturating_sub(self.kernel) / self.stride + 1
    }
}

/// A bias-free convolution followed by inference-mode BatchNorm and an optional activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvBn {
    /// State-dict key of the conv weight `[out, in/groups, k, k]`.
    pub conv: String,
    /// State-dict key prefix of the BatchNorm (`{bn}.weight`, `.bias`, `.running_mean`,
    /// `.running_var`).
    pub bn: String,
    pub in_ch: usize,
    pub out_ch: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub padding: Padding,
    pub act: Option<Act>,
}

impl ConvBn {
    /// Output side for a square input of side `s`.
    pub fn output_size(&self, s: usize) -> usize {
        let (a, b) = self.padding.amounts(s, self.kernel, self.stride);
        (s + a + b - self.kernel) / self.stride + 1
    }
}

/// A sequence of conv layers, with the block input added to its output when `residual`.
///
/// In order: the layers (squeeze-and-excitation after one of them); the residual sum (the input itself, or its `projection` when the
/// shapes differ); `post_act` on the sum; `max_pool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub layers: Vec<ConvBn>,
    pub residual: bool,
    /// The convolution that brings the block input to the output's shape before the sum
    /// (ResNet's `downsample`); `None` adds the input itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<ConvBn>,
    /// Activation after the residual sum (ResNet's ReLU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_act: Option<Act>,
    /// Pooling at the end of the block (ResNet's stem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pool: Option<MaxPool>,
    /// Squeeze-and-excitation inside the block (EfficientNet-B0, MobileNetV3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se: Option<SqueezeExcite>,
}

impl Block {
    /// Layers in sequence, with the input added at the end when `residual`.
    pub fn new(layers: Vec<ConvBn>, residual: bool) -> Block {
        Block {
            layers,
            residual,
            ..Block::default()
        }
    }

    /// Every convolution of the block: the layers, then the projection.
    pub fn convs(&self) -> impl Iterator<Item = &ConvBn> {
        self.layers.iter().chain(&self.projection)
    }

    /// Output channels.
    pub fn out_ch(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_ch)
    }

    /// Output side for a square input of side `s`.
    pub fn output_size(&self, s: usize) -> usize {
        let s = self.layers.iter().fold(s, |s, l| l.output_size(s));
        self.max_pool.map_or(s, |p| p.output_size(s))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub weight: String,
    pub bias: String,
    pub in_features: usize,
    pub out_features: usize,
}

/// A whole encoder: blocks (stem first, 1×1 head conv last), global average pooling to
/// `feature_dim` features, and the pretrained ImageNet classifier (absent from weights
/// imported from a fine-tuned model, whose classifier was stripped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub kind: EncoderKind,
    pub blocks: Vec<Block>,
    pub feature_dim: usize,
    /// The classifier's hidden layer, hard-swish after it (MobileNetV3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Linear>,
    pub classifier: Option<Linear>,
    pub bn_eps: f32,
    pub preprocess: Preprocess,
}

impl NetSpec {
    pub fn layers(&self) -> impl Iterator<Item = &ConvBn> {
        self.blocks.iter().flat_map(|b| b.layers.iter())
    }

    /// Every convolution, projections included.
    pub fn convs(&self) -> impl Iterator<Item = &ConvBn> {
        self.blocks.iter().flat_map(Block::convs)
    }

    /// Spatial size of the last feature map for a square input of `size` pixels.
    pub fn feature_map_size(&self, size: usize) -> usize {
        self.blocks.iter().fold(size, |s, b| b.output_size(s))
    }

    /// Shape `[c, h, w]` of the input of block `block` at the preprocessing size (the image
    /// itself for block 0).
    pub fn block_input(&self, block: usize) -> [usize; 3] {
        let s = self.preprocess.size as usize;
        self.blocks[..block].iter().fold([3, s, s], |[_, h, _], b| {
            let o = b.output_size(h);
            [b.out_ch(), o, o]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_same_padding() {
        // 224 input, 3x3 stride 2: output 112, total pad 1 -> (0, 1).
        assert_eq!(Padding::TfSame.amounts(224, 3, 2), (0, 1));
        // 5x5 stride 2 on 56: out 28, total (27*2+5-56)=3 -> (1, 2).
        assert_eq!(Padding::TfSame.amounts(56, 5, 2), (1, 2));
        // stride 1 is symmetric.
        assert_eq!(Padding::TfSame.amounts(14, 5, 1), (2, 2));
        assert_eq!(Padding::Symmetric(1).amounts(7, 3, 1), (1, 1));
    }

    #[test]
    fn names_round_trip() {
        for k in EncoderKind::ALL {
            assert_eq!(k.name().parse(), Ok(k));
            // Files hold the name users type.
            let json = serde_json::to_string(&k).expect("serialise");
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(
                serde_json::from_str::<EncoderKind>(&json).expect("parse"),
                k
            );
        }
        assert_eq!("MobileNet_V2".parse(), Ok(EncoderKind::MobileNetV2));
        assert_eq!(
            "efficientnetlite0".parse(),
            Ok(EncoderKind::EfficientNetLite0)
        );
        assert_eq!("ResNet-50".parse(), Ok(EncoderKind::ResNet50));
        let err = "resnet".parse::<EncoderKind>().expect_err("unknown");
        assert!(err
            .to_string()
            .starts_with("unknown encoder \"resnet\"; choose one of mobilenet-v2"));
        assert!(serde_json::from_str::<EncoderKind>("\"resnet\"").is_err());
    }
}
