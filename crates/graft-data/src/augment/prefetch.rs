//! A bounded queue of prepared batches: one producer thread works `depth` batches ahead of the
//! consumer (the optimiser), so augmentation overlaps training without unbounded memory.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// Batches produced in order by `make(k)` for k in `0..count`, at most `depth` ahead.
pub struct Prefetch<T> {
    rx: Option<Receiver<T>>,
    worker: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetch<T> {
    pub fn spawn(
        count: usize,
        depth: usize,
        make: impl Fn(usize) -> T + Send + 'static,
    ) -> Prefetch<T> {
        let (tx, rx) = sync_channel(depth.max(1));
        let worker = std::thread::spawn(move || {
            for k in 0..count {
                // The consumer hung up (stopped early): stop preparing.
                if tx.send(make(k)).is_err() {
                    break;
                }
            }
        });
        Prefetch {
            rx: Some(rx),
            worker: Some(worker),
        }
    }
}

impl<T> Iterator for Prefetch<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        // Close the channel first so a producer blocked on a full queue wakes up and ends.
        self.rx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn yields_every_batch_in_order_and_stays_bounded() {
        let made = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&made);
        let mut p = Prefetch::spawn(10, 2, move |k| {
            m.fetch_add(1, Ordering::SeqCst);
            k * k
        });
        std::thread::sleep(Duration::from_millis(50));
        // Two queued, one more made and waiting to be sent: never the whole epoch.
        assert!(
            made.load(Ordering::SeqCst) <= 3,
            "{}",
            made.load(Ordering::SeqCst)
        );
        assert_eq!(p.next(), Some(0));
        let rest: Vec<usize> = p.collect();
        assert_eq!(rest, (1..10).map(|k| k * k).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_it_early_stops_the_producer() {
        let made = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&made);
        let mut p = Prefetch::spawn(1000, 1, move |k| {
            m.fetch_add(1, Ordering::SeqCst);
            k
        });
        assert_eq!(p.next(), Some(0));
        drop(p);
        assert!(made.load(Ordering::SeqCst) < 10);
    }
}
