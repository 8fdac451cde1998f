//! What a fine-tune's cached activations depend on.

use graft_train::finetune::acts;
use graft_train::HeadModel;

pub fn fingerprint(model: &HeadModel, cut: usize, items: &[(acts::Item, String)]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(
        format!(
            "{}|{}|{cut}|{:?}",
            model.meta.encoder, model.meta.weights, model.meta.preprocess
        )
        .as_bytes(),
    );
    for (it, hash) in items {
        h.update(hash.as_bytes());
        h.update(&it.label.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}
