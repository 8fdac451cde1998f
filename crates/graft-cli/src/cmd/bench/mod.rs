//! `graft bench …`: graft against a reference, measured in the same run, reported as ratios.

mod audit;
mod extract;
mod heads;

pub use audit::audit;
pub use extract::extract;
pub use heads::heads;
