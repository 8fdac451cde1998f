//! The run's classifier with its last feature map, on ONNX Runtime: one run gives each image's
//! probabilities and the map its heatmap is made from; a second, batched, scores the
//! perturbed images the quality metrics need.

use crate::encoder::{file_map_side, not_for_files, RunEncoder};
use graft_export::ClassifierGraph;
use std::path::Path;

use graft_data::preprocess::Preprocess;
use graft_data::rng::SplitMix64;
use graft_eval::explain::cam::{self, CamKind};
use graft_eval::explain::figure::{self, Explained as Drawn};
use graft_eval::explain::quality::{self, Perturb};
use graft_model::imagenet::top_k_probs;
use graft_model::ort_backend::Session;
use graft_model::ort_backend::{run_images, run_images_outputs, session_from_onnx, OrtOptions};
use graft_train::metrics::argmax_rows;
use graft_train::HeadModel;
use image::RgbImage;

use super::layer::LayerGrad;
use super::record::{path_key, ExplainRecord, Peak, SanityStep};
use super::sanity::{Engine, Sanity};
use super::{ExplainConfig, Item, Method, Target};
use crate::{RunDir, RunError};

/// Perturbed images per ONNX Runtime call.
const CHUNK: usize = 32;
/// Points on integrated gradients' path. On the localisation test at MobileNetV2's block 13,
/// 8 points put the peak on the patch for 143 of 150 images; 1 point (the gradient at the
/// image alone) for 133.
const IG_STEPS: usize = 8;

pub struct Explainer {
    model: HeadModel,
    session: Session,
    pre: Preprocess,
    /// The feature map is `channels × side × side`.
    side: usize,
    channels: usize,
    /// Grad-CAM at an earlier block, when asked.
    layer: Option<LayerGrad>,
    /// The randomised models of the sanity check, when asked.
    sanity: Option<Sanity>,
}

/// What one ONNX Runtime run gives, for a batch.
struct Forward {
    probs: Vec<f32>,
    maps: Vec<f32>,
    /// The `--layer` block's maps (empty without one).
    blocks: Vec<f32>,
}

/// One image's predicted-class map ([`Explainer::maps`]).
pub struct Mapped {
    /// Index into the items given.
    pub item: usize,
    /// The model's crop.
    pub crop: RgbImage,
    /// `side × side`, scaled to `[0, 1]`.
    pub heat: Vec<f32>,
    pub predicted: usize,
}

/// The heatmaps of one image, each `side × side`, raw (non-negative, unscaled).
struct Heats {
    maps: Vec<Vec<f32>>,
    side: usize,
    method: Method,
}

/// One decoded image, as the model sees it.
struct Seen {
    item: usize,
    crop: RgbImage,
    input: Vec<f32>,
    /// The original image's size, to place the peak on it.
    size: (u32, u32),
}

