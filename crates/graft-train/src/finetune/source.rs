//! Where a stage's batches come from: activations cached at the top cut (stages 1–2), or
//! images decoded, augmented and mixed on the fly (stage 3, where the lower blocks change).

use graft_data::augment::{augment_batch, batch_grid, one_hot, AugmentConfig, Batch};
use graft_data::preprocess::Preprocess;
use image::RgbImage;
use rayon::prelude::*;

use super::acts::{Acts, Item};
use crate::TrainError;

/// Batches for training (possibly augmented, soft targets) and evaluation (plain).
pub trait Source: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn labels(&self) -> &[usize];
    /// The encoder block whose input this source gives.
    fn start(&self) -> usize;
    /// Inputs of `rows` and their targets (`rows × classes` distributions) for `epoch`.
    fn train_batch(&self, rows: &[usize], epoch: u64) -> Result<(Vec<f32>, Vec<f32>), TrainError>;
    /// Inputs of `rows`, unaugmented.
    fn eval_batch(&self, rows: &[usize]) -> Result<Vec<f32>, TrainError>;
}

/// Cached activations at block `start`, one-hot targets.
#[derive(Debug, Clone)]
pub struct CachedSource {
    pub acts: Acts,
    pub start: usize,
    pub classes: usize,
}

impl Source for CachedSource {
    fn len(&self) -> usize {
        self.acts.len()
    }
    fn labels(&self) -> &[usize] {
        &self.acts.labels
    }
    fn start(&self) -> usize {
        self.start
    }
    fn train_batch(&self, rows: &[usize], _epoch: u64) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let labels: Vec<usize> = rows.iter().map(|&i| self.acts.labels[i]).collect();
        Ok((self.acts.gather(rows), one_hot(&labels, self.classes)))
    }
    fn eval_batch(&self, rows: &[usize]) -> Result<Vec<f32>, TrainError> {
        Ok(self.acts.gather(rows))
    }
}

/// Image files, decoded per batch; training batches are augmented (seeded per image and
/// epoch, so a resumed run sees the same pixels) and mixed.
#[derive(Debug, Clone)]
pub struct ImageSource {
    items: Vec<Item>,
    labels: Vec<usize>,
    pub pre: Preprocess,
    pub augment: AugmentConfig,
    pub classes: usize,
    pub seed: u64,
}

impl ImageSource {
    pub fn new(
        items: Vec<Item>,
        pre: Preprocess,
        augment: AugmentConfig,
        classes: usize,
        seed: u64,
    ) -> ImageSource {
        let labels = items.iter().map(|i| i.label).collect();
        ImageSource {
            items,
            labels,
            pre,
            augment,
            classes,
            seed,
        }
    }

    fn decode(&self, rows: &[usize]) -> Result<Vec<RgbImage>, TrainError> {
        rows.par_iter().map(|&i| self.items[i].decode()).collect()
    }

    /// Rows `rows` augmented and mixed for `epoch`.
    fn augmented(&self, rows: &[usize], epoch: u64) -> Result<Batch, TrainError> {
        let imgs = self.decode(rows)?;
        let refs: Vec<&RgbImage> = imgs.iter().collect();
        let labels: Vec<usize> = rows.iter().map(|&i| self.labels[i]).collect();
        Ok(augment_batch(
            &refs,
            rows,
            &labels,
            self.classes,
            &self.augment,
            &self.pre,
            self.seed,
            epoch,
        ))
    }

    /// A grid of the augmented batch `rows` as the model sees it in `epoch`.
    pub fn preview(&self, rows: &[usize], epoch: u64) -> Result<RgbImage, TrainError> {
        Ok(batch_grid(&self.augmented(rows, epoch)?, &self.pre, 8))
    }
}

impl Source for ImageSource {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn labels(&self) -> &[usize] {
        &self.labels
    }
    fn start(&self) -> usize {
        0
    }
    fn train_batch(&self, rows: &[usize], epoch: u64) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let b = self.augmented(rows, epoch)?;
        Ok((b.x, b.targets))
    }
    fn eval_batch(&self, rows: &[usize]) -> Result<Vec<f32>, TrainError> {
        let imgs = self.decode(rows)?;
        let per = self.pre.len();
        let mut x = vec![0.0f32; rows.len() * per];
        x.par_chunks_mut(per.max(1))
            .zip(imgs.par_iter())
            .for_each(|(out, img)| self.pre.apply_into(img, out));
        Ok(x)
    }
}
