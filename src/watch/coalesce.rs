//! From a stream of file events to "this file is complete now": the coalescing state machine.
//!
//! Pure and time-injectable: every call is given the current `Instant`, and the file system is
//! only consulted through the `exists` callback of [`Coalescer::take_due`], so the tests drive
//! it with made-up clocks.
//!
//! The rules, per path (only paths ending in `.py` are tracked):
//!
//! - A path is *clean* until its content changes (a write, a truncation, a creation, a
//!   deletion, a rename onto or away from it). Opening and closing a file without writing
//!   leaves it clean, so the reloader reading a file it was told about is not a change.
//! - A change is *complete*, and reported at once, when a handle opened for writing is closed
//!   (close-after-write) or when a file is renamed onto the path (temp file + rename, as vim,
//!   JetBrains IDEs and `sed -i` save).
//! - A change with no such signal (poll mode, network file systems, a writer using `mmap`) is
//!   reported once `quiet` has passed with no event for the path and no open handle on it.
//!   While a handle is open the writer may be half-way (truncated, paused, not yet written),
//!   so the quiet timer does not fire; but a missed close must not hold a file back forever,
//!   so an open handle delays the report by at most [`HOLD_OPEN_MAX`] after the last event.
//! - A deletion (or a rename away) is reported after `quiet`, and only if the path is still
//!   missing then: an editor that deletes or renames the original away and puts the new file
//!   in within that window produces one change, not a deletion. If something is there after
//!   all (its events still in flight), the path waits one more quiet period as a change.
//! - One path is reported once per batch, however many events it had. Once reported it is
//!   clean again, keeping its count of open handles.
//! - A watched directory deleted or renamed away is reported too (its own path, the one
//!   exception to `.py` only) after `quiet`, if it is still missing then: a directory renamed
//!   away sends no event for the files it takes along, and the caller must learn they are gone.
//!
//! Open handles are counted per path: opens minus closes, never below zero (a handle opened
//! before the watch began closes without having been counted). A deletion, a creation or a
//! rename resets the count, since handles opened earlier refer to the file no longer there.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest an open handle holds back a changed file after its last event.
pub const HOLD_OPEN_MAX: Duration = Duration::from_secs(2);

/// What happened to a path, as far as completeness is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A handle was opened (inotify does not say whether for reading or writing).
    Opened,
    /// A handle was closed; `wrote` if it had been opened for writing.
    Closed { wrote: bool },
    /// The content changed: a write, a truncation, a new modification time (poll mode).
    Modified,
    /// A file was created at the path (it is being written, most likely).
    Created,
    /// A file was renamed onto the path: it arrives complete.
    MovedIn,
    /// The file was deleted.
    Removed,
    /// The file was renamed away.
    MovedOut,
}

/// Whether `path` names a Python source file (the only files reported).
pub fn is_python(path: &Path) -> bool {
    path.as_os_str().as_bytes().ends_with(b".py")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing to report; the entry only counts open handles.
    Clean,
    /// Changed, not known to be complete: due after the quiet period (longer if open).
    Writing,
    /// Changed and complete: due now.
    Complete,
    /// Deleted or renamed away: due after the quiet period, if still missing.
    Gone,
}

#[derive(Debug)]
struct Entry {
    phase: Phase,
    open: u32,
    last_event: Instant,
}

impl Entry {
    /// When the entry becomes reportable; `None` while it is clean.
    fn due(&self, quiet: Duration) -> Option<Instant> {
        match self.phase {
            Phase::Clean => None,
            Phase::Complete => Some(self.last_event),
            Phase::Writing if self.open > 0 => Some(self.last_event + quiet.max(HOLD_OPEN_MAX)),
            Phase::Writing | Phase::Gone => Some(self.last_event + quiet),
        }
    }
}

/// Pending changes, per path.
#[derive(Debug)]
pub struct Coalescer {
    quiet: Duration,
    entries: HashMap<PathBuf, Entry>,
    /// Watched directories deleted or renamed away, with when.
    gone_dirs: HashMap<PathBuf, Instant>,
}

