//! A run sent to MLflow while it runs: a push when it starts, one every interval (the system
//! metrics so far), and a last one when the run has ended in the store. The first failure is
//! reported once and ends the mirroring — the run goes on, recorded in the store, and
//! `graft runs sync` sends the rest when the server is back.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::client::Client;
use super::push::{push_run, Pushed};
use crate::error::TrackError;
use crate::store::Store;

/// Mirror run `run` of the store at `db` until `stop` is sent to or dropped, then push once
/// more. Returns the last push, or the error that ended the mirroring (already passed to
/// `warn`, once).
pub fn mirror(
    db: &Path,
    run: &str,
    client: &Client,
    every: Duration,
    stop: &Receiver<()>,
    warn: &dyn Fn(&TrackError),
) -> Result<Pushed, TrackError> {
    let push = || -> Result<Pushed, TrackError> {
        let store = Store::attach(db)?;
        push_run(&store, client, run)
    };
    let fail = |e: TrackError| {
        warn(&e);
        Err(e)
    };
    let mut last = match push() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let ended = loop {
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => match push() {
                Ok(p) => last = merge(last, p),
                Err(e) => break Err(e),
            },
            _ => break Ok(()),
        }
    };
    if let Err(e) = ended {
        return fail(e);
    }
    match push() {
        Ok(p) => Ok(merge(last, p)),
        Err(e) => fail(e),
    }
}

/// Two pushes of one run as one.
fn merge(a: Pushed, b: Pushed) -> Pushed {
    let mut skipped = a.skipped_files;
    skipped.extend(b.skipped_files);
    Pushed {
        run: b.run,
        remote_id: b.remote_id,
        created: a.created || b.created,
        metrics: a.metrics + b.metrics,
        params: a.params + b.params,
        tags: a.tags + b.tags,
        files: a.files + b.files,
        skipped_files: skipped,
        ended: a.ended || b.ended,
    }
}
