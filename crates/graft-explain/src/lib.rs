//! Explanations of one prediction and what they are worth, as plain arithmetic on slices:
//!
//! - [`cam`]: class activation maps (Grad-CAM, Grad-CAM++, Layer-CAM, Score-CAM's weighing)
//!   from a feature map and a gradient, upsampling, rank correlation for the sanity check;
//! - [`quality`]: the perturbation tests that measure whether a map points at what the model
//!   used (confidence drop and increase, deletion and insertion AUC, concentration, coverage);
//! - [`overlay`]: a heatmap in colour, alone or over the photo.
//!
//! Running the model (on the image, on the perturbed images) is the caller's job, so the same
//! code serves `graft explain` (which has burn and the head) and the HTTP service (which has
//! only ONNX Runtime).

pub mod cam;
pub mod overlay;
pub mod quality;
