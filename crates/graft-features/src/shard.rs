//! `--shard i/N`: which chunks one of N cooperating processes owns.

use std::path::{Path, PathBuf};

use crate::FeatureError;

/// Process chunk `k` only when `k % count == index`; `0/1` (the default) owns every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    pub fn owns(self, chunk: usize) -> bool {
        chunk % self.count == self.index
    }

    /// The lock file a process holds while it extracts this shard into `dir`.
    pub fn lock_path(self, dir: &Path) -> PathBuf {
        dir.join(format!(".lock-shard-{}-of-{}", self.index, self.count))
    }

    /// Take this shard of `dir` for this process, or fail when another holds it: two
    /// processes (a Slurm task and its re-submission, say) must never write the same chunks.
    /// The operating system drops the lock when the process ends, even by kill -9, so a dead
    /// task never blocks its rerun. (On NFS, Linux maps it onto the server's byte-range locks.)
    pub fn lock(self, dir: &Path) -> Result<ShardLock, FeatureError> {
        let path = self.lock_path(dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FeatureError::io("create", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(ShardLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(FeatureError::Busy {
                dir: dir.to_path_buf(),
                shard: self.to_string(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(FeatureError::io("lock", &path, e)),
        }
    }
}

/// Held while a process extracts one shard; released on drop (or when the process dies).
#[derive(Debug)]
pub struct ShardLock {
    _file: std::fs::File,
}

impl std::str::FromStr for Shard {
    type Err = FeatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| FeatureError::BadShard {
            given: s.to_string(),
            why: why.to_string(),
        };
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("i is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad("i must be smaller than N"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_own() {
        let s: Shard = "1/3".parse().expect("valid");
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert!(s.owns(1) && s.owns(4) && !s.owns(0) && !s.owns(2));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!(Shard::default().owns(17));
    }

    #[test]
    fn a_shard_is_locked_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let s: Shard = "1/4".parse().expect("shard");
        let held = s.lock(dir.path()).expect("first lock");
        let again = s.lock(dir.path()).expect_err("second lock must fail");
        assert!(again.to_string().contains("shard 1/4"), "{again}");
        // Another shard is free meanwhile, and this one once the holder lets go.
        let other: Shard = "2/4".parse().expect("shard");
        drop(other.lock(dir.path()).expect("other shard"));
        drop(held);
        s.lock(dir.path()).expect("free again");
    }
}
