//! `graft bench …`: graft against a reference, measured in the same run, reported as ratios.

mod audit;
mod extract;

pub use audit::audit;
pub use extract::extract;
