//! The extraction driver: decode and preprocess on a producer thread (rayon inside), encode on
//! the caller's thread, write one shard per chunk.
//!
//! Memory stays bounded: the producer hands over one batch at a time through a channel of
//! capacity 1, so at most three batches of tensors exist at once (being decoded, queued, being
//! encoded) plus the chunk being filled. Batches never span chunks, so a chunk is encoded in the
//! same batches whether it runs alone, in a `--shard i/N` process or after a resume — which keeps
//! results identical even for backends whose numerics depend on the batch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use graft_data::preprocess::Preprocess;
use graft_model::encoder::ImageEncoder;
use graft_model::Encoder;
use rayon::prelude::*;

use crate::format::{
    self, chunk_complete, failed_name, read_header, remove_if_exists, shard_name, spatial_name,
    tmp_name, write_atomic, CacheHeader, FailedItem, SpatialDims, DTYPE, FORMAT_VERSION,
    HEADER_FILE,
};
use crate::{FeatureError, Shard, Source};

pub const DEFAULT_BATCH: usize = 32;
pub const DEFAULT_CHUNK: usize = 256;

/// Settings of one extraction run. Everything except `batch`, `shard` and `force` is part of
/// the cache's identity (`cache.json`).
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// The encoder, stored in the header.
    pub encoder: Encoder,
    /// Identity of the weights (their sha256 or its prefix).
    pub weights: String,
    pub preprocess: Preprocess,
    pub batch: usize,
    pub chunk: usize,
    pub shard: Shard,
    /// Also store the last spatial feature map of every image.
    pub spatial: bool,
    /// Delete an existing cache in the folder instead of refusing a different one.
    pub force: bool,
}

impl ExtractOptions {
    pub fn new(encoder: impl Into<Encoder>, weights: impl Into<String>, pre: Preprocess) -> Self {
        ExtractOptions {
            encoder: encoder.into(),
            weights: weights.into(),
            preprocess: pre,
            batch: DEFAULT_BATCH,
            chunk: DEFAULT_CHUNK,
            shard: Shard::default(),
            spatial: false,
            force: false,
        }
    }
}

/// Reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Images handled by this run so far (failed ones included).
    pub done: usize,
    /// Images this run will handle (those in chunks it owns that were not already complete).
    pub todo: usize,
}

#[derive(Debug, Clone)]
pub struct ExtractSummary {
    pub total_images: usize,
    pub chunks_total: usize,
    /// Chunks this process is responsible for (`--shard`).
    pub chunks_owned: usize,
    /// Owned chunks that were already complete and were skipped.
    pub chunks_skipped: usize,
    pub chunks_written: usize,
    /// Images encoded by this run.
    pub images_encoded: usize,
    /// Images of this run that got a zero row.
    pub failed: Vec<FailedItem>,
    /// Whether every chunk of the cache (not only owned ones) is now complete.
    pub cache_complete: bool,
    pub elapsed: Duration,
}

struct Batch {
    chunk: usize,
    /// Index of the batch's first item in the cache.
    start: usize,
    n: usize,
    /// Tensors of the images that decoded, packed (`ok.len()` × image length).
    tensor: Vec<f32>,
    /// Offsets within the batch of the images in `tensor`.
    ok: Vec<usize>,
    failed: Vec<FailedItem>,
}

