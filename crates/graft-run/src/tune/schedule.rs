//! Running trials on `parallel` workers with a sliding window: trial `i` is proposed from
//! trials `0 ..= i - parallel`, and starts as soon as those have finished. Which trials a
//! proposal sees never depends on timing, so the search is reproducible and resumable, and a
//! slow trial holds up only the trial `parallel` places after it, not a whole round.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use graft_tune::{Observed, Point};

use super::trials::TrialRecord;
use crate::RunError;

/// The workers' shared state: finished trials in trial order, the next trial to hand out.
struct Shared {
    records: Vec<TrialRecord>,
    next: usize,
    stop: bool,
    error: Option<RunError>,
}

/// What the schedule needs from the search.
pub(crate) struct Plan<'a> {
    pub asked: usize,
    pub parallel: usize,
    /// The point of trial `i` given the trials it may see; `None`: nothing more to try.
    pub propose: &'a (dyn Fn(usize, &[Observed]) -> Option<Point> + Sync),
    /// Train one trial.
    pub run: &'a (dyn Fn(usize, Point) -> Result<TrialRecord, RunError> + Sync),
    /// Told with every finished trial so far, in trial order, after each one finishes.
    pub finished: &'a (dyn Fn(&[TrialRecord]) -> Result<(), RunError> + Sync),
    /// True once no more trials may start.
    pub out_of_time: &'a (dyn Fn() -> bool + Sync),
}

/// Run the trials of `plan` not already in `done`; every finished trial comes back, in
/// trial order, and whether the time limit stopped the search.
pub(crate) fn run(
    plan: &Plan<'_>,
    done: Vec<TrialRecord>,
) -> Result<(Vec<TrialRecord>, bool), RunError> {
    let state = Mutex::new(Shared {
        records: done,
        next: 0,
        stop: false,
        error: None,
    });
    let wake = Condvar::new();
    let timed_out = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..plan.parallel.max(1) {
            s.spawn(|| worker(plan, &state, &wake, &timed_out));
        }
    });
    let shared = state.into_inner().map_err(|_| poisoned())?;
    if let Some(e) = shared.error {
        return Err(e);
    }
    Ok((shared.records, timed_out.load(Ordering::Relaxed)))
}

fn poisoned() -> RunError {
    RunError::Invalid("a trial panicked; the trials finished before it are kept".into())
}

/// Trials `0..n` have all finished (records are sorted and unique by trial).
fn finished_below(records: &[TrialRecord], n: usize) -> bool {
    records.iter().take_while(|t| t.trial < n).count() == n
}

fn worker(plan: &Plan<'_>, state: &Mutex<Shared>, wake: &Condvar, timed_out: &AtomicBool) {
    let lock = || {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let fail = |mut g: MutexGuard<'_, Shared>, e: RunError| {
        g.error.get_or_insert(e);
        g.stop = true;
        wake.notify_all();
    };
    loop {
        let (trial, history) = {
            let mut g = lock();
            while g.next < plan.asked && g.records.iter().any(|t| t.trial == g.next) {
                g.next += 1;
            }
            if g.stop || g.next >= plan.asked {
                return;
            }
            let trial = g.next;
            g.next += 1;
            let seen = (trial + 1).saturating_sub(plan.parallel);
            while !g.stop && !finished_below(&g.records, seen) {
                g = wake
                    .wait(g)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if g.stop {
                return;
            }
            if (plan.out_of_time)() {
                timed_out.store(true, Ordering::Relaxed);
                g.stop = true;
                wake.notify_all();
                return;
            }
            let history: Vec<Observed> = g.records[..seen]
                .iter()
                .map(TrialRecord::observed)
                .collect();
            (trial, history)
        };
        let Some(point) = (plan.propose)(trial, &history) else {
            continue;
        };
        match (plan.run)(trial, point) {
            Ok(record) => {
                let mut g = lock();
                g.records.push(record);
                g.records.sort_by_key(|t| t.trial);
                if let Err(e) = (plan.finished)(&g.records) {
                    return fail(g, e);
                }
                wake.notify_all();
            }
            Err(e) => return fail(lock(), e),
        }
    }
}
