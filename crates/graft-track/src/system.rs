//! System metrics sampled in a background thread while a run works: CPU, memory, the
//! process's disk reads and writes, and each NVIDIA GPU through NVML when there is one. The
//! names are MLflow's (`system/…`), so the same charts work in both places.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::store::{now_ms, Metric, RunId, Store};

/// Prefix of every system metric.
pub const PREFIX: &str = "system/";

/// How often system metrics are sampled unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Samples system metrics into the store until stopped (or dropped).
pub struct SystemMetrics {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<usize>>,
}

impl SystemMetrics {
    /// Start sampling every `every` for `run` of the store at `db` (its own connection).
    pub fn start(db: &Path, run: RunId, every: Duration) -> SystemMetrics {
        let (tx, rx) = mpsc::channel::<()>();
        let db: PathBuf = db.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("graft-system-metrics".into())
            .spawn(move || sample_loop(&db, &run, every, &rx))
            .map_err(|e| tracing::warn!("system metrics not sampled: {e}"))
            .ok();
        SystemMetrics {
            stop: Some(tx),
            thread,
        }
    }

    /// Take a last sample, stop, and say how many samples were recorded.
    pub fn stop(mut self) -> usize {
        self.finish()
    }

    fn finish(&mut self) -> usize {
        drop(self.stop.take());
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for SystemMetrics {
    fn drop(&mut self) {
        self.finish();
    }
}

fn sample_loop(db: &Path, run: &str, every: Duration, stop: &mpsc::Receiver<()>) -> usize {
    let store = match Store::attach(db) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("system metrics not sampled: {e}");
            return 0;
        }
    };
    let mut sampler = Sampler::new();
    let mut step = 0i64;
    let mut warned = false;
    let mut last = Instant::now();
    loop {
        let stopped = !matches!(
            stop.recv_timeout(every),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        // CPU usage is measured between two refreshes; one closer than ~0.2 s says nothing.
        if !stopped || last.elapsed() >= Duration::from_millis(200) {
            let metrics = sampler.sample(step);
            last = Instant::now();
            match store.log_metrics(run, &metrics) {
                Ok(()) => step += 1,
                Err(e) if !warned => {
                    tracing::warn!("system metrics: {e}");
                    warned = true;
                }
                Err(_) => {}
            }
        }
        if stopped {
            return step as usize;
        }
    }
}

/// What one sample reads.
struct Sampler {
    sys: System,
    pid: Pid,
    nvml: Option<nvml_wrapper::Nvml>,
}

const MB: f64 = 1024.0 * 1024.0;

impl Sampler {
    fn new() -> Sampler {
        let mut sys = System::new();
        let pid = Pid::from_u32(std::process::id());
        sys.refresh_cpu_usage();
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, process_kind());
        // No GPU, no driver, or no libnvidia-ml: GPU metrics are simply absent.
        let nvml = nvml_wrapper::Nvml::init()
            .map_err(|e| tracing::debug!("no GPU metrics: {e}"))
            .ok();
        Sampler { sys, pid, nvml }
    }

    fn sample(&mut self, step: i64) -> Vec<Metric> {
        let time_ms = now_ms();
        let mut out = Vec::new();
        let mut put = |key: &str, value: f64| {
            out.push(Metric {
                key: format!("{PREFIX}{key}"),
                value,
                step,
                time_ms,
            })
        };
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            true,
            process_kind(),
        );
        put(
            "cpu_utilization_percentage",
            self.sys.global_cpu_usage() as f64,
        );
        let used = self.sys.used_memory() as f64;
        let total = self.sys.total_memory() as f64;
        put("system_memory_usage_megabytes", used / MB);
        if total > 0.0 {
            put("system_memory_usage_percentage", 100.0 * used / total);
        }
        if let Some(p) = self.sys.process(self.pid) {
            put("process_cpu_utilization_percentage", p.cpu_usage() as f64);
            put("process_memory_rss_megabytes", p.memory() as f64 / MB);
            let disk = p.disk_usage();
            put(
                "process_disk_read_megabytes",
                disk.total_read_bytes as f64 / MB,
            );
            put(
                "process_disk_write_megabytes",
                disk.total_written_bytes as f64 / MB,
            );
        }
        if let Some(nvml) = &self.nvml {
            for (i, gpu) in gpu_samples(nvml) {
                for (key, value) in gpu {
                    put(&format!("gpu_{i}_{key}"), value);
                }
            }
        }
        out
    }
}

fn process_kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing()
        .with_cpu()
        .with_memory()
        .with_disk_usage()
}

/// Each GPU's readings; one a driver cannot read is left out, not an error.
fn gpu_samples(nvml: &nvml_wrapper::Nvml) -> Vec<(u32, Vec<(&'static str, f64)>)> {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    let count = nvml.device_count().unwrap_or(0);
    (0..count)
        .filter_map(|i| {
            let d = nvml.device_by_index(i).ok()?;
            let mut v = Vec::new();
            if let Ok(u) = d.utilization_rates() {
                v.push(("utilization_percentage", u.gpu as f64));
            }
            if let Ok(m) = d.memory_info() {
                v.push(("memory_usage_megabytes", m.used as f64 / MB));
                if m.total > 0 {
                    v.push((
                        "memory_usage_percentage",
                        100.0 * m.used as f64 / m.total as f64,
                    ));
                }
            }
            if let Ok(t) = d.temperature(TemperatureSensor::Gpu) {
                v.push(("temperature_celsius", t as f64));
            }
            if let Ok(mw) = d.power_usage() {
                v.push(("power_usage_watts", mw as f64 / 1000.0));
                if let Ok(limit) = d.enforced_power_limit() {
                    if limit > 0 {
                        v.push(("power_usage_percentage", 100.0 * mw as f64 / limit as f64));
                    }
                }
            }
            Some((i, v))
        })
        .collect()
}

/// Whether NVML found a GPU here (for `graft runs` to say why GPU metrics are absent).
pub fn gpus() -> u32 {
    nvml_wrapper::Nvml::init()
        .ok()
        .and_then(|n| n.device_count().ok())
        .unwrap_or(0)
}
