//! Micro-batching: requests queue their preprocessed images; one worker thread owns the model,
//! takes everything already queued (waiting at most `max_wait` for more, up to `max_batch`
//! images) and answers each request from one batched run.
//!
//! Under light load a request runs alone with at most `max_wait` added; under heavy load the
//! queue fills while a batch runs, so batches grow by themselves and throughput rises.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A model that maps `n` preprocessed images to `n` rows of a fixed width (the batcher's
/// `row`): for the served classifier, the probabilities and then the embedding summary.
pub trait Infer: Send + 'static {
    fn infer(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, String>;
}

/// The exported classifier in an ONNX Runtime session.
pub struct OrtInfer {
    session: graft_model::ort_backend::Session,
    size: usize,
    classes: usize,
    /// The projection of the `features` output, when the model has one.
    projection: Option<graft_data::embedding::Projection>,
}

impl OrtInfer {
    /// A session over the serialised classifier (`input` `[N,3,size,size]` → `probabilities`
    /// and, where the graph has it, `features`). Its threads do not spin between runs: the
    /// same cores decode the next requests.
    pub fn new(
        onnx: &[u8],
        size: usize,
        classes: usize,
        threads: Option<usize>,
    ) -> Result<Self, String> {
        let opts = graft_model::ort_backend::OrtOptions {
            intra_threads: threads,
            spinning: Some(false),
        };
        let session =
            graft_model::ort_backend::session_from_onnx(onnx, opts).map_err(|e| e.to_string())?;
        let projection = feature_dim(&session).map(graft_data::embedding::Projection::new);
        Ok(OrtInfer {
            session,
            size,
            classes,
            projection,
        })
    }

    /// Values per image: the probabilities, then the embedding summary if there is one.
    pub fn row(&self) -> usize {
        self.classes + self.embedding_dims()
    }

    /// Dimensions of the embedding summary in each row (0 without a `features` output).
    pub fn embedding_dims(&self) -> usize {
        self.projection
            .as_ref()
            .map_or(0, |_| graft_data::embedding::DIMS)
    }
}

/// The width of the graph's `features` output, when it has one of a fixed width.
fn feature_dim(session: &graft_model::ort_backend::Session) -> Option<usize> {
    let out = session.outputs().iter().find(|o| o.name() == "features")?;
    let shape = out.dtype().tensor_shape()?;
    let last = *shape.last()?;
    (shape.len() == 2 && last > 0).then_some(last as usize)
}

impl Infer for OrtInfer {
    fn infer(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, String> {
        use graft_model::ort_backend::{run_images, run_images_outputs};
        let Some(projection) = &self.projection else {
            return run_images(&mut self.session, input, n, self.size, "probabilities")
                .map_err(|e| e.to_string());
        };
        let outs = run_images_outputs(
            &mut self.session,
            input,
            n,
            self.size,
            &["probabilities", "features"],
        )
        .map_err(|e| e.to_string())?;
        let (probs, features) = (&outs[0], &outs[1]);
        let dim = projection.input_dim();
        if probs.len() != n * self.classes || features.len() != n * dim {
            return Err(format!(
                "model gave {} probabilities and {} features for {n} images",
                probs.len(),
                features.len()
            ));
        }
        let mut rows = Vec::with_capacity(n * self.row());
        for (p, f) in probs.chunks(self.classes).zip(features.chunks(dim)) {
            rows.extend_from_slice(p);
            rows.extend(projection.project(f).unwrap_or_default());
        }
        Ok(rows)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Images per run, at most (a request with more images runs whole).
    pub max_batch: usize,
    /// How long the worker waits for more requests once one is queued.
    pub max_wait: Duration,
    /// Requests that may wait in the queue before new ones get "busy".
    pub queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 8,
            max_wait: Duration::ZERO,
            queue: 256,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("the inference queue is full")]
    Busy,
    #[error("inference failed: {0}")]
    Failed(String),
    #[error("the inference worker has stopped")]
    Stopped,
}

/// Counters the worker keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub batches: AtomicU64,
    pub images: AtomicU64,
    /// Total time spent inside the model, in microseconds.
    pub busy_us: AtomicU64,
    /// Workers still running (for `/health`).
    pub running: AtomicUsize,
}

