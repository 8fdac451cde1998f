//! Classifier heads: logistic regression and a one-hidden-layer MLP over a pooled feature row,
//! and attention pooling over a feature map ([`crate::attention`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use graft_data::rng::SplitMix64;
use graft_model::weights::{DType, StateDict, Tensor};
use serde::{Deserialize, Serialize};

use crate::dense::{add_bias, col_sums, gemm, softmax_rows};
use crate::TrainError;

/// Which head, written `linear`, `mlp` (hidden 256, dropout 0.2), `mlp:HIDDEN[:DROPOUT]` or
/// `attention` (attention pooling over the spatial feature map).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HeadSpec {
    Linear,
    Mlp { hidden: usize, dropout: f32 },
    Attention,
}

impl HeadSpec {
    pub const DEFAULT_MLP: HeadSpec = HeadSpec::Mlp {
        hidden: 256,
        dropout: 0.2,
    };

    /// Whether the head reads the spatial feature map rather than the pooled features.
    pub fn spatial(&self) -> bool {
        matches!(self, HeadSpec::Attention)
    }
}

impl fmt::Display for HeadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadSpec::Linear => f.write_str("linear"),
            HeadSpec::Mlp { hidden, dropout } => write!(f, "mlp:{hidden}:{dropout}"),
            HeadSpec::Attention => f.write_str("attention"),
        }
    }
}

impl FromStr for HeadSpec {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TrainError::BadHeadSpec(s.to_string());
        let mut parts = s.trim().split(':');
        match parts.next().map(str::to_ascii_lowercase).as_deref() {
            Some("linear") if parts.next().is_none() => Ok(HeadSpec::Linear),
            Some("attention" | "attn") if parts.next().is_none() => Ok(HeadSpec::Attention),
            Some("mlp") => {
                let HeadSpec::Mlp {
                    mut hidden,
                    mut dropout,
                } = HeadSpec::DEFAULT_MLP
                else {
                    return Err(bad());
                };
                if let Some(h) = parts.next() {
                    hidden = h.parse().ok().filter(|&h| h > 0).ok_or_else(bad)?;
                }
                if let Some(d) = parts.next() {
                    dropout = d
                        .parse()
                        .ok()
                        .filter(|d: &f32| (0.0..1.0).contains(d))
                        .ok_or_else(bad)?;
                }
                if parts.next().is_some() {
                    return Err(bad());
                }
                Ok(HeadSpec::Mlp { hidden, dropout })
            }
            _ => Err(bad()),
        }
    }
}

/// One weight matrix (`rows × cols`, row-major) and its bias (`cols`).
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub rows: usize,
    pub cols: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Layer {
    /// Kaiming-uniform-like init (PyTorch's `nn.Linear` default range), bias zero.
    pub(crate) fn init(rows: usize, cols: usize, rng: &mut SplitMix64) -> Layer {
        let bound = 1.0 / (rows as f32).sqrt();
        let w = (0..rows * cols)
            .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * bound)
            .collect();
        Layer {
            rows,
            cols,
            w,
            b: vec![0.0; cols],
        }
    }

    fn zeros_like(&self) -> Layer {
        Layer {
            rows: self.rows,
            cols: self.cols,
            w: vec![0.0; self.w.len()],
            b: vec![0.0; self.b.len()],
        }
    }

    /// `out = x · W + b` for `n` rows.
    fn forward(&self, x: &[f32], n: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(n * self.cols, 0.0);
        gemm(
            false, false, n, self.rows, self.cols, 1.0, x, &self.w, 0.0, out,
        );
        add_bias(out, &self.b);
    }
}

/// A head's parameters. `layers[0]` reads the feature row (for attention: the query over the
/// map's channels); the last layer writes logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub spec: HeadSpec,
    pub layers: Vec<Layer>,
}

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Default)]
pub struct Activations {
    /// Hidden activations after ReLU and dropout (MLP only).
    hidden: Vec<f32>,
    /// Dropout scale per hidden unit (0 or 1/(1-p)); empty when not training.
    mask: Vec<f32>,
    /// Attention weights per location (`n × P`) and pooled vectors (`n × C`), attention only.
    pub attention: Vec<f32>,
    pub(crate) pooled: Vec<f32>,
    pub logits: Vec<f32>,
}

