//! Canary serving: a challenger answers a fixed share of the clients, picked by a hash of their
//! API key (of their address without one), so a client keeps seeing the same model from one
//! request to the next. The champion scores the challenger's requests too, in shadow, so the
//! audit trail holds both models' answers on the same images (`graft monitor --compare`).

use crate::audit::Arm;
use crate::batcher::{BatchConfig, Batcher, OrtInfer};
use crate::{ServeError, ServedModel};

/// The challenger and the share of clients it answers.
pub struct Canary {
    pub model: ServedModel,
    /// Percent of the clients (1–100).
    pub share: u8,
}

/// A model ready to answer: its identity, its inference workers and what their rows hold.
pub(crate) struct Deployed {
    pub model: ServedModel,
    pub sha256: String,
    pub batcher: Batcher,
    /// Values of the embedding summary after the probabilities in each batcher row.
    pub embedding_dims: usize,
}

impl Deployed {
    /// Start `workers` ONNX Runtime sessions of `threads` threads each behind one batcher.
    pub fn start(
        model: ServedModel,
        workers: usize,
        threads: usize,
        batch: BatchConfig,
    ) -> Result<Deployed, ServeError> {
        let size = model.preprocess.size as usize;
        let sessions = (0..workers.max(1))
            .map(|_| OrtInfer::new(&model.onnx, size, model.classes.len(), Some(threads)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServeError::Runtime)?;
        let embedding_dims = sessions.first().map_or(0, OrtInfer::embedding_dims);
        let batcher = Batcher::start(
            sessions,
            batch,
            model.preprocess.len(),
            model.classes.len() + embedding_dims,
        );
        Ok(Deployed {
            sha256: graft_model::weights::sha256_bytes(&model.onnx),
            model,
            batcher,
            embedding_dims,
        })
    }

    /// Values per image in the batcher's answer.
    pub fn width(&self) -> usize {
        self.model.classes.len() + self.embedding_dims
    }

    /// Image `j`'s probabilities and embedding summary in `rows`.
    pub fn row<'r>(&self, rows: &'r [f32], j: usize) -> (&'r [f32], &'r [f32]) {
        let w = self.width();
        rows[j * w..(j + 1) * w].split_at(self.model.classes.len())
    }
}

/// The challenger as the service runs it.
pub(crate) struct Challenger {
    pub deployed: Deployed,
    pub share: u8,
}

/// Refuse a challenger that does not classify into the champion's classes, in its order (the
/// counters of `/metrics` and the comparison of answers go by class).
pub fn check_classes(champion: &ServedModel, canary: &ServedModel) -> Result<(), String> {
    if champion.classes == canary.classes {
        return Ok(());
    }
    Err(format!(
        "the canary {} has the classes [{}] but {} has [{}]: a canary must classify into the \
         same classes, in the same order (train it on the same data folder)",
        canary.run,
        canary.classes.join(", "),
        champion.run,
        champion.classes.join(", ")
    ))
}

/// The client's place among 100 buckets: the start of the SHA-256 of its identity.
pub fn bucket(identity: &str) -> u8 {
    let hex = graft_model::weights::sha256_bytes(identity.as_bytes());
    let n = u32::from_str_radix(&hex[..8], 16).unwrap_or(0);
    (n % 100) as u8
}

/// Which model answers the client `identity` when the canary takes `share` % of the clients.
pub fn arm_for(identity: &str, share: u8) -> Arm {
    if bucket(identity) < share {
        Arm::Canary
    } else {
        Arm::Champion
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_keeps_its_arm_and_the_share_is_respected() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("client-{i}")).collect();
        for id in &ids[..50] {
            assert_eq!(arm_for(id, 30), arm_for(id, 30));
            assert_eq!(arm_for(id, 0), Arm::Champion);
            assert_eq!(arm_for(id, 100), Arm::Canary);
        }
        let canary = ids
            .iter()
            .filter(|id| arm_for(id, 30) == Arm::Canary)
            .count();
        // Binomial(10 000, 0.3): standard deviation 46, so ±300 is over six of them.
        assert!((2_700..=3_300).contains(&canary), "{canary} of 10 000");
        // A larger share only adds clients: nobody on the canary at 10 % leaves it at 30 %.
        assert!(ids
            .iter()
            .filter(|id| arm_for(id, 10) == Arm::Canary)
            .all(|id| arm_for(id, 30) == Arm::Canary));
    }
}
