//! What notify's `PollWatcher` misses, made up for: changes within the same second.
//!
//! `PollWatcher` compares modification times in whole seconds (contents only if told to hash
//! every file on every poll, far too slow for a source tree), so a save in the same second as
//! the change before it is not seen, and would never be reloaded. Files that changed recently
//! are therefore "hot": on every poll interval they are checked again with a finer fingerprint
//! (modification time in nanoseconds, size, inode), until they have been still for
//! [`HOT_FOR`]. At start, files modified in the last [`HOT_FOR`] are hot too, since
//! `PollWatcher` has just recorded their current second.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::coalesce::Change;

/// How long a file stays hot after its last change: more than the second `PollWatcher` is blind
/// for, with a margin for a poll that runs late.
pub const HOT_FOR: Duration = Duration::from_secs(2);

/// What is compared: finer than `PollWatcher`'s whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    mtime_ns: i128,
    size: u64,
    inode: u64,
}

/// The file's fingerprint, following symbolic links; `None` if it is missing.
pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    std::fs::metadata(path).ok().as_ref().map(Fingerprint::of)
}

impl Fingerprint {
    /// The fingerprint of a file's metadata.
    fn of(meta: &Metadata) -> Fingerprint {
        Fingerprint {
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            size: meta.size(),
            inode: meta.ino(),
        }
    }
}

/// The hot files and when each last changed.
#[derive(Debug)]
pub struct Hot {
    interval: Duration,
    files: HashMap<PathBuf, (Option<Fingerprint>, Instant)>,
    next_check: Option<Instant>,
}

impl Hot {
    pub fn new(interval: Duration) -> Hot {
        Hot {
            interval,
            files: HashMap::new(),
            next_check: None,
        }
    }

    /// `path` just changed (notify saw it): hot from `now`, as it is now.
    pub fn touch(&mut self, path: &Path, print: Option<Fingerprint>, now: Instant) {
        self.files.insert(path.to_owned(), (print, now));
        self.next_check.get_or_insert(now + self.interval);
    }

    /// At start: `path` is hot if it was modified in the last [`HOT_FOR`].
    pub fn seed(&mut self, path: &Path, now: Instant) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let recent = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < HOT_FOR);
        if recent {
            self.touch(path, Some(Fingerprint::of(&meta)), now);
        }
    }

    /// How long the keeper may block before the next check; `None` when nothing is hot.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.next_check.map(|t| t.saturating_duration_since(now))
    }

    /// If a check is due at `now`: the hot files whose fingerprint changed, and how. Files
    /// still for [`HOT_FOR`] cool down.
    pub fn recheck(
        &mut self,
        now: Instant,
        mut print: impl FnMut(&Path) -> Option<Fingerprint>,
    ) -> Vec<(PathBuf, Change)> {
        if self.next_check.is_none_or(|t| t > now) {
            return Vec::new();
        }
        let mut changed = Vec::new();
        for (path, (old, since)) in &mut self.files {
            let new = print(path);
            if new == *old {
                continue;
            }
            changed.push((
                path.clone(),
                match (old.is_some(), new.is_some()) {
                    (_, false) => Change::Removed,
                    (false, true) => Change::Created,
                    (true, true) => Change::Modified,
                },
            ));
            *old = new;
            *since = now;
        }
        self.files.retain(|_, (_, since)| now < *since + HOT_FOR);
        self.next_check = (!self.files.is_empty()).then_some(now + self.interval);
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(mtime_ns: i128, size: u64) -> Option<Fingerprint> {
        Some(Fingerprint {
            mtime_ns,
            size,
            inode: 7,
        })
    }

    #[test]
    fn a_second_change_within_the_same_second_is_found() {
        let (mut hot, t0) = (Hot::new(Duration::from_millis(50)), Instant::now());
        let p = Path::new("/src/mod.py");
        hot.touch(p, print(10_100_000_000, 5), t0);
        assert_eq!(hot.timeout(t0), Some(Duration::from_millis(50)));
        assert!(
            hot.recheck(t0 + Duration::from_millis(10), |_| unreachable!())
                .is_empty()
        );
        // Same second (10 s), later nanoseconds: PollWatcher would not see it.
        let changed = hot.recheck(t0 + Duration::from_millis(50), |_| print(10_600_000_000, 5));
        assert_eq!(changed, vec![(p.to_owned(), Change::Modified)]);
        let again = hot.recheck(t0 + Duration::from_millis(100), |_| {
            print(10_600_000_000, 5)
        });
        assert!(again.is_empty(), "reported once");
    }

    #[test]
    fn deletions_and_creations_of_hot_files_are_found() {
        let (mut hot, t0) = (Hot::new(Duration::from_millis(50)), Instant::now());
        let p = Path::new("/src/mod.py");
        hot.touch(p, print(1, 1), t0);
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(
            hot.recheck(t1, |_| None),
            vec![(p.to_owned(), Change::Removed)]
        );
        let t2 = t1 + Duration::from_millis(50);
        assert_eq!(
            hot.recheck(t2, |_| print(2, 1)),
            vec![(p.to_owned(), Change::Created)]
        );
    }

    #[test]
    fn files_still_for_two_seconds_cool_down() {
        let (mut hot, t0) = (Hot::new(Duration::from_millis(50)), Instant::now());
        hot.touch(Path::new("/src/mod.py"), print(1, 1), t0);
        assert!(hot.recheck(t0 + HOT_FOR, |_| print(1, 1)).is_empty());
        assert_eq!(hot.timeout(t0 + HOT_FOR), None, "nothing left to check");
    }
}