/// Counts a worker out when it exits, also by panic.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Job {
    input: Vec<f32>,
    n: usize,
    reply: oneshot::Sender<Result<Vec<f32>, BatchError>>,
}

/// Handle to the workers; cloning it is cheap. They stop when the last handle is dropped.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    stats: Arc<BatchStats>,
}

impl Batcher {
    /// Start one worker thread per model in `models` (copies of the same model: with several,
    /// batches run side by side). `image_len` is the length of one preprocessed image, `row`
    /// the number of values the model gives per image.
    pub fn start<I: Infer>(
        models: Vec<I>,
        cfg: BatchConfig,
        image_len: usize,
        row: usize,
    ) -> Batcher {
        let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(BatchStats::default());
        stats.running.store(models.len(), Ordering::Relaxed);
        let idle = Arc::new(AtomicUsize::new(0));
        for (k, infer) in models.into_iter().enumerate() {
            let (rx, stats, idle) = (rx.clone(), stats.clone(), idle.clone());
            std::thread::Builder::new()
                .name(format!("graft-infer-{k}"))
                .spawn(move || worker(infer, &rx, &idle, cfg, image_len, row, &stats))
                // Spawning a thread fails only when the OS is out of resources at start-up.
                .unwrap_or_else(|e| panic!("cannot start an inference thread: {e}"));
        }
        Batcher { tx, stats }
    }

    /// The model's rows (`n × row`) for `n` preprocessed images.
    pub async fn predict(&self, input: Vec<f32>, n: usize) -> Result<Vec<f32>, BatchError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { input, n, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(BatchError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(BatchError::Stopped),
        }
        rx.await.unwrap_or(Err(BatchError::Stopped))
    }

    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }
}

/// The next batch: the first queued job, then whatever else is queued or arrives within
/// `max_wait`, up to `max_batch` images, but only while no other worker is idle: an idle
/// worker runs the next job sooner than a bigger batch would (on a CPU, batching saves little
/// per image). `None` when every handle is gone.
fn next_batch(
    rx: &Mutex<mpsc::Receiver<Job>>,
    idle: &AtomicUsize,
    cfg: &BatchConfig,
) -> Option<(Vec<Job>, usize)> {
    idle.fetch_add(1, Ordering::SeqCst);
    // One worker collects at a time; the others wait here.
    let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    let first = rx.recv();
    idle.fetch_sub(1, Ordering::SeqCst);
    let first = first.ok()?;
    let mut n = first.n;
    let mut jobs = vec![first];
    let deadline = Instant::now() + cfg.max_wait;
    while n < cfg.max_batch && idle.load(Ordering::SeqCst) == 0 {
        let next = match rx.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        n += next.n;
        jobs.push(next);
    }
    Some((jobs, n))
}