impl Coalescer {
    pub fn new(quiet: Duration) -> Coalescer {
        Coalescer {
            quiet,
            entries: HashMap::new(),
            gone_dirs: HashMap::new(),
        }
    }

    /// Records that the watched directory `dir` was deleted or renamed away at `now`. The
    /// handles counted open on files below it refer to files no longer there (as for a
    /// deletion or a rename of the file itself): forgotten, so that files put back there
    /// are not held back by them.
    pub fn feed_gone_dir(&mut self, dir: &Path, now: Instant) {
        self.gone_dirs.insert(dir.to_owned(), now);
        for (_, entry) in self.entries.iter_mut().filter(|(p, _)| p.starts_with(dir)) {
            entry.open = 0;
        }
        self.entries
            .retain(|_, e| e.phase != Phase::Clean || e.open > 0);
    }

    /// Records that `change` happened to `path` at `now`; other paths than `.py` are ignored.
    pub fn feed(&mut self, path: &Path, change: Change, now: Instant) {
        if !is_python(path) {
            return;
        }
        let entry = self.entries.entry(path.to_owned()).or_insert(Entry {
            phase: Phase::Clean,
            open: 0,
            last_event: now,
        });
        entry.last_event = now;
        match change {
            Change::Opened => entry.open = entry.open.saturating_add(1),
            Change::Closed { wrote } => {
                entry.open = entry.open.saturating_sub(1);
                if wrote {
                    entry.phase = Phase::Complete;
                }
            }
            Change::Modified => entry.phase = Phase::Writing,
            Change::Created => {
                entry.open = 0;
                entry.phase = Phase::Writing;
            }
            Change::MovedIn => {
                entry.open = 0;
                entry.phase = Phase::Complete;
            }
            Change::Removed | Change::MovedOut => {
                entry.open = 0;
                entry.phase = Phase::Gone;
            }
        }
        if entry.phase == Phase::Clean && entry.open == 0 {
            self.entries.remove(path);
        }
    }

    /// The earliest moment a pending path becomes reportable, if any is pending.
    pub fn next_due(&self) -> Option<Instant> {
        let dirs = self.gone_dirs.values().map(|&t| t + self.quiet);
        self.entries
            .values()
            .filter_map(|e| e.due(self.quiet))
            .chain(dirs)
            .min()
    }

    /// Takes every path reportable at `now`, sorted. A deletion is taken only if `exists`
    /// says the path is still missing; otherwise it waits another quiet period as a change.
    /// A gone directory that exists again is dropped (watched again, its files reported).
    pub fn take_due(
        &mut self,
        now: Instant,
        mut exists: impl FnMut(&Path) -> bool,
    ) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        let quiet = self.quiet;
        self.gone_dirs.retain(|dir, &mut when| {
            if when + quiet > now {
                return true;
            }
            if !exists(dir) {
                ready.push(dir.clone());
            }
            false
        });
        for (path, entry) in &mut self.entries {
            if entry.due(quiet).is_none_or(|due| due > now) {
                continue;
            }
            if entry.phase == Phase::Gone && exists(path) {
                entry.phase = Phase::Writing;
                entry.last_event = now;
                continue;
            }
            entry.phase = Phase::Clean;
            ready.push(path.clone());
        }
        self.entries
            .retain(|_, e| e.phase != Phase::Clean || e.open > 0);
        ready.sort();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A coalescer, a clock origin and a path to play with.
    fn setup() -> (Coalescer, Instant, PathBuf) {
        (
            Coalescer::new(QUIET),
            Instant::now(),
            PathBuf::from("/src/pkg/mod.py"),
        )
    }

    fn missing(_: &Path) -> bool {
        false
    }

    fn present(_: &Path) -> bool {
        true
    }