impl Head {
    pub fn new(spec: HeadSpec, inputs: usize, classes: usize, rng: &mut SplitMix64) -> Head {
        let layers = match spec {
            HeadSpec::Linear => vec![Layer::init(inputs, classes, rng)],
            HeadSpec::Mlp { hidden, .. } => vec![
                Layer::init(inputs, hidden, rng),
                Layer::init(hidden, classes, rng),
            ],
            // A zero query attends uniformly: training starts from global average pooling,
            // the pooled heads' input, and learns where to look from there.
            HeadSpec::Attention => vec![
                Layer {
                    rows: inputs,
                    cols: 1,
                    w: vec![0.0; inputs],
                    b: vec![0.0],
                },
                Layer::init(inputs, classes, rng),
            ],
        };
        Head { spec, layers }
    }

    /// Features per location: the pooled row's length, or the map's channels (attention).
    pub fn inputs(&self) -> usize {
        self.layers[0].rows
    }

    pub fn classes(&self) -> usize {
        self.layers[self.layers.len() - 1].cols
    }

    pub fn zeros_like(&self) -> Head {
        Head {
            spec: self.spec,
            layers: self.layers.iter().map(Layer::zeros_like).collect(),
        }
    }

    pub fn param_count(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    /// Forward pass over `n` rows of `x`; with `dropout_rng`, dropout is applied (training).
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        dropout_rng: Option<&mut SplitMix64>,
        act: &mut Activations,
    ) {
        match (self.spec, self.layers.as_slice()) {
            (HeadSpec::Attention, [q, out]) => crate::attention::forward(q, out, x, n, act),
            (HeadSpec::Mlp { dropout, .. }, [l1, l2]) => {
                l1.forward(x, n, &mut act.hidden);
                act.mask.clear();
                match dropout_rng {
                    Some(rng) if dropout > 0.0 => {
                        let keep = 1.0 / (1.0 - dropout);
                        act.mask.extend(act.hidden.iter().map(|_| {
                            if (rng.next_f64() as f32) < dropout {
                                0.0
                            } else {
                                keep
                            }
                        }));
                        for (h, m) in act.hidden.iter_mut().zip(&act.mask) {
                            *h = h.max(0.0) * m;
                        }
                    }
                    _ => act.hidden.iter_mut().for_each(|h| *h = h.max(0.0)),
                }
                l2.forward(&act.hidden, n, &mut act.logits);
            }
            (_, layers) => layers[0].forward(x, n, &mut act.logits),
        }
    }

    /// Gradients of the loss into `grad` (overwritten), given `dlogits` = dL/dlogits.
    pub fn backward(
        &self,
        x: &[f32],
        n: usize,
        act: &Activations,
        dlogits: &[f32],
        grad: &mut Head,
    ) {
        match (self.layers.as_slice(), grad.layers.as_mut_slice()) {
            ([_, out], [gq, gout]) if self.spec.spatial() => {
                crate::attention::backward(out, x, n, act, dlogits, gq, gout);
            }
            ([l1, l2], [g1, g2]) => {
                let (h, c) = (l2.rows, l2.cols);
                gemm(
                    true,
                    false,
                    h,
                    n,
                    c,
                    1.0,
                    &act.hidden,
                    dlogits,
                    0.0,
                    &mut g2.w,
                );
                col_sums(dlogits, &mut g2.b);
                let mut dh = vec![0.0; n * h];
                gemm(false, true, n, c, h, 1.0, dlogits, &l2.w, 0.0, &mut dh);
                // ReLU (hidden > 0 after dropout only where the unit was alive) and dropout.
                for (i, d) in dh.iter_mut().enumerate() {
                    if act.hidden[i] <= 0.0 {
                        *d = 0.0;
                    } else if let Some(m) = act.mask.get(i) {
                        *d *= m;
                    }
                }
                gemm(true, false, l1.rows, n, h, 1.0, x, &dh, 0.0, &mut g1.w);
                col_sums(&dh, &mut g1.b);
            }
            ([l], [g]) => {
                gemm(
                    true, false, l.rows, n, l.cols, 1.0, x, dlogits, 0.0, &mut g.w,
                );
                col_sums(dlogits, &mut g.b);
            }
            _ => unreachable!("gradient has the head's layout"),
        }
    }

