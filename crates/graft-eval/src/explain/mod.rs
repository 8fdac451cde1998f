//! Explanations in pictures: the figure of one explained image ([`figure`]). The maps and their
//! quality metrics are graft-explain's, re-exported here for the callers that had them here.

pub mod figure;

pub use graft_explain::{cam, quality};