    #[test]
    fn a_close_after_write_is_reported_at_once() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Opened, t0);
        c.feed(&p, Change::Modified, t0);
        assert!(c.take_due(t0 + ms(1), missing).is_empty());
        c.feed(&p, Change::Closed { wrote: true }, t0 + ms(2));
        assert_eq!(c.take_due(t0 + ms(2), missing), vec![p.clone()]);
        assert!(c.take_due(t0 + ms(100), missing).is_empty());
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn a_rename_into_place_is_reported_at_once() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::MovedIn, t0);
        assert_eq!(c.next_due(), Some(t0));
        assert_eq!(c.take_due(t0, missing), vec![p]);
    }

    #[test]
    fn a_writer_without_close_events_is_reported_after_the_quiet_period() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Modified, t0);
        c.feed(&p, Change::Modified, t0 + ms(3));
        assert!(
            c.take_due(t0 + ms(7), missing).is_empty(),
            "3 + 5 ms not over yet"
        );
        assert_eq!(c.next_due(), Some(t0 + ms(8)));
        assert_eq!(c.take_due(t0 + ms(8), missing), vec![p]);
    }

    #[test]
    fn an_open_writer_holds_back_the_quiet_timer_until_it_closes() {
        let (mut c, t0, p) = setup();
        // Truncate, pause 200 ms with the file open and empty, then write and close.
        c.feed(&p, Change::Opened, t0);
        c.feed(&p, Change::Modified, t0);
        assert!(c.take_due(t0 + ms(200), missing).is_empty());
        c.feed(&p, Change::Modified, t0 + ms(200));
        assert!(c.take_due(t0 + ms(210), missing).is_empty());
        c.feed(&p, Change::Closed { wrote: true }, t0 + ms(211));
        assert_eq!(c.take_due(t0 + ms(211), missing), vec![p]);
    }

    #[test]
    fn an_open_handle_holds_a_change_back_two_seconds_at_most() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Opened, t0);
        c.feed(&p, Change::Modified, t0 + ms(10));
        assert_eq!(c.next_due(), Some(t0 + ms(10) + HOLD_OPEN_MAX));
        assert!(c.take_due(t0 + ms(2009), missing).is_empty());
        assert_eq!(c.take_due(t0 + ms(2010), missing), vec![p.clone()]);
        // Still open afterwards: a later write is held back the same way.
        c.feed(&p, Change::Modified, t0 + ms(3000));
        assert!(c.take_due(t0 + ms(3100), missing).is_empty());
    }

    #[test]
    fn readers_opening_and_closing_a_file_are_not_a_change() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Opened, t0);
        c.feed(&p, Change::Closed { wrote: false }, t0 + ms(1));
        assert!(c.take_due(t0 + ms(10_000), missing).is_empty());
        assert_eq!(c.next_due(), None);
        assert!(c.entries.is_empty(), "nothing left to track");
    }

    #[test]
    fn a_close_never_seen_opened_does_not_go_below_zero() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Closed { wrote: false }, t0);
        c.feed(&p, Change::Modified, t0 + ms(1));
        assert_eq!(c.take_due(t0 + ms(6), missing), vec![p]);
    }

    #[test]
    fn a_new_write_after_completion_waits_for_its_own_close() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Opened, t0);
        c.feed(&p, Change::Closed { wrote: true }, t0);
        // Before the waiter took it, the writer truncates again.
        c.feed(&p, Change::Opened, t0 + ms(1));
        c.feed(&p, Change::Modified, t0 + ms(1));
        assert!(c.take_due(t0 + ms(100), missing).is_empty());
        c.feed(&p, Change::Closed { wrote: true }, t0 + ms(150));
        assert_eq!(c.take_due(t0 + ms(150), missing), vec![p]);
    }

    #[test]
    fn delete_then_recreate_within_the_window_is_one_change() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Removed, t0);
        c.feed(&p, Change::Created, t0 + ms(1));
        c.feed(&p, Change::Opened, t0 + ms(1));
        c.feed(&p, Change::Modified, t0 + ms(2));
        assert!(
            c.take_due(t0 + ms(50), missing).is_empty(),
            "still open for writing"
        );
        c.feed(&p, Change::Closed { wrote: true }, t0 + ms(60));
        assert_eq!(c.take_due(t0 + ms(60), present), vec![p]);
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn rename_away_then_rename_in_is_one_change() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::MovedOut, t0);
        c.feed(&p, Change::MovedIn, t0 + ms(2));
        assert_eq!(c.take_due(t0 + ms(2), present), vec![p]);
        assert!(c.take_due(t0 + ms(100), present).is_empty());
    }

    #[test]
    fn a_plain_delete_is_reported_after_the_window() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Removed, t0);
        assert!(c.take_due(t0 + ms(4), missing).is_empty());
        assert_eq!(c.take_due(t0 + ms(5), missing), vec![p]);
    }

    #[test]
    fn a_delete_whose_path_exists_again_waits_as_a_change() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::MovedOut, t0);
        // The new file is there, but its events have not arrived yet.
        assert!(c.take_due(t0 + ms(5), present).is_empty());
        assert_eq!(c.next_due(), Some(t0 + ms(10)));
        assert_eq!(c.take_due(t0 + ms(10), present), vec![p]);
    }

    #[test]
    fn paths_other_than_python_sources_are_ignored() {
        let (mut c, t0, _) = setup();
        for name in [
            "/src/a.pyc",
            "/src/a.py~",
            "/src/4913",
            "/src/a.py.swp",
            "/src/.a.py.tmp",
        ] {
            c.feed(Path::new(name), Change::MovedIn, t0);
            c.feed(Path::new(name), Change::Opened, t0);
        }
        assert_eq!(c.next_due(), None);
        assert!(c.entries.is_empty());
    }

    #[test]
    fn many_events_for_one_path_are_reported_once() {
        let (mut c, t0, p) = setup();
        let other = PathBuf::from("/src/pkg/other.py");
        for i in 0..10 {
            c.feed(&p, Change::Opened, t0 + ms(i));
            c.feed(&p, Change::Modified, t0 + ms(i));
            c.feed(&p, Change::Closed { wrote: true }, t0 + ms(i));
        }
        c.feed(&other, Change::Created, t0);
        c.feed(&other, Change::MovedIn, t0 + ms(1));
        assert_eq!(c.take_due(t0 + ms(20), missing), vec![p, other]);
        assert!(c.take_due(t0 + ms(40), missing).is_empty());
    }

    #[test]
    fn a_directory_gone_is_reported_after_the_window_if_still_missing() {
        let (mut c, t0, p) = setup();
        let dir = PathBuf::from("/src/pkg");
        c.feed_gone_dir(&dir, t0);
        c.feed(&p, Change::Removed, t0);
        assert_eq!(c.next_due(), Some(t0 + QUIET));
        assert!(c.take_due(t0 + ms(4), missing).is_empty());
        assert_eq!(c.take_due(t0 + ms(5), missing), vec![dir.clone(), p]);
        c.feed_gone_dir(&dir, t0 + ms(10));
        assert!(c.take_due(t0 + ms(15), present).is_empty(), "back already");
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn handles_open_below_a_directory_gone_no_longer_hold_its_files_back() {
        let (mut c, t0, p) = setup();
        c.feed(&p, Change::Opened, t0);
        c.feed_gone_dir(Path::new("/src/pkg"), t0 + ms(1));
        assert!(c.entries.is_empty());
        // The directory is back (renamed in): its files are reported after the quiet period.
        c.feed(&p, Change::Modified, t0 + ms(2));
        assert_eq!(c.take_due(t0 + ms(7), present), vec![p]);
    }

    #[test]
    fn only_the_paths_due_are_taken() {
        let (mut c, t0, p) = setup();
        let slow = PathBuf::from("/src/pkg/slow.py");
        c.feed(&slow, Change::Opened, t0);
        c.feed(&slow, Change::Modified, t0);
        c.feed(&p, Change::Modified, t0);
        assert_eq!(c.take_due(t0 + ms(5), missing), vec![p]);
        assert_eq!(c.next_due(), Some(t0 + HOLD_OPEN_MAX));
    }
}