    /// The gradient of `Σ_k weights[k] · logit_k` with respect to one input row `x`
    /// (inference: no dropout), for heads that read a pooled row; `None` for attention heads.
    /// Grad-CAM at the last feature map needs only this: the row is the map's average over its
    /// locations.
    pub fn input_gradient(&self, x: &[f32], weights: &[f32]) -> Option<Vec<f32>> {
        // The weights' gradient back through the last layer: Σ_k W[j, k]·weights[k].
        let back = |l: &Layer, j: usize| -> f32 {
            let row = &l.w[j * l.cols..(j + 1) * l.cols];
            row.iter().zip(weights).map(|(w, d)| w * d).sum()
        };
        match (self.spec, self.layers.as_slice()) {
            (HeadSpec::Attention, _) => None,
            (_, [l1, l2]) => {
                let mut hidden = Vec::new();
                l1.forward(x, 1, &mut hidden);
                // Through the ReLU: only the units it let through pass a gradient.
                let dh: Vec<f32> = (0..l2.rows)
                    .map(|j| if hidden[j] > 0.0 { back(l2, j) } else { 0.0 })
                    .collect();
                let grad = (0..l1.rows)
                    .map(|i| {
                        let row = &l1.w[i * l1.cols..(i + 1) * l1.cols];
                        row.iter().zip(&dh).map(|(w, d)| w * d).sum()
                    })
                    .collect();
                Some(grad)
            }
            (_, [l]) => Some((0..l.rows).map(|i| back(l, i)).collect()),
            _ => None,
        }
    }

    /// Class probabilities for `n` rows (inference: no dropout).
    pub fn predict_proba(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = self.logits(x, n);
        softmax_rows(&mut out, self.classes());
        out
    }

    /// Logits for `n` rows (inference: no dropout).
    pub fn logits(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut act = Activations::default();
        // Large sets in blocks, so the hidden layer never needs n × hidden at once.
        let mut out = Vec::with_capacity(n * self.classes());
        let d = x.len() / n.max(1);
        for start in (0..n).step_by(4096) {
            let m = (n - start).min(4096);
            self.forward(&x[start * d..(start + m) * d], m, None, &mut act);
            out.extend_from_slice(&act.logits);
        }
        out
    }

    /// Attention weights per location (`n × P`) of `n` standardised maps; empty for heads
    /// without attention.
    pub fn attention(&self, x: &[f32], n: usize) -> Vec<f32> {
        match (self.spec, self.layers.as_slice()) {
            (HeadSpec::Attention, [q, _]) => crate::attention::weights(q, x, n),
            _ => Vec::new(),
        }
    }

    /// The head's tensors, named `layers.{i}.weight` (cols × rows, PyTorch's `nn.Linear`
    /// layout) and `layers.{i}.bias`.
    pub fn to_state_dict(&self, origin: &Path) -> StateDict {
        let mut sd = StateDict::new(origin);
        for (i, l) in self.layers.iter().enumerate() {
            let mut wt = vec![0.0; l.w.len()];
            for r in 0..l.rows {
                for c in 0..l.cols {
                    wt[c * l.rows + r] = l.w[r * l.cols + c];
                }
            }
            sd.insert(
                format!("layers.{i}.weight"),
                tensor(vec![l.cols, l.rows], wt),
            );
            sd.insert(
                format!("layers.{i}.bias"),
                tensor(vec![l.cols], l.b.clone()),
            );
        }
        sd
    }

