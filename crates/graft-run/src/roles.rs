//! Which of a run's images play which role (train, val, test) when a net learns from the
//! images themselves (fine-tuning, from-scratch baselines): the same split and the same
//! held-out val images as head training, so every score compares.

use std::collections::BTreeMap;

use graft_data::scan::Split;
use graft_features::{FeatureCache, Origin};
use graft_train::data::split_rows;
use graft_train::finetune::acts;
use graft_train::HeadModel;

use crate::RunError;

/// The run's images by role, as positions into `items` (readable images whose class the
/// head knows): test as in the manifest (val when there is none), val as in the manifest or
/// held out of train exactly as head training did, train evenly thinned to `limit`.
pub struct ImageRoles {
    pub items: Vec<(acts::Item, String)>,
    splits: Vec<Option<Split>>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    pub val_held_out: bool,
}

impl ImageRoles {
    pub fn of(
        cache: &FeatureCache,
        origin: &Origin,
        model: &HeadModel,
        val_fraction: f64,
        limit: Option<usize>,
    ) -> Result<ImageRoles, RunError> {
        let all = &cache.header().items;
        let mut items = Vec::new();
        let mut labels = Vec::new();
        let mut splits = Vec::new();
        for (i, it) in all.iter().enumerate() {
            if cache.is_failed(i) {
                continue;
            }
            let Some(label) = model.meta.classes.iter().position(|c| c == &it.label) else {
                continue;
            };
            items.push((
                acts::Item {
                    path: origin.root.join(&it.path),
                    label,
                },
                it.hash.clone(),
            ));
            labels.push(label);
            splits.push(it.split);
        }
        let s = split_rows(
            &labels,
            &splits,
            model.meta.classes.len(),
            val_fraction,
            model.meta.train.seed,
        )?;
        let take = limit.unwrap_or(s.train.len()).min(s.train.len());
        let train = (0..take)
            .map(|k| s.train[k * s.train.len() / take.max(1)])
            .collect();
        let test = if s.test.is_empty() {
            s.val.clone()
        } else {
            s.test
        };
        Ok(ImageRoles {
            items,
            splits,
            train,
            val: s.val,
            test,
            val_held_out: s.val_held_out,
        })
    }

    /// The manifest split a position's image belongs to (no split: train).
    pub fn manifest_split(&self, p: usize) -> Split {
        self.splits[p].unwrap_or(Split::Train)
    }

    /// Positions needed by some role, grouped by manifest split, sorted.
    pub fn by_manifest_split(&self) -> BTreeMap<Split, Vec<usize>> {
        let mut g: BTreeMap<Split, Vec<usize>> = BTreeMap::new();
        for &p in self.train.iter().chain(&self.val).chain(&self.test) {
            g.entry(self.manifest_split(p)).or_default().push(p);
        }
        for v in g.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        g
    }

    pub fn items_of(&self, positions: &[usize]) -> Vec<(acts::Item, String)> {
        positions.iter().map(|&p| self.items[p].clone()).collect()
    }
}

/// The items of `(item, content hash)` pairs, as image sources take them.
pub fn plain(items: &[(acts::Item, String)]) -> Vec<acts::Item> {
    items.iter().map(|(it, _)| it.clone()).collect()
}