fn worker<I: Infer>(
    mut infer: I,
    rx: &Mutex<mpsc::Receiver<Job>>,
    idle: &AtomicUsize,
    cfg: BatchConfig,
    image_len: usize,
    row: usize,
    stats: &BatchStats,
) {
    let _running = Running(&stats.running);
    let mut input = Vec::new();
    while let Some((jobs, n)) = next_batch(rx, idle, &cfg) {
        input.clear();
        for job in &jobs {
            input.extend_from_slice(&job.input);
        }
        let started = Instant::now();
        let result = if input.len() == n * image_len {
            infer.infer(&input, n)
        } else {
            Err(format!(
                "{} values for {n} images of {image_len}",
                input.len()
            ))
        };
        stats
            .busy_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.images.fetch_add(n as u64, Ordering::Relaxed);
        match result {
            Ok(probs) if probs.len() == n * row => {
                let mut at = 0;
                for job in jobs {
                    let len = job.n * row;
                    // A client that went away is not an error.
                    let _ = job.reply.send(Ok(probs[at..at + len].to_vec()));
                    at += len;
                }
            }
            Ok(probs) => {
                let why = format!("model gave {} values for {n} images", probs.len());
                for job in jobs {
                    let _ = job.reply.send(Err(BatchError::Failed(why.clone())));
                }
            }
            Err(why) => {
                tracing::error!("inference failed: {why}");
                for job in jobs {
                    let _ = job.reply.send(Err(BatchError::Failed(why.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns, per image, `[mean of its values, batch size]`, and records batch sizes.
    struct Echo {
        sizes: Arc<std::sync::Mutex<Vec<usize>>>,
        delay: Duration,
    }

    impl Infer for Echo {
        fn infer(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, String> {
            std::thread::sleep(self.delay);
            self.sizes.lock().map_err(|e| e.to_string())?.push(n);
            let len = input.len() / n;
            Ok(input
                .chunks(len)
                .flat_map(|c| [c.iter().sum::<f32>() / len as f32, n as f32])
                .collect())
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn concurrent_requests_share_batches_and_get_their_own_rows() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let echo = Echo {
            sizes: sizes.clone(),
            delay: Duration::from_millis(20),
        };
        let cfg = BatchConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(5),
            queue: 64,
        };
        let batcher = Batcher::start(vec![echo], cfg, 3, 2);
        let rt = runtime();
        let results = rt.block_on(async {
            let mut handles = Vec::new();
            for i in 0..24 {
                let b = batcher.clone();
                handles.push(tokio::spawn(async move {
                    b.predict(vec![i as f32; 3], 1).await
                }));
            }
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("join"));
            }
            out
        });
        for (i, r) in results.iter().enumerate() {
            let r = r.as_ref().expect("prediction");
            assert_eq!(r[0], i as f32, "request {i} got another request's row");
        }
        let sizes = sizes.lock().expect("lock").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 24);
        assert!(sizes.iter().all(|&s| s <= 8), "{sizes:?}");
        assert!(
            sizes.len() < 24,
            "24 concurrent requests ran one by one: {sizes:?}"
        );
        assert_eq!(batcher.stats().images.load(Ordering::Relaxed), 24);
        assert_eq!(batcher.stats().running.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_multi_image_request_gets_all_its_rows() {
        let echo = Echo {
            sizes: Arc::default(),
            delay: Duration::ZERO,
        };
        let batcher = Batcher::start(vec![echo], BatchConfig::default(), 2, 2);
        let out = runtime()
            .block_on(batcher.predict(vec![1.0, 1.0, 5.0, 5.0, 9.0, 9.0], 3))
            .expect("prediction");
        assert_eq!(out, vec![1.0, 3.0, 5.0, 3.0, 9.0, 3.0]);
    }

    #[test]
    fn a_full_queue_answers_busy_and_failures_reach_the_caller() {
        struct Fail;
        impl Infer for Fail {
            fn infer(&mut self, _: &[f32], _: usize) -> Result<Vec<f32>, String> {
                Err("broken model".into())
            }
        }
        let rt = runtime();
        let b = Batcher::start(vec![Fail], BatchConfig::default(), 1, 2);
        assert_eq!(
            rt.block_on(b.predict(vec![0.0], 1)),
            Err(BatchError::Failed("broken model".into()))
        );
        // One request in the model, one in the queue: the rest are refused at once.
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let echo = Echo {
            sizes: sizes.clone(),
            delay: Duration::from_millis(200),
        };
        let cfg = BatchConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            queue: 1,
        };
        let b = Batcher::start(vec![echo], cfg, 1, 2);
        let busy = rt.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..6 {
                let b = b.clone();
                handles.push(tokio::spawn(async move { b.predict(vec![0.0], 1).await }));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut busy = 0;
            for h in handles {
                if h.await.expect("join") == Err(BatchError::Busy) {
                    busy += 1;
                }
            }
            busy
        });
        assert!(busy >= 3, "only {busy} of 6 requests were refused");
    }
}