    /// Rebuild a head of `spec` from [`Head::to_state_dict`]'s tensors.
    pub fn from_state_dict(spec: HeadSpec, sd: &StateDict) -> Result<Head, TrainError> {
        let count = match spec {
            HeadSpec::Linear => 1,
            HeadSpec::Mlp { .. } | HeadSpec::Attention => 2,
        };
        let mut layers = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("layers.{i}.weight");
            let w = sd.get(&name).ok_or_else(|| TrainError::BadCheckpoint {
                path: sd.source().to_path_buf(),
                why: format!("tensor {name} missing"),
            })?;
            let (cols, rows) = match w.shape.as_slice() {
                [c, r] => (*c, *r),
                other => {
                    return Err(TrainError::BadCheckpoint {
                        path: sd.source().to_path_buf(),
                        why: format!("{name} has shape {other:?}, expected 2 dimensions"),
                    })
                }
            };
            let b = sd.require(&format!("layers.{i}.bias"), &[cols])?;
            let mut wr = vec![0.0; rows * cols];
            for c in 0..cols {
                for r in 0..rows {
                    wr[r * cols + c] = w.data[c * rows + r];
                }
            }
            layers.push(Layer {
                rows,
                cols,
                w: wr,
                b: b.data.clone(),
            });
        }
        Ok(Head { spec, layers })
    }
}

pub(crate) fn tensor(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
    Tensor {
        shape,
        data,
        dtype: DType::F32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        assert_eq!("linear".parse::<HeadSpec>().ok(), Some(HeadSpec::Linear));
        assert_eq!("mlp".parse::<HeadSpec>().ok(), Some(HeadSpec::DEFAULT_MLP));
        assert_eq!(
            "mlp:512:0.5".parse::<HeadSpec>().ok(),
            Some(HeadSpec::Mlp {
                hidden: 512,
                dropout: 0.5
            })
        );
        for bad in ["", "lin", "mlp:0", "mlp:64:1.5", "mlp:64:0.1:x", "linear:3"] {
            assert!(bad.parse::<HeadSpec>().is_err(), "{bad}");
        }
        let s = HeadSpec::Mlp {
            hidden: 64,
            dropout: 0.25,
        };
        assert_eq!(s.to_string().parse::<HeadSpec>().ok(), Some(s));
    }

    /// Analytic gradients against central differences of the same loss.
    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = SplitMix64::new(3);
        for spec in [
            HeadSpec::Linear,
            HeadSpec::Mlp {
                hidden: 6,
                dropout: 0.0,
            },
        ] {
            let (n, d, c) = (4, 5, 3);
            let head = Head::new(spec, d, c, &mut rng);
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
                .collect();
            let y = [0usize, 2, 1, 2];
            let loss = |h: &Head| -> f64 {
                let p = h.predict_proba(&x, n);
                (0..n)
                    .map(|i| -f64::from(p[i * c + y[i]]).ln())
                    .sum::<f64>()
                    / n as f64
            };
            let mut act = Activations::default();
            head.forward(&x, n, None, &mut act);
            // d(mean CE)/d logits = (softmax − one-hot) / n.
            let mut p = Vec::new();
            crate::loss::cross_entropy(&act.logits, &y, c, 0.0, None, &mut p);
            let mut grad = head.zeros_like();
            head.backward(&x, n, &act, &p, &mut grad);
            for (li, layer) in head.layers.iter().enumerate() {
                for j in 0..layer.w.len() {
                    let eps = 1e-2;
                    let mut hp = head.clone();
                    hp.layers[li].w[j] += eps;
                    let mut hm = head.clone();
                    hm.layers[li].w[j] -= eps;
                    let num = (loss(&hp) - loss(&hm)) / (2.0 * f64::from(eps));
                    let ana = f64::from(grad.layers[li].w[j]);
                    assert!(
                        (num - ana).abs() < 2e-3,
                        "{spec} layer {li} w{j}: {num} vs {ana}"
                    );
                }
            }
        }
    }

    #[test]
    fn state_dict_round_trip() {
        let mut rng = SplitMix64::new(1);
        let head = Head::new(HeadSpec::DEFAULT_MLP, 12, 4, &mut rng);
        let sd = head.to_state_dict(Path::new("mem"));
        assert_eq!(
            sd.get("layers.0.weight").map(|t| t.shape.clone()),
            Some(vec![256, 12])
        );
        let back = Head::from_state_dict(head.spec, &sd).expect("loads");
        assert_eq!(back, head);
    }
}