/// Extract features of `source` into the cache folder `out`, resuming where an earlier run
/// stopped. Images that cannot be read or decoded, or whose content hash no longer matches,
/// get a zero row and are listed in `failed-NNNNN.json` (see [`crate::FeatureCache::failed`]).
pub fn extract(
    out: &Path,
    source: &Source,
    encoder: &mut dyn ImageEncoder,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ExtractSummary, FeatureError> {
    let started = Instant::now();
    if opts.batch == 0 || opts.chunk == 0 {
        return Err(FeatureError::BadOption(
            "--batch and --chunk must be at least 1".into(),
        ));
    }
    if opts.preprocess.is_empty() {
        return Err(FeatureError::BadOption("preprocess size is 0".into()));
    }
    if source.is_empty() {
        return Err(FeatureError::NoImages);
    }
    std::fs::create_dir_all(out).map_err(|e| FeatureError::io("create", out, e))?;
    let _lock = opts.shard.lock(out)?;
    if opts.force {
        clear_cache(out)?;
    }
    let spatial = if opts.spatial {
        Some(probe_spatial(encoder, &opts.preprocess)?)
    } else {
        None
    };
    let header = CacheHeader {
        format_version: FORMAT_VERSION,
        encoder: opts.encoder.clone(),
        weights: opts.weights.clone(),
        preprocess: opts.preprocess,
        feature_dim: encoder.feature_dim(),
        dtype: DTYPE.to_string(),
        spatial,
        chunk: opts.chunk,
        total: source.len(),
        classes: source.classes.clone(),
        items: source.items.clone(),
    };
    ensure_header(out, &header)?;

    let owned: Vec<usize> = (0..header.chunks())
        .filter(|&k| opts.shard.owns(k))
        .collect();
    let mut pending = Vec::new();
    for &k in &owned {
        if chunk_complete(out, &header, k) {
            continue;
        }
        // Only this process's chunks: other shards may be writing theirs right now.
        for name in [shard_name(k), spatial_name(k), failed_name(k)] {
            remove_if_exists(&out.join(tmp_name(&name)))?;
        }
        pending.push(k);
    }
    let todo: usize = pending.iter().map(|&k| header.chunk_range(k).len()).sum();
    tracing::info!(
        owned = owned.len(),
        skipped = owned.len() - pending.len(),
        todo,
        "extracting"
    );
    progress(Progress { done: 0, todo });

    let mut state = Consumer {
        out,
        header: &header,
        encoder,
        progress,
        done: 0,
        todo,
        encoded: 0,
        written: 0,
        failed: Vec::new(),
    };
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Batch>(1);
        let (pending, pre, batch, hdr) = (&pending, &opts.preprocess, opts.batch, &header);
        s.spawn(move || produce(&tx, source, hdr, pending, batch, pre));
        // On error `rx` is dropped here, which makes the producer's next send fail and stop.
        state.consume(rx)
    })?;

    let cache_complete = (0..header.chunks()).all(|k| chunk_complete(out, &header, k));
    Ok(ExtractSummary {
        total_images: header.total,
        chunks_total: header.chunks(),
        chunks_owned: owned.len(),
        chunks_skipped: owned.len() - pending.len(),
        chunks_written: state.written,
        images_encoded: state.encoded,
        failed: state.failed,
        cache_complete,
        elapsed: started.elapsed(),
    })
}