impl Explainer {
    /// The run's classifier (its fine-tuned encoder if it has one) with the map as an output.
    /// With `layer`, Grad-CAM is taken at that block's output instead of the last map; with
    /// `sanity`, every map is also made from models randomised from the top down and compared.
    pub fn open(run: &RunDir, layer: Option<usize>, sanity: bool) -> Result<Explainer, RunError> {
        let model = HeadModel::load(run.root())?;
        let encoder = crate::encoder::load_run_encoder(run, &model)?;
        if layer.is_some() && model.reads_maps() {
            return Err(RunError::Invalid(
                "an attention head is explained by its own attention over the last map; \
                 --layer is for pooled heads (linear, mlp)"
                    .into(),
            ));
        }
        let opts = OrtOptions {
            intra_threads: Some(rayon::current_num_threads()),
            ..OrtOptions::default()
        };
        let (spec, weights) = match encoder {
            RunEncoder::Graft { spec, weights } => (spec, weights),
            RunEncoder::File { encoder, bytes } => {
                // A user's file is explained at its output map, with the head's gradient alone.
                if layer.is_some() {
                    return Err(not_for_files(
                        &encoder,
                        "Grad-CAM at an earlier block (--layer)",
                    ));
                }
                let side = file_map_side(&encoder, &bytes)?.ok_or_else(|| {
                    RunError::Invalid(format!(
                        "{} gives pooled features, so there is no map to explain; train with \
                         --output naming one of its [N, C, H, W] outputs (see `graft models \
                         inspect`)",
                        encoder.onnx.display()
                    ))
                })?;
                // The side found once: finding it may take a run of the file.
                let bytes = graft_export::file_classifier_to_onnx(
                    &encoder,
                    bytes,
                    Some(side),
                    &model,
                    ClassifierGraph::FeatureMap,
                )?;
                return Ok(Explainer {
                    side,
                    channels: model.meta.feature_dim,
                    // The file's blocks cannot be re-drawn: the head alone is.
                    sanity: sanity.then(|| Sanity::head_only(&model)),
                    session: session_from_onnx(&bytes, opts)?,
                    pre: model.meta.preprocess,
                    model,
                    layer: None,
                });
            }
        };
        let layer = layer
            .map(|b| LayerGrad::new(&spec, &weights, b))
            .transpose()?;
        let block = layer.as_ref().map(LayerGrad::block);
        // With a layer, ONNX Runtime gives that block's map too: only the blocks above it run
        // on burn, for the gradient.
        let bytes = graft_export::explainer_to_onnx(&spec, &weights, &model, block)?;
        let session = session_from_onnx(&bytes, opts)?;
        let pre = model.meta.preprocess;
        let sanity = sanity
            .then(|| Sanity::new(&spec, &weights, &model, block, opts))
            .transpose()?;
        Ok(Explainer {
            side: spec.feature_map_size(pre.size as usize),
            channels: spec.feature_dim,
            sanity,
            model,
            session,
            pre,
            layer,
        })
    }

    pub fn model(&self) -> &HeadModel {
        &self.model
    }

    /// Probabilities, last feature maps and (with a layer) that block's maps of `n`
    /// preprocessed images.
    fn forward(&mut self, input: &[f32], n: usize) -> Result<Forward, RunError> {
        let size = self.pre.size as usize;
        let mut names = vec![graft_export::PROBABILITIES, graft_export::FEATURE_MAP];
        if self.layer.is_some() {
            names.push(graft_export::BLOCK_MAP);
        }
        let mut outs = run_images_outputs(&mut self.session, input, n, size, &names)?.into_iter();
        Ok(Forward {
            probs: outs.next().unwrap_or_default(),
            maps: outs.next().unwrap_or_default(),
            blocks: outs.next().unwrap_or_default(),
        })
    }

