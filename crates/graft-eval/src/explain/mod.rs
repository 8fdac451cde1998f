//! Explanations of one prediction and what they are worth: class activation maps over the
//! encoder's last feature map ([`cam`]), and the perturbation tests that measure whether a map
//! points at what the model used ([`quality`]). Pure arithmetic on plain slices; running the
//! model on the perturbed images is the caller's job.

pub mod cam;
pub mod figure;
pub mod quality;