/// Delete the files of an earlier cache (and nothing else) from `dir`.
fn clear_cache(dir: &Path) -> Result<(), FeatureError> {
    let rd = std::fs::read_dir(dir).map_err(|e| FeatureError::io("list", dir, e))?;
    for entry in rd.flatten() {
        let name = entry.file_name();
        if format::is_cache_file(&name.to_string_lossy()) {
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

/// Write `cache.json`, or check that the one already there describes the same cache.
fn ensure_header(out: &Path, header: &CacheHeader) -> Result<(), FeatureError> {
    if format::header_path(out).exists() {
        let existing = read_header(out).map_err(|e| FeatureError::Mismatch {
            dir: out.to_path_buf(),
            what: format!("or unreadable header ({e})"),
        })?;
        return match existing.difference(header) {
            Some(what) => Err(FeatureError::Mismatch {
                dir: out.to_path_buf(),
                what,
            }),
            None => Ok(()),
        };
    }
    let json = serde_json::to_vec_pretty(header).map_err(|e| FeatureError::BadHeader {
        path: format::header_path(out),
        why: e.to_string(),
    })?;
    // Per-process temporary name: shard processes may race to write the (identical) header.
    let tmp = format!("{HEADER_FILE}.tmp.{}", std::process::id());
    write_atomic(out, HEADER_FILE, &tmp, &json)
}

/// Run one blank image through the encoder to learn the spatial map's shape.
fn probe_spatial(
    encoder: &mut dyn ImageEncoder,
    pre: &Preprocess,
) -> Result<SpatialDims, FeatureError> {
    let out = encoder.encode(&vec![0.0; pre.len()], 1, true)?;
    let channels = encoder.feature_dim();
    let map = out.feature_map.unwrap_or_default();
    let hw = map.len() / channels.max(1);
    let side = (hw as f64).sqrt().round() as usize;
    if map.is_empty() || hw * channels != map.len() || side * side != hw {
        return Err(FeatureError::EncoderOutput {
            what: "the spatial map of one image (C×H×H)",
            got: map.len(),
            expected: channels * side * side,
        });
    }
    Ok(SpatialDims {
        channels,
        height: side,
        width: side,
    })
}

fn produce(
    tx: &SyncSender<Batch>,
    source: &Source,
    header: &CacheHeader,
    pending: &[usize],
    batch: usize,
    pre: &Preprocess,
) {
    for &k in pending {
        let range = header.chunk_range(k);
        let mut start = range.start;
        while start < range.end {
            let end = (start + batch).min(range.end);
            if tx.send(decode_batch(source, k, start, end, pre)).is_err() {
                return;
            }
            start = end;
        }
    }
}

fn decode_batch(
    source: &Source,
    chunk: usize,
    start: usize,
    end: usize,
    pre: &Preprocess,
) -> Batch {
    let len = pre.len();
    let mut tensor = vec![0.0f32; (end - start) * len];
    let results: Vec<Result<(), String>> = tensor
        .par_chunks_mut(len)
        .zip(start..end)
        .map(|(buf, i)| decode_one(&source.files[i], &source.items[i].hash, pre, buf))
        .collect();
    let (mut ok, mut failed, mut packed) = (Vec::new(), Vec::new(), 0);
    for (j, r) in results.into_iter().enumerate() {
        match r {
            Ok(()) => {
                tensor.copy_within(j * len..(j + 1) * len, packed * len);
                packed += 1;
                ok.push(j);
            }
            Err(reason) => failed.push(FailedItem {
                index: start + j,
                path: source.items[start + j].path.clone(),
                reason,
            }),
        }
    }
    tensor.truncate(packed * len);
    Batch {
        chunk,
        start,
        n: end - start,
        tensor,
        ok,
        failed,
    }
}

fn decode_one(path: &Path, hash: &str, pre: &Preprocess, out: &mut [f32]) -> Result<(), String> {
    let (bytes, img) = graft_data::decode::read_and_decode(path).map_err(|e| e.to_string())?;
    if !hash.is_empty() && graft_data::hash::content_hash(&bytes) != hash {
        return Err("file changed since the manifest was written (content hash differs)".into());
    }
    // A decoder bug on a hostile file must cost one image, not the run.
    catch_unwind(AssertUnwindSafe(|| pre.apply_into(&img, out)))
        .map_err(|_| "preprocessing panicked on this image".to_string())
}

struct Consumer<'a> {
    out: &'a Path,
    header: &'a CacheHeader,
    encoder: &'a mut dyn ImageEncoder,
    progress: &'a mut dyn FnMut(Progress),
    done: usize,
    todo: usize,
    encoded: usize,
    written: usize,
    failed: Vec<FailedItem>,
}

/// The chunk being filled.
struct Acc {
    chunk: usize,
    rows: usize,
    filled: usize,
    features: Vec<f32>,
    spatial: Vec<f32>,
    failed: Vec<FailedItem>,
}

impl Consumer<'_> {
    fn consume(&mut self, rx: Receiver<Batch>) -> Result<(), FeatureError> {
        let h = self.header;
        let dim = h.feature_dim;
        let sp = h.spatial.map_or(0, |s| s.len());
        let mut acc: Option<Acc> = None;
        for b in rx {
            let a = acc.get_or_insert_with(|| {
                let rows = h.chunk_range(b.chunk).len();
                Acc {
                    chunk: b.chunk,
                    rows,
                    filled: 0,
                    features: vec![0.0; rows * dim],
                    spatial: vec![0.0; rows * sp],
                    failed: Vec::new(),
                }
            });
            let first = h.chunk_range(a.chunk).start;
            let n_ok = b.ok.len();
            if n_ok > 0 {
                let out = self.encoder.encode(&b.tensor, n_ok, sp > 0)?;
                check_len("features", out.features.len(), n_ok * dim)?;
                for (j, &off) in b.ok.iter().enumerate() {
                    let row = b.start - first + off;
                    a.features[row * dim..(row + 1) * dim]
                        .copy_from_slice(&out.features[j * dim..(j + 1) * dim]);
                }
                if sp > 0 {
                    let map = out.feature_map.unwrap_or_default();
                    check_len("spatial maps", map.len(), n_ok * sp)?;
                    for (j, &off) in b.ok.iter().enumerate() {
                        let row = b.start - first + off;
                        a.spatial[row * sp..(row + 1) * sp]
                            .copy_from_slice(&map[j * sp..(j + 1) * sp]);
                    }
                }
                self.encoded += n_ok;
            }
            a.failed.extend(b.failed);
            a.filled += b.n;
            self.done += b.n;
            (self.progress)(Progress {
                done: self.done,
                todo: self.todo,
            });
            if a.filled == a.rows {
                if let Some(done) = acc.take() {
                    self.write_chunk(done)?;
                }
            }
        }
        Ok(())
    }

    /// Failures first, then the spatial shard, the feature shard last: its presence marks
    /// the chunk complete.
    fn write_chunk(&mut self, a: Acc) -> Result<(), FeatureError> {
        let k = a.chunk;
        let failed = failed_name(k);
        if a.failed.is_empty() {
            remove_if_exists(&self.out.join(&failed))?;
        } else {
            let json =
                serde_json::to_vec_pretty(&a.failed).map_err(|e| FeatureError::BadHeader {
                    path: self.out.join(&failed),
                    why: e.to_string(),
                })?;
            write_atomic(self.out, &failed, &tmp_name(&failed), &json)?;
        }
        if self.header.spatial.is_some() {
            let name = spatial_name(k);
            let bytes = format::f32_to_f16_bytes(&a.spatial);
            write_atomic(self.out, &name, &tmp_name(&name), &bytes)?;
        }
        let name = shard_name(k);
        let bytes = format::f32_to_f16_bytes(&a.features);
        write_atomic(self.out, &name, &tmp_name(&name), &bytes)?;
        self.failed.extend(a.failed);
        self.written += 1;
        Ok(())
    }
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), FeatureError> {
    if got == expected {
        Ok(())
    } else {
        Err(FeatureError::EncoderOutput {
            what,
            got,
            expected,
        })
    }
}