    /// Image `i`'s last map and block map in `f`.
    fn image<'f>(&self, f: &'f Forward, i: usize) -> (&'f [f32], &'f [f32]) {
        let map_len = self.channels * self.side * self.side;
        let map = &f.maps[i * map_len..(i + 1) * map_len];
        let block = match &self.layer {
            Some(l) => {
                let len = l.shape.iter().product::<usize>();
                f.blocks.get(i * len..(i + 1) * len).unwrap_or_default()
            }
            None => &[],
        };
        (map, block)
    }

    /// Probabilities of any number of preprocessed images, in chunks.
    fn probabilities(&mut self, input: &[f32]) -> Result<Vec<f32>, RunError> {
        let size = self.pre.size as usize;
        let per = 3 * size * size;
        let mut out = Vec::with_capacity(input.len() / per * self.model.meta.classes.len());
        for chunk in input.chunks(CHUNK * per) {
            out.extend(run_images(
                &mut self.session,
                chunk,
                chunk.len() / per,
                size,
                graft_export::PROBABILITIES,
            )?);
        }
        Ok(out)
    }

    /// The layer maps are at: "last", or "block B (C×H×W)".
    pub fn layer_name(&self) -> String {
        match &self.layer {
            None => "last".into(),
            Some(l) => format!(
                "block {} ({}×{}×{})",
                l.block(),
                l.shape[0],
                l.shape[1],
                l.shape[2]
            ),
        }
    }

    /// Heatmaps of `classes` for one image (its last feature map `map` and, with a layer,
    /// that block's map `block`), by `method`; attention heads answer with their attention.
    fn heats(
        &self,
        model: &HeadModel,
        method: Method,
        map: &[f32],
        block: &[f32],
        classes: &[usize],
        seed: u64,
    ) -> Result<Heats, RunError> {
        let layer = self.layer.as_ref();
        self.heats_in(model, layer, method, map, block, classes, seed)
    }

    /// [`Explainer::heats`] with the gradient at an earlier block taken through `layer`'s
    /// blocks (the sanity check's randomised ones, or the run's).
    #[allow(clippy::too_many_arguments)]
    fn heats_in(
        &self,
        model: &HeadModel,
        layer: Option<&LayerGrad>,
        method: Method,
        map: &[f32],
        block: &[f32],
        classes: &[usize],
        seed: u64,
    ) -> Result<Heats, RunError> {
        let side = layer.map_or(self.side, |l| l.shape[1]);
        let locations = side * side;
        if method == Method::Random {
            let maps = classes
                .iter()
                .map(|&c| {
                    let mut rng = SplitMix64::new(seed ^ c as u64);
                    (0..locations).map(|_| rng.next_f64() as f32).collect()
                })
                .collect();
            return Ok(Heats { maps, side, method });
        }
        if model.reads_maps() {
            let attention = model.attention(map, 1);
            return Ok(Heats {
                maps: vec![attention; classes.len()],
                side: self.side,
                method: Method::Attention,
            });
        }
        let (kind, method) = match method {
            Method::GradCamPlusPlus => (CamKind::GradCamPlusPlus, method),
            Method::LayerCam => (CamKind::LayerCam, method),
            Method::IntegratedGradients => (CamKind::Integrated, method),
            _ => (CamKind::GradCam, Method::GradCam),
        };
        // Integrated gradients averages the gradient along the path from the reference; the
        // others take it at the image alone (the path's last point).
        let steps = if kind == CamKind::Integrated {
            IG_STEPS
        } else {
            1
        };
        let targets: Vec<Vec<f32>> = classes.iter().map(|&c| model.centred(c)).collect();
        if let Some(layer) = layer {
            let mut grads = vec![vec![0f32; block.len()]; targets.len()];
            for at in cam::path_fractions(steps) {
                let point = layer.along_path(block, at);
                for (sum, g) in grads
                    .iter_mut()
                    .zip(layer.gradients(&point, model, &targets)?)
                {
                    sum.iter_mut()
                        .zip(g)
                        .for_each(|(s, g)| *s += g / steps as f32);
                }
            }
            let relative = layer.relative(block);
            let maps = grads
                .iter()
                .map(|g| cam::class_activation(kind, &relative, g, locations))
                .collect();
            return Ok(Heats { maps, side, method });
        }
        let pooled: Vec<f32> = map
            .chunks_exact(locations)
            .map(|plane| plane.iter().sum::<f32>() / locations as f32)
            .collect();
        // Activations above the training mean, which the head's standardiser subtracts: a
        // channel high everywhere in every image tells no class apart.
        let centred: Vec<f32> = map
            .chunks_exact(locations)
            .zip(&model.standardizer.mean)
            .flat_map(|(plane, m)| plane.iter().map(move |a| a - m))
            .collect();
        let mean = &model.standardizer.mean;
        let maps = targets
            .iter()
            .map(|t| {
                // No gradient (features of another width) gives no map, as before the path.
                let g = cam::path_fractions(steps)
                    .try_fold(vec![0f32; pooled.len()], |mut g, at| {
                        let point = cam::path_point(mean, &pooled, at);
                        let step = model.logit_gradient(&point, t)?;
                        g.iter_mut()
                            .zip(step)
                            .for_each(|(s, d)| *s += d / steps as f32);
                        Some(g)
                    })
                    .unwrap_or_default();
                let grads = cam::broadcast(&g, locations);
                cam::class_activation(kind, &centred, &grads, locations)
            })
            .collect();
        Ok(Heats { maps, side, method })
    }

    /// [`Explainer::heats`], or Score-CAM, which runs the model itself.
    fn make_heats(
        &mut self,
        config: &ExplainConfig,
        method: Method,
        (map, block): (&[f32], &[f32]),
        input: &[f32],
        classes: &[usize],
        seed: u64,
    ) -> Result<Heats, RunError> {
        if method != Method::ScoreCam || self.model.reads_maps() {
            return self.heats(&self.model, method, map, block, classes, seed);
        }
        if self.layer.is_some() {
            return Err(RunError::Invalid(
                "score-cam masks the image with the last map's channels; drop --layer".into(),
            ));
        }
        let (side, size) = (self.side, self.pre.size as usize);
        let (locations, pixels) = (side * side, size * size);
        let picked = cam::score_cam_channels(map, locations, config.score_cam_channels);
        let fill = self.pre.black();
        let mut masked = Vec::with_capacity(picked.len() * 3 * pixels);
        for &k in &picked {
            let mask = cam::score_cam_mask(map, side, k, size);
            for (c, f) in fill.iter().enumerate() {
                let plane = &input[c * pixels..(c + 1) * pixels];
                masked.extend(plane.iter().zip(&mask).map(|(x, m)| f + (x - f) * m));
            }
        }
        let probs = self.probabilities(&masked)?;
        let k = self.model.meta.classes.len();
        let maps = classes
            .iter()
            .map(|&c| {
                let scores: Vec<f32> = (0..picked.len()).map(|j| probs[j * k + c]).collect();
                cam::score_cam(map, locations, &picked, &scores)
            })
            .collect();
        Ok(Heats { maps, side, method })
    }

    /// The predicted class's heatmap for each readable image (no quality metrics): the
    /// model's crop, the map at the layer's grid (`side × side`, scaled to `[0, 1]`), the
    /// predicted class. For the class means.
    pub fn maps(
        &mut self,
        items: &[&Item],
        config: &ExplainConfig,
    ) -> Result<(usize, Vec<Mapped>), RunError> {
        let mut seen = Vec::new();
        for (k, item) in items.iter().enumerate() {
            if let Ok((_, img)) = graft_data::decode::read_and_decode(&item.path) {
                seen.push((k, self.pre.resize_crop(&img), self.pre.apply(&img)));
            }
        }
        if seen.is_empty() {
            return Ok((self.side, Vec::new()));
        }
        let input: Vec<f32> = seen.iter().flat_map(|s| s.2.iter().copied()).collect();
        let f = self.forward(&input, seen.len())?;
        let k = self.model.meta.classes.len();
        let mut side = self.side;
        let mut out = Vec::with_capacity(seen.len());
        let predictions = argmax_rows(&f.probs, k);
        for (i, (item, crop, input)) in seen.into_iter().enumerate() {
            let predicted = predictions[i];
            let maps = self.image(&f, i);
            let heats = self.make_heats(config, config.method, maps, &input, &[predicted], 0)?;
            side = heats.side;
            out.push(Mapped {
                item,
                crop,
                heat: cam::normalised(&heats.maps[0]),
                predicted,
            });
        }
        Ok((side, out))
    }

    /// Explain a batch: a record per readable image, and its figure when drawn.
    pub fn explain(
        &mut self,
        items: &[&Item],
        config: &ExplainConfig,
        target: &Target,
        unreadable: &mut Vec<(std::path::PathBuf, String)>,
    ) -> Result<Vec<(ExplainRecord, Option<RgbImage>)>, RunError> {
        let mut seen = Vec::new();
        for (k, item) in items.iter().enumerate() {
            match graft_data::decode::read_and_decode(&item.path) {
                Ok((_, img)) => seen.push(Seen {
                    item: k,
                    crop: self.pre.resize_crop(&img),
                    input: self.pre.apply(&img),
                    size: img.dimensions(),
                }),
                Err(e) => unreadable.push((item.path.clone(), e.to_string())),
            }
        }
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let input: Vec<f32> = seen.iter().flat_map(|s| s.input.iter().copied()).collect();
        let f = self.forward(&input, seen.len())?;
        let probs = &f.probs;
        let k = self.model.meta.classes.len();
        let size = self.pre.size as usize;
        let perturb = Perturb {
            top_share: config.top_share,
            steps: config.steps,
            fill: self.pre.black(),
        };
        // Heatmaps first, then every image's perturbations in one batched pass.
        let drawing = config.save != super::Save::None;
        let mut shown_of = Vec::with_capacity(seen.len());
        let mut sanity_of = Vec::with_capacity(seen.len());
        let mut heats_of = Vec::with_capacity(seen.len());
        let mut perturbed = Vec::new();
        for (i, s) in seen.iter().enumerate() {
            let item = items[s.item];
            let p = &probs[i * k..(i + 1) * k];
            let maps = self.image(&f, i);
            let class = self.target_class(target, item, p);
            // The figure's second row: the top classes, and the true one when it is not
            // among them (a mistake's predicted and true class side by side).
            let top = top_k_probs(p, config.top_k);
            let mut shown = top.clone();
            let truth = item.truth.as_deref();
            let t = truth.and_then(|t| self.model.meta.classes.iter().position(|c| c == t));
            if let Some(t) = t.filter(|t| !shown.iter().any(|(c, _)| c == t)) {
                shown.truncate(3);
                shown.push((t, p[t]));
            }
            let mut wanted = vec![class];
            if drawing {
                wanted.extend(shown.iter().map(|(c, _)| *c));
            }
            // The random method's map depends on the image's pixels: not on where the file
            // lies nor on its place in the batch.
            let key = blake3::hash(s.crop.as_raw());
            let mut first = [0u8; 8];
            first.copy_from_slice(&key.as_bytes()[..8]);
            let seed = config.seed ^ u64::from_le_bytes(first);
            let heats = self.make_heats(config, config.method, maps, &s.input, &wanted, seed)?;
            // Adebayo et al.'s check: the same map from models randomised from the top down
            // must look different, or the method is not explaining the model.
            let checked = !matches!(heats.method, Method::Random | Method::ScoreCam);
            let sanity = if checked {
                self.sanity_check(config.method, maps, &s.input, class, &heats.maps[0], seed)?
            } else {
                None
            };
            sanity_of.push(sanity);
            let up = cam::normalised(&cam::upsample(&heats.maps[0], heats.side, size));
            perturbed.extend(quality::perturbations(&s.input, &up, perturb));
            shown_of.push((top, shown));
            heats_of.push((class, heats, up));
        }
        let scored = self.probabilities(&perturbed)?;
        let per = perturb.count();
        let layer = self.layer_name();
        let mut out = Vec::with_capacity(seen.len());
        let rows = seen.iter().zip(heats_of).zip(shown_of).enumerate();
        for (i, ((s, (class, heats, up)), (top, shown))) in rows {
            let item = items[s.item];
            let p = &probs[i * k..(i + 1) * k];
            let class_probs: Vec<f32> = scored[i * per * k..(i + 1) * per * k]
                .chunks_exact(k)
                .map(|row| row[class])
                .collect();
            let q = quality::quality(p[class], &class_probs, &up, perturb);
            // The hottest cell, refined to a fraction of a cell by its neighbours.
            let (cx, cy) = quality::subcell_peak(&heats.maps[0], heats.side);
            let cell = size as f32 / heats.side as f32;
            let (px, py) = (cx * cell, cy * cell);
            let mut rec = ExplainRecord::new(
                path_key(&item.path),
                item.truth.clone(),
                &self.model.meta.classes,
                p,
                class,
                &top,
                heats.method,
                q,
                self.peak_in_original(px, py, s.size),
                config,
            );
            rec.layer = layer.clone();
            if let Some((head, cascade)) = sanity_of[i].take() {
                rec.sanity_rank_correlation = Some(head);
                rec.sanity_cascade = cascade;
            }
            let drawn = drawing.then(|| {
                let class_heats: Vec<Vec<f32>> = heats.maps[1..]
                    .iter()
                    .map(|h| cam::normalised(&cam::upsample(h, heats.side, size)))
                    .collect();
                self.draw(&rec, &s.crop, &up, &shown, &class_heats, &item.path)
            });
            out.push((rec, drawn.transpose()?));
        }
        Ok(out)
    }

    /// The rank correlation of `real` (class `class`'s map) with the same map from the model
    /// with a random head, then with each cascade step's randomised blocks too.
    fn sanity_check(
        &mut self,
        method: Method,
        (map, block): (&[f32], &[f32]),
        input: &[f32],
        class: usize,
        real: &[f32],
        seed: u64,
    ) -> Result<Option<(f64, Vec<SanityStep>)>, RunError> {
        let Some(mut sanity) = self.sanity.take() else {
            return Ok(None);
        };
        let checked =
            self.check_cascade(&mut sanity, method, (map, block), input, class, real, seed);
        self.sanity = Some(sanity);
        checked.map(Some)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_cascade(
        &self,
        sanity: &mut Sanity,
        method: Method,
        (map, block): (&[f32], &[f32]),
        input: &[f32],
        class: usize,
        real: &[f32],
        seed: u64,
    ) -> Result<(f64, Vec<SanityStep>), RunError> {
        let head = &sanity.head;
        let other = self.heats(head, method, map, block, &[class], seed)?;
        let first = cam::rank_correlation(real, &other.maps[0]);
        let size = self.pre.size as usize;
        let mut steps = Vec::with_capacity(sanity.steps.len());
        for step in &mut sanity.steps {
            let other = match &mut step.engine {
                Engine::Last(session) => {
                    let random_map =
                        run_images(session, input, 1, size, graft_export::FEATURE_MAP)?;
                    self.heats_in(head, None, method, &random_map, &[], &[class], seed)?
                }
                Engine::Layer(layer) => {
                    self.heats_in(head, Some(layer), method, map, block, &[class], seed)?
                }
            };
            steps.push(SanityStep {
                randomised: step.name.clone(),
                rank_correlation: cam::rank_correlation(real, &other.maps[0]),
            });
        }
        Ok((first, steps))
    }

    fn target_class(&self, target: &Target, item: &Item, probs: &[f32]) -> usize {
        let classes = &self.model.meta.classes;
        let predicted = argmax_rows(probs, probs.len())[0];
        let named = |name: &str| classes.iter().position(|c| c == name);
        match target {
            Target::Predicted => predicted,
            Target::True => item.truth.as_deref().and_then(named).unwrap_or(predicted),
            Target::Class(name) => named(name).unwrap_or(predicted),
        }
    }

    /// A point of the crop back on the original image.
    fn peak_in_original(&self, x: f32, y: f32, size: (u32, u32)) -> Peak {
        let (ox, oy) = self.pre.crop_to_original(x, y, size);
        Peak {
            x: ox,
            y: oy,
            crop_x: x as u32,
            crop_y: y as u32,
        }
    }

    fn draw(
        &self,
        rec: &ExplainRecord,
        crop: &RgbImage,
        heat: &[f32],
        top: &[(usize, f32)],
        class_heats: &[Vec<f32>],
        path: &Path,
    ) -> Result<RgbImage, RunError> {
        let classes = &self.model.meta.classes;
        let named: Vec<(String, f32)> = top.iter().map(|&(c, p)| (classes[c].clone(), p)).collect();
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let truth = rec
            .truth
            .as_deref()
            .map(|t| format!("true {t}, "))
            .unwrap_or_default();
        let verdict = if rec.suspicious {
            format!(" · suspicious: {}", rec.reasons.join("; "))
        } else {
            String::new()
        };
        let notes = [
            format!(
                "drop {:.2}  increase {:+.2}",
                rec.quality.confidence_drop, rec.quality.confidence_increase
            ),
            format!(
                "concentration {:.2}  coverage {:.2}",
                rec.quality.concentration, rec.quality.coverage
            ),
            format!(
                "deletion {:.3}  insertion {:.3}",
                rec.quality.deletion_auc, rec.quality.insertion_auc
            ),
        ];
        let drawn = Drawn {
            crop,
            heat,
            title: [
                format!("{file} · {} for {}", rec.method, rec.target),
                format!(
                    "{truth}predicted {} ({:.1}%){verdict}",
                    rec.predicted,
                    rec.probability * 100.0
                ),
            ],
            top: &named,
            class_heats,
            notes: &notes,
        };
        Ok(figure::figure(&drawn, path)?)
    }
}
