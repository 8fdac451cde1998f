//! `export.json`: what was exported, and how each file was checked against graft.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::quant::WeightBits;

/// `export.json`: one record per exported precision ("fp32", "int8").
pub type ExportRecords = BTreeMap<String, ExportRecord>;

/// One exported file and its check against graft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub file: String,
    pub sha256: String,
    pub bytes: usize,
    /// Held-out images the file was checked on.
    pub validated: usize,
    pub max_diff: f32,
    pub same_top1: usize,
    /// Accuracy of graft's float model and of the file on the labelled validation images.
    pub accuracy_graft: Option<f64>,
    pub accuracy_file: Option<f64>,
    pub calibration_images: Option<usize>,
    /// INT8: the weights' range, and whether the exporting CPU has VNNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_weights: Option<WeightBits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_vnni: Option<bool>,
    /// INT8: written with --force although it lost more than the accuracy limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_float_record_leaves_out_the_int8_fields() {
        let r = ExportRecord {
            file: "model.onnx".into(),
            sha256: "ab".into(),
            bytes: 10,
            validated: 3,
            max_diff: 0.5,
            same_top1: 3,
            accuracy_graft: Some(1.0),
            accuracy_file: Some(1.0),
            calibration_images: None,
            int8_weights: None,
            cpu_vnni: None,
            forced: false,
        };
        let v = serde_json::to_value(&r).expect("json");
        for k in ["int8_weights", "cpu_vnni", "forced"] {
            assert!(v.get(k).is_none(), "{k} in {v}");
        }
        let int8 = ExportRecord {
            int8_weights: Some(WeightBits::Seven),
            cpu_vnni: Some(false),
            forced: true,
            ..r
        };
        let v = serde_json::to_value(&int8).expect("json");
        assert_eq!(v["int8_weights"], "7-bit");
        let back: ExportRecord = serde_json::from_value(v).expect("reads back");
        assert_eq!(back, int8);
    }
}
