//! A map at an earlier block (`--layer BLOCK`; Grad-CAM, Layer-CAM, integrated gradients):
//! finer maps (14×14 or 28×28 on MobileNetV2 instead of 7×7) at the cost of a backward pass
//! through the encoder's top blocks, which run again on burn with autodiff from the block's
//! output. The class score's gradient with respect to the pooled features comes from the head
//! (on the host); burn carries it from there back to the block.

use burn::module::Module as _;
use burn::tensor::{Device, Tensor, TensorData};
use graft_model::arch::NetSpec;
use graft_model::burn_backend::EncoderNet;
use graft_model::weights::StateDict;
use graft_train::HeadModel;

use crate::RunError;

pub struct LayerGrad {
    net: EncoderNet,
    device: Device,
    block: usize,
    /// The block's output, `[channels, side, side]`.
    pub shape: [usize; 3],
    size: usize,
    /// The block's map for a blank image (every input value 0: the mean colour after
    /// normalisation), `C × H × W`.
    reference: Vec<f32>,
}

/// Blocks a map can be taken at, as `block: C×H×W` lines (for `--layer`'s errors and help).
pub fn blocks(spec: &NetSpec) -> String {
    (0..spec.blocks.len().saturating_sub(1))
        .map(|b| {
            let [c, h, w] = spec.block_input(b + 1);
            format!("{b}: {c}×{h}×{w}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl LayerGrad {
    pub fn new(spec: &NetSpec, weights: &StateDict, block: usize) -> Result<LayerGrad, RunError> {
        if block + 1 >= spec.blocks.len() {
            return Err(RunError::Invalid(format!(
                "{} has no block {block} before its last (the last map is the default); blocks: {}",
                spec.kind.name(),
                blocks(spec)
            )));
        }
        let device = Device::flex().autodiff();
        // Only the map's gradient is wanted: no weight gradients computed or kept.
        let net = EncoderNet::from_spec(spec, weights, &device)?.no_grad();
        let s = spec.preprocess.size as usize;
        let blank = Tensor::<4>::zeros([1, 3, s, s], &device);
        let reference = to_host(
            net.blocks[..=block]
                .iter()
                .fold(blank, |x, b| b.forward(x))
                .detach(),
        )?;
        Ok(LayerGrad {
            net,
            device,
            block,
            shape: spec.block_input(block + 1),
            size: s,
            reference,
        })
    }

    pub fn block(&self) -> usize {
        self.block
    }

    /// `map` less the blank image's map, location by location. Zero padding gives a block's
    /// border cells activations no image content causes (on MobileNetV2's block 13 the
    /// corners outweigh any object); what the image adds to them is what explains it.
    pub fn relative(&self, map: &[f32]) -> Vec<f32> {
        map.iter()
            .zip(&self.reference)
            .map(|(a, r)| a - r)
            .collect()
    }

    /// The point a fraction `at` of the way from the blank image's map to `map`: where
    /// integrated gradients takes the gradient.
    pub fn along_path(&self, map: &[f32], at: f32) -> Vec<f32> {
        graft_eval::explain::cam::path_point(&self.reference, map, at)
    }

    /// The block's map for one preprocessed image (`C × H × W`) and, for each of `targets`
    /// (weights over the head's logits, as [`HeadModel::centred`] gives), the gradient of
    /// that score with respect to the map.
    pub fn map_and_gradients(
        &self,
        input: &[f32],
        model: &HeadModel,
        targets: &[Vec<f32>],
    ) -> Result<(Vec<f32>, Vec<Vec<f32>>), RunError> {
        let s = self.size;
        let x = Tensor::<4>::from_data(TensorData::new(input.to_vec(), [1, 3, s, s]), &self.device);
        let map = self.net.blocks[..=self.block]
            .iter()
            .fold(x, |x, b| b.forward(x))
            .detach();
        let host = to_host(map)?;
        let grads = self.gradients(&host, model, targets)?;
        Ok((host, grads))
    }

    /// For the block's map `map` (`C × H × W`, from any engine: graft explain takes it from
    /// ONNX Runtime's run of the whole model), the gradient of each of `targets`' scores with
    /// respect to it, through the blocks above it only.
    pub fn gradients(
        &self,
        map: &[f32],
        model: &HeadModel,
        targets: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, RunError> {
        let [c, h, w] = self.shape;
        if map.len() != c * h * w {
            return Err(RunError::Invalid(format!(
                "block {} map of {} values, expected {c}×{h}×{w}",
                self.block,
                map.len()
            )));
        }
        let map = Tensor::<4>::from_data(TensorData::new(map.to_vec(), [1, c, h, w]), &self.device);
        let mut grads = Vec::with_capacity(targets.len());
        for weights in targets {
            // A fresh forward from the map for each target: a backward consumes its graph.
            let leaf = map.clone().require_grad();
            let top = self.net.blocks[self.block + 1..]
                .iter()
                .fold(leaf.clone(), |x, b| b.forward(x));
            let [_, c, _, _] = top.dims();
            let pooled = top.mean_dim(3).mean_dim(2).reshape([1, c]);
            let at = to_host(pooled.clone())?;
            let g = model.logit_gradient(&at, weights).ok_or_else(|| {
                RunError::Invalid(
                    "this head has no gradient to explain an earlier layer with".into(),
                )
            })?;
            let g = Tensor::<2>::from_data(TensorData::new(g, [1, c]), &self.device);
            let back = (pooled * g).sum().backward();
            let grad = leaf
                .grad(&back)
                .ok_or_else(|| RunError::Invalid("burn returned no gradient for the map".into()))?;
            grads.push(to_host(grad)?);
        }
        Ok(grads)
    }
}

impl LayerGrad {
    /// `Σ_k weights[k] · z_k` for the block's map `map` (`C × H × W`), by the top blocks and
    /// the head, without gradients: what [`LayerGrad::map_and_gradients`] differentiates.
    pub fn score(&self, map: &[f32], model: &HeadModel, weights: &[f32]) -> Result<f32, RunError> {
        let [c, h, w] = self.shape;
        let x = Tensor::<4>::from_data(TensorData::new(map.to_vec(), [1, c, h, w]), &self.device);
        let top = self.net.blocks[self.block + 1..]
            .iter()
            .fold(x, |x, b| b.forward(x));
        let [_, d, _, _] = top.dims();
        let mut pooled = to_host(top.mean_dim(3).mean_dim(2).reshape([1, d]))?;
        model.standardizer.apply(&mut pooled);
        let logits = model.head.logits(&pooled, 1);
        let t = model.temperature();
        Ok(logits.iter().zip(weights).map(|(z, w)| z / t * w).sum())
    }
}

fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, RunError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| RunError::Invalid(format!("reading a tensor from burn: {e:?}")))
}
