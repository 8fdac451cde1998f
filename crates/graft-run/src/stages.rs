//! The stage engine of `graft train DIR`, like `make`: each stage's inputs are fingerprinted;
//! a stage whose fingerprint is recorded in `stages.json` and whose output exists is skipped,
//! and running a stage forgets it and every later one first (their inputs are about to change).

use std::path::Path;
use std::time::Instant;

use crate::files::{read_json_if_exists, write_json, StageFingerprints};
use crate::{RunDir, RunError};

/// The stages of `graft train DIR`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Audit and split: audit.json, classes.png, manifest.csv.
    Prepare,
    /// The feature cache.
    Extract,
    /// The head sweep: model.json and the sweep's files.
    Heads,
    /// Metrics, figures and report.html.
    Eval,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Prepare, Stage::Extract, Stage::Heads, Stage::Eval];

    /// Its key in stages.json.
    pub fn key(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Extract => "extract",
            Stage::Heads => "heads",
            Stage::Eval => "eval",
        }
    }

    /// Its name in the summary.
    pub fn title(self) -> &'static str {
        match self {
            Stage::Prepare => "audit + split",
            Stage::Extract => "extract",
            Stage::Heads => "heads",
            Stage::Eval => "eval",
        }
    }

    /// 1-based position, for "[2/5]".
    pub fn number(self) -> usize {
        self as usize + 1
    }
}

/// Why a stage did no work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Its inputs are unchanged and its output exists.
    Unchanged,
    /// There was nothing for it to do (the reason, for the summary).
    NotApplicable(&'static str),
}

/// What one stage did.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRun {
    pub stage: Stage,
    pub seconds: f64,
    pub skipped: Option<Skip>,
}

impl StageRun {
    /// "skipped (unchanged)", "skipped (…)", or the time taken.
    pub fn summary(&self) -> String {
        match &self.skipped {
            Some(Skip::Unchanged) => "skipped (unchanged)".into(),
            Some(Skip::NotApplicable(why)) => format!("skipped ({why})"),
            None => format!("{:.1} s", self.seconds),
        }
    }
}

/// What a stage's body reports back.
pub enum Outcome {
    /// It ran: record its fingerprint.
    Done,
    /// It had nothing to do; nothing is recorded, so a later run tries again.
    NotApplicable(&'static str),
}

/// The fingerprints of the stages done in a run folder (`stages.json`).
#[derive(Debug)]
pub struct StageBook {
    path: std::path::PathBuf,
    done: StageFingerprints,
}

impl StageBook {
    /// A damaged or missing stages.json means nothing is known to be done.
    pub fn load(run: &RunDir) -> StageBook {
        let path = run.stages();
        let done = read_json_if_exists(&path)
            .ok()
            .flatten()
            .unwrap_or_default();
        StageBook { path, done }
    }

    pub fn is_done(&self, stage: Stage, fingerprint: &str) -> bool {
        self.done.get(stage.key()).map(String::as_str) == Some(fingerprint)
    }

    pub fn mark(&mut self, stage: Stage, fingerprint: String) -> Result<(), RunError> {
        self.done.insert(stage.key().to_string(), fingerprint);
        write_json(&self.path, &self.done)
    }

    /// Forget `stage` and every later one.
    pub fn invalidate_from(&mut self, stage: Stage) {
        for s in Stage::ALL.iter().filter(|s| **s >= stage) {
            self.done.remove(s.key());
        }
    }

    /// Run `stage` unless its `fingerprint` is recorded and `output` exists: `skipping` is
    /// told before a skip, `body` does the work.
    pub fn run<E: From<RunError>>(
        &mut self,
        stage: Stage,
        fingerprint: String,
        output: &Path,
        skipping: impl FnOnce(),
        body: impl FnOnce() -> Result<Outcome, E>,
    ) -> Result<StageRun, E> {
        let t = Instant::now();
        let skipped = if self.is_done(stage, &fingerprint) && output.exists() {
            skipping();
            Some(Skip::Unchanged)
        } else {
            self.invalidate_from(stage);
            match body()? {
                Outcome::Done => {
                    self.mark(stage, fingerprint)?;
                    None
                }
                Outcome::NotApplicable(why) => Some(Skip::NotApplicable(why)),
            }
        };
        Ok(StageRun {
            stage,
            seconds: t.elapsed().as_secs_f64(),
            skipped,
        })
    }
}

/// A short hash of several byte strings, each length-prefixed so no two lists collide.
pub fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// The short hash of a file's bytes; empty when it cannot be read.
pub fn file_hash(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| blake3::hash(&b).to_hex()[..32].to_string())
        .unwrap_or_default()
}

/// Every image of the dataset folder with its size and modification time, plus `settings`.
pub fn data_fingerprint(dir: &Path, settings: &[u8]) -> Result<String, RunError> {
    let ds = graft_data::scan::scan(dir)?;
    let mut listing = Vec::new();
    for e in &ds.entries {
        let meta = std::fs::metadata(&e.path).ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let mtime = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        listing.extend_from_slice(format!("{}\t{size}\t{mtime}\n", e.rel).as_bytes());
    }
    Ok(hash_parts(&[&listing, settings]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_runs_once_then_skips_until_an_earlier_one_reruns() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = RunDir::new(tmp.path());
        let out = tmp.path().join("out");
        let mut book = StageBook::load(&run);
        let ran = std::cell::RefCell::new(Vec::new());
        let step = |book: &mut StageBook, stage: Stage, fp: &str| {
            book.run::<RunError>(
                stage,
                fp.into(),
                &out,
                || {},
                || {
                    ran.borrow_mut().push(stage);
                    std::fs::write(&out, b"x").expect("write");
                    Ok(Outcome::Done)
                },
            )
            .expect("stage")
        };
        assert_eq!(step(&mut book, Stage::Extract, "a").skipped, None);
        assert_eq!(step(&mut book, Stage::Heads, "b").skipped, None);
        // Reloaded from stages.json: both skip.
        let mut book = StageBook::load(&run);
        let r = step(&mut book, Stage::Heads, "b");
        assert_eq!(r.skipped, Some(Skip::Unchanged));
        assert_eq!(r.summary(), "skipped (unchanged)");
        // A changed earlier stage forgets the later ones.
        step(&mut book, Stage::Extract, "a2");
        assert!(!book.is_done(Stage::Heads, "b"));
        assert_eq!(
            *ran.borrow(),
            vec![Stage::Extract, Stage::Heads, Stage::Extract]
        );
        // A missing output reruns the stage.
        std::fs::remove_file(&out).expect("rm");
        assert_eq!(step(&mut book, Stage::Extract, "a2").skipped, None);
    }

    #[test]
    fn not_applicable_records_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = RunDir::new(tmp.path());
        let mut book = StageBook::load(&run);
        let r = book
            .run::<RunError>(
                Stage::Eval,
                "f".into(),
                &tmp.path().join("report.html"),
                || {},
                || Ok(Outcome::NotApplicable("no test or val images")),
            )
            .expect("stage");
        assert_eq!(r.summary(), "skipped (no test or val images)");
        assert!(!book.is_done(Stage::Eval, "f"));
        assert!(!run.stages().exists());
    }

    #[test]
    fn hashes_separate_their_parts() {
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
        assert_eq!(hash_parts(&[b"x"]).len(), 32);
        assert_eq!(file_hash(Path::new("/no/such/file")), "");
    }
}
