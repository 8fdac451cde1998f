//! A user's checkpoint as an encoder's state dict: the prefix of a wrapper (`module.` from
//! DataParallel, `backbone.` or `model.` from a training script) and a fine-tuned classifier
//! are removed, so a colleague's `best_model.pth` imports like torchvision's own file.

use super::spec::EncoderKind;
use crate::weights::StateDict;

/// ImageNet's classes: a classifier of another size was fine-tuned for someone's own.
const IMAGENET_CLASSES: usize = 1000;

/// `sd` reduced to `kind`'s backbone (and its ImageNet classifier, when it has one), with
/// one line per change made, for the user.
pub fn backbone(kind: EncoderKind, sd: StateDict) -> (StateDict, Vec<String>) {
    let mut notes = Vec::new();
    let Some(keys) = super::keys(kind) else {
        return (sd, notes);
    };
    // The stem's convolution, which every file of `kind` has: where the backbone starts.
    let anchor = keys.stem.as_str();
    let prefix = if sd.get(anchor).is_some() {
        None
    } else {
        sd.names()
            .filter_map(|n| n.strip_suffix(anchor))
            .filter(|p| p.ends_with('.'))
            // The shortest: the outermost copy of the backbone.
            .min_by_key(|p| p.len())
            .map(str::to_string)
    };
    let source = sd.source().to_path_buf();
    let mut sd = match prefix {
        Some(prefix) => {
            let mut out = StateDict::new(&source);
            let mut dropped = 0;
            for (name, t) in sd.into_entries() {
                match name.strip_prefix(&prefix) {
                    Some(rest) => {
                        out.insert(rest, t);
                    }
                    None => dropped += 1,
                }
            }
            notes.push(format!(
                "took the tensors under `{prefix}` (the backbone){}",
                if dropped > 0 {
                    format!(" and left {dropped} others")
                } else {
                    String::new()
                }
            ));
            out
        }
        None => sd,
    };
    let (w, b) = (keys.classifier.0.as_str(), keys.classifier.1.as_str());
    let classes = sd.get(w).and_then(|t| t.shape.first().copied());
    if classes.is_some_and(|c| c != IMAGENET_CLASSES) {
        let mut out = StateDict::new(&source);
        for (name, t) in sd.into_entries() {
            if name != w && name != b {
                out.insert(name, t);
            }
        }
        sd = out;
        notes.push(format!(
            "stripped the fine-tuned classifier `{w}` ({} classes); the backbone is kept, and \
             graft trains its own heads on it",
            classes.unwrap_or(0)
        ));
    }
    (sd, notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Tensor};

    fn t(shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
            dtype: DType::F32,
        }
    }

    #[test]
    fn every_encoder_has_its_keys() {
        for kind in EncoderKind::ALL {
            let keys = crate::arch::keys(kind).expect("keys");
            // Where graft writes the layout down, the stem comes first and the classifier last.
            if let Some(t) = crate::arch::torchvision_tensors(kind) {
                assert_eq!(t[0].0, keys.stem, "{kind}");
                let n = t.len();
                assert_eq!(
                    (&t[n - 2].0, &t[n - 1].0),
                    (&keys.classifier.0, &keys.classifier.1)
                );
            }
        }
    }

    #[test]
    fn wrappers_and_fine_tuned_classifiers_are_removed() {
        let mut sd = StateDict::new("best_model.pth");
        sd.insert("module.backbone.conv1.weight", t(&[64, 3, 7, 7]));
        sd.insert("module.backbone.fc.weight", t(&[38, 512]));
        sd.insert("module.backbone.fc.bias", t(&[38]));
        sd.insert("module.head.weight", t(&[2, 2]));
        let (out, notes) = backbone(EncoderKind::ResNet18, sd);
        let names: Vec<&str> = out.names().collect();
        assert_eq!(names, ["conv1.weight"]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("`module.backbone.`") && notes[0].contains("left 1"));
        assert!(notes[1].contains("38 classes"), "{notes:?}");

        // torchvision's own file is taken as it is.
        let mut sd = StateDict::new("resnet18.pth");
        sd.insert("conv1.weight", t(&[64, 3, 7, 7]));
        sd.insert("fc.weight", t(&[1000, 512]));
        let (out, notes) = backbone(EncoderKind::ResNet18, sd);
        assert_eq!(out.len(), 2);
        assert!(notes.is_empty());
    }
}
