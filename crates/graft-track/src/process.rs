//! Which process owns a run, and whether it is still there: a pid alone can be reused after
//! a reboot or a long time, so the process's start time goes with it.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// A process: its id and its start time (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub start: u64,
}

/// A live process's start time, and whether it is a zombie (exited, not yet reaped).
fn probe(pid: u32) -> Option<(u64, bool)> {
    let mut sys = System::new();
    let pid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    sys.process(pid)
        .map(|p| (p.start_time(), p.status() == sysinfo::ProcessStatus::Zombie))
}

/// This process.
pub fn current() -> Process {
    let pid = std::process::id();
    Process {
        pid,
        start: probe(pid).map_or(0, |(start, _)| start),
    }
}

/// Whether `p` is still running (the same pid with the same start time).
pub fn alive(p: Process) -> bool {
    // A zombie still has its /proc entry until reaped; its run is over all the same.
    matches!(probe(p.pid), Some((start, false)) if start == p.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_child_is_not() {
        let me = current();
        assert!(alive(me));
        assert!(!alive(Process {
            pid: me.pid,
            start: me.start + 1
        }));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!alive(Process { pid, start: 0 }));
    }
}
