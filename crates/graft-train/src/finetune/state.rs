//! Everything a checkpoint holds: the schedule's position and history (JSON header) and the
//! weight, moment and best-so-far buffers.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::adamw::AdamState;
use super::net::Values;
use super::train::{EpochRow, StageReport};
use super::{checkpoint, FinetuneConfig};
use crate::TrainError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) cfg: FinetuneConfig,
    pub(super) stage: usize,
    pub(super) epoch: usize,
    /// Updates done in the current epoch / stage.
    pub(super) update: usize,
    pub(super) stage_updates: usize,
    pub(super) bad_epochs: usize,
    pub(super) loss_sum: f64,
    /// Training seconds so far in this epoch (for the speed column).
    #[serde(default)]
    pub(super) seconds: f64,
    pub(super) stage_best: f64,
    pub(super) best: f64,
    pub(super) start_f1: f64,
    pub(super) adam_step: u32,
    pub(super) history: Vec<EpochRow>,
    pub(super) stages: Vec<StageReport>,
}

/// Buffers in the checkpoint, each a list of slot buffers.
pub(super) struct Buffers {
    pub(super) values: Values,
    pub(super) adam: AdamState,
    pub(super) stage_best: Values,
    pub(super) best: Values,
}

impl Buffers {
    fn flat(&self) -> Vec<&[f32]> {
        [
            &self.values,
            &self.adam.m,
            &self.adam.v,
            &self.stage_best,
            &self.best,
        ]
        .into_iter()
        .flat_map(|set| set.iter().map(Vec::as_slice))
        .collect()
    }
}

pub(super) fn save(path: &Path, st: &State, b: &Buffers) -> Result<(), TrainError> {
    checkpoint::save(path, st, &b.flat())
}

pub(super) fn load(path: &Path, slots: usize) -> Result<Option<(State, Buffers)>, TrainError> {
    let Some((st, mut bufs)) = checkpoint::load::<State>(path)? else {
        return Ok(None);
    };
    if bufs.len() != 5 * slots {
        return Err(TrainError::BadCheckpoint {
            path: path.to_path_buf(),
            why: format!(
                "made for a net with {} parameter tensors, this one has {slots} (other \
                 --unfreeze-blocks or stages?); delete it to start over",
                bufs.len() / 5
            ),
        });
    }
    let mut take = || bufs.drain(..slots).collect::<Vec<_>>();
    let values = take();
    let m = take();
    let v = take();
    let stage_best = take();
    let best = take();
    let adam = AdamState {
        step: st.adam_step,
        m,
        v,
    };
    Ok(Some((
        st,
        Buffers {
            values,
            adam,
            stage_best,
            best,
        },
    )))
}
