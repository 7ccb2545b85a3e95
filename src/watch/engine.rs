//! A running watcher: a notify backend, the keeper thread that keeps the set of watched
//! directories up to date, and the state the waiter shares with both.
//!
//! Threads, and what each one owns:
//!
//! - notify's thread (the inotify event loop, or the poll loop) runs [`Handler`]: it feeds the
//!   events of `.py` files to the coalescer in [`Shared`] and wakes the waiter, and passes the
//!   events that may concern a directory to the keeper. It cannot add watches itself: notify's
//!   `watch` asks that very thread and waits for the answer (inotify), or takes the locks the
//!   poll loop holds while it calls the handler (poll).
//! - The keeper thread owns the notify watcher and the [`Tree`]: it watches directories created
//!   later (and reports the `.py` files they brought along), forgets removed ones, and in poll
//!   mode re-checks recently changed files (see `poll`). Idle, it blocks on its channel.
//! - The waiter (a Python thread in `Watcher.wait`, the GIL released) sleeps on the condition
//!   variable of [`Shared`] until a path is due, `stop` is called, or the time it was given
//!   ends (its timeout, or on the main thread a short slice, to check for signals).
//!
//! None of them touches a Python object. The mutex in [`Shared`] is only held for short
//! bookkeeping, never while sleeping or waiting for another lock, so `stop` (which takes it
//! for a moment, to not lose the wake-up) never waits for a sleeping waiter.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind, RemoveKind};
use notify::event::{EventKind, RenameMode};
use notify::{
    Config, Event, EventHandler, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher,
};

use super::coalesce::{Change, Coalescer};
use super::failure::Failure;
use super::poll::{self, Hot};
use super::tree::{Roots, Tree};

/// What a watcher is asked to do.
#[derive(Debug)]
pub struct Options {
    /// Absolute, normalised, without duplicates.
    pub roots: Vec<PathBuf>,
    /// `Some(interval)`: notify's `PollWatcher` instead of inotify.
    pub poll_interval: Option<Duration>,
    pub quiet: Duration,
    /// Extra directory names to skip.
    pub ignore: Vec<OsString>,
}

/// What the waiter found when it woke up.
#[derive(Debug)]
pub enum Waited {
    /// Some path is due: take them.
    Due,
    /// `stop` was called.
    Stopped,
    /// A directory created after the start could not be watched: take the failure.
    Failed,
    /// The time given ended with nothing due.
    SliceOver,
}

/// Shared by notify's thread, the keeper and the waiters.
#[derive(Debug)]
pub struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    stopped: AtomicBool,
    watched: AtomicUsize,
}

#[derive(Debug)]
struct Pending {
    coalescer: Coalescer,
    failures: VecDeque<Failure>,
}

impl Shared {
    fn new(quiet: Duration) -> Shared {
        Shared {
            pending: Mutex::new(Pending {
                coalescer: Coalescer::new(quiet),
                failures: VecDeque::new(),
            }),
            wake: Condvar::new(),
            stopped: AtomicBool::new(false),
            watched: AtomicUsize::new(0),
        }
    }

    /// The pending state; a panic elsewhere while it was held does not make it unusable (its
    /// bookkeeping is valid after every single update).
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn feed(&self, path: &Path, change: Change) {
        self.lock().coalescer.feed(path, change, Instant::now());
        self.wake.notify_all();
    }

    fn feed_gone_dir(&self, dir: &Path) {
        self.lock().coalescer.feed_gone_dir(dir, Instant::now());
        self.wake.notify_all();
    }

    fn fail(&self, failure: Failure) {
        self.lock().failures.push_back(failure);
        self.wake.notify_all();
    }

    /// Makes every current and later wait return at once.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // A waiter checks the flag with the lock held, then sleeps releasing it atomically:
        // taking the lock here orders the store before its check or after its sleep began.
        drop(self.lock());
        self.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.watched.load(Ordering::Relaxed)
    }

    /// Sleeps until a path is due, `stop` is called, a failure is recorded, or `until`
    /// (`None`: no end).
    pub fn wait_until(&self, until: Option<Instant>) -> Waited {
        let mut pending = self.lock();
        loop {
            if self.is_stopped() {
                return Waited::Stopped;
            }
            if !pending.failures.is_empty() {
                return Waited::Failed;
            }
            let now = Instant::now();
            let due = pending.coalescer.next_due();
            if due.is_some_and(|d| d <= now) {
                return Waited::Due;
            }
            if until.is_some_and(|u| now >= u) {
                return Waited::SliceOver;
            }
            pending = match due.into_iter().chain(until).min() {
                Some(wake_at) => {
                    self.wake
                        .wait_timeout(pending, wake_at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Takes the oldest failure recorded since the start, if any.
    pub fn take_failure(&self) -> Option<Failure> {
        self.lock().failures.pop_front()
    }

    /// Takes the paths due now (a deletion only if the path is still missing).
    pub fn take_due(&self) -> Vec<PathBuf> {
        let exists = |path: &Path| std::fs::symlink_metadata(path).is_ok();
        self.lock().coalescer.take_due(Instant::now(), exists)
    }
}

/// What notify's thread hands to the keeper.
enum Message {
    /// Paths that may be new directories (created, renamed in).
    Appeared(Vec<PathBuf>),
    /// Paths that may be watched directories that went away.
    Vanished(Vec<PathBuf>),
    /// Renamed, direction unknown: look.
    Renamed(Vec<PathBuf>),
    /// Poll mode: a `.py` file changed; keep an eye on it.
    Touched(PathBuf),
    /// The kernel's event queue overflowed: look for directories we missed.
    Rescan,
    /// The watcher is closing.
    Close,
}

/// Makes the message that asks the keeper to look at an event's paths.
type Look = fn(Vec<PathBuf>) -> Message;

/// How an event kind is handled: what it means for a file, whether the keeper must look.
fn route(kind: &EventKind) -> (Option<Change>, Option<Look>) {
    match kind {
        EventKind::Access(AccessKind::Open(_)) => (Some(Change::Opened), None),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
            (Some(Change::Closed { wrote: true }), None)
        }
        EventKind::Access(AccessKind::Close(_)) => (Some(Change::Closed { wrote: false }), None),
        EventKind::Create(CreateKind::Folder) => (None, Some(Message::Appeared)),
        EventKind::Create(CreateKind::File) => (Some(Change::Created), None),
        EventKind::Create(_) => (Some(Change::Created), Some(Message::Appeared)),
        EventKind::Remove(RemoveKind::Folder) => (None, Some(Message::Vanished)),
        EventKind::Remove(RemoveKind::File) => (Some(Change::Removed), None),
        EventKind::Remove(_) => (Some(Change::Removed), Some(Message::Vanished)),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            (Some(Change::MovedIn), Some(Message::Appeared))
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            (Some(Change::MovedOut), Some(Message::Vanished))
        }
        // inotify follows From and To with Both; they said it all.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => (None, None),
        EventKind::Modify(ModifyKind::Name(_)) => (Some(Change::Modified), Some(Message::Renamed)),
        // PollWatcher's "modification time changed".
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)) => {
            (Some(Change::Modified), None)
        }
        // chmod, chown, inotify's ATTRIB (`touch` also closes after writing, which counts).
        EventKind::Modify(ModifyKind::Metadata(_)) => (None, None),
        EventKind::Modify(_) => (Some(Change::Modified), None),
        EventKind::Access(_) | EventKind::Any | EventKind::Other => (None, None),
    }
}

/// Runs on notify's thread.
struct Handler {
    shared: Arc<Shared>,
    roots: Arc<Roots>,
    keeper: Sender<Message>,
    poll: bool,
    /// Never sent on: dropped with the handler, when notify's thread has let go of its
    /// watches and closed its inotify descriptor (see `Keeper::run`).
    _released: Sender<()>,
}

impl EventHandler for Handler {
    fn handle_event(&mut self, event: notify::Result<Event>) {
        // Errors here are notify's own (a read of the inotify descriptor, a directory that
        // vanished under the poll loop); the directories concerned are dealt with by events.
        let Ok(event) = event else {
            return;
        };
        if event.need_rescan() {
            let _ = self.keeper.send(Message::Rescan);
            return;
        }
        let (change, look) = route(&event.kind);
        if let Some(change) = change {
            for path in event.paths.iter().filter(|p| self.roots.accepts(p)) {
                self.shared.feed(path, change);
                if self.poll {
                    let _ = self.keeper.send(Message::Touched(path.clone()));
                }
            }
        }
        if let Some(message) = look {
            // The keeper is gone only while closing; nothing is left to keep then.
            let _ = self.keeper.send(message(event.paths));
        }
    }
}

/// A started watcher. Dropping it (`close`) stops the keeper, which drops the notify watcher
/// and so releases every OS watch.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    keeper: Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Watches the roots; fails if one is missing or cannot be watched, or on the watch limit.
    /// Blocks until every directory is watched (the caller releases the GIL around it).
    pub fn start(options: Options) -> Result<Engine, Failure> {
        let roots = Arc::new(classify(options.roots)?);
        let quiet = match options.poll_interval {
            // In poll mode an event is only seen at the next poll, so "no event for a while"
            // means at least two polls without one.
            Some(interval) => options.quiet.max(interval * 2),
            None => options.quiet,
        };
        let shared = Arc::new(Shared::new(quiet));
        let (keeper, inbox) = mpsc::channel();
        let (released, handler_dropped) = mpsc::channel();
        let handler = Handler {
            shared: Arc::clone(&shared),
            roots: Arc::clone(&roots),
            keeper: keeper.clone(),
            poll: options.poll_interval.is_some(),
            _released: released,
        };
        let first = roots.dirs.first().or(roots.files.first());
        let first = first.map_or(Path::new("/"), PathBuf::as_path);
        let mut watcher: Box<dyn Watcher + Send> = match options.poll_interval {
            Some(interval) => Box::new(
                PollWatcher::new(handler, Config::default().with_poll_interval(interval))
                    .map_err(|e| Failure::from_notify(e, first))?,
            ),
            None => Box::new(
                RecommendedWatcher::new(handler, Config::default())
                    .map_err(|e| Failure::from_notify(e, first))?,
            ),
        };
        let mut hot = options.poll_interval.map(Hot::new);
        let mut tree = Tree::new(options.ignore);
        let now = Instant::now();
        let mut watch = |dir: &Path| watch_dir(watcher.as_mut(), dir);
        let mut seed = |file: &Path| {
            if let Some(hot) = &mut hot {
                hot.seed(file, now);
            }
        };
        for dir in &roots.dirs {
            tree.add_tree(dir, &mut watch, &mut seed)?;
        }
        for file in &roots.files {
            tree.add_parent(file.parent().unwrap_or(Path::new("/")), &mut watch)?;
            seed(file);
        }
        shared.watched.store(tree.count(), Ordering::Relaxed);
        let keeper_state = Keeper {
            watcher,
            tree,
            hot,
            shared: Arc::clone(&shared),
            roots,
            inbox,
            handler_dropped,
        };
        let thread = std::thread::Builder::new()
            .name("mighty_patcher watch keeper".to_owned())
            .spawn(move || keeper_state.run())
            .map_err(|e| Failure::Other {
                path: None,
                errno: e.raw_os_error(),
                message: format!("cannot start the watcher's thread: {e}"),
            })?;
        Ok(Engine {
            shared,
            keeper,
            thread: Some(thread),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop();
        let _ = self.keeper.send(Message::Close);
        if let Some(thread) = self.thread.take() {
            // The keeper never waits for anything but its channel, so this returns as soon
            // as it has finished what it was doing.
            let _ = thread.join();
        }
        self.shared.watched.store(0, Ordering::Relaxed);
    }
}

/// Watches the directory `dir` (not its subdirectories: `Tree` walks them).
fn watch_dir(watcher: &mut (dyn Watcher + Send), dir: &Path) -> Result<(), Failure> {
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| Failure::from_notify(e, dir))
}

/// Splits the roots into directories and `.py` files; fails on a missing one.
fn classify(paths: Vec<PathBuf>) -> Result<Roots, Failure> {
    let mut roots = Roots::default();
    for path in paths {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => roots.dirs.push(path),
            Ok(_) if super::coalesce::is_python(&path) => roots.files.push(path),
            Ok(_) => return Err(Failure::NotPython(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::MissingRoot(path));
            }
            Err(e) => {
                return Err(Failure::Other {
                    errno: e.raw_os_error(),
                    message: e.to_string(),
                    path: Some(path),
                });
            }
        }
    }
    Ok(roots)
}

/// The keeper thread's state.
struct Keeper {
    watcher: Box<dyn Watcher + Send>,
    tree: Tree,
    hot: Option<Hot>,
    shared: Arc<Shared>,
    roots: Arc<Roots>,
    inbox: Receiver<Message>,
    /// Disconnected once notify's thread has dropped the handler.
    handler_dropped: Receiver<()>,
}

impl Keeper {
    fn run(mut self) {
        loop {
            let timeout = self.hot.as_ref().and_then(|h| h.timeout(Instant::now()));
            let message = match timeout {
                Some(t) => self.inbox.recv_timeout(t),
                None => self
                    .inbox
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Message::Appeared(paths)) => paths.iter().for_each(|p| self.appeared(p)),
                Ok(Message::Vanished(paths)) => paths.iter().for_each(|p| self.vanished(p)),
                Ok(Message::Renamed(paths)) => {
                    for path in &paths {
                        if std::fs::symlink_metadata(path).is_ok() {
                            self.appeared(path);
                        } else {
                            self.vanished(path);
                        }
                    }
                }
                Ok(Message::Touched(path)) => {
                    if let Some(hot) = &mut self.hot {
                        hot.touch(&path, poll::fingerprint(&path), Instant::now());
                    }
                }
                Ok(Message::Rescan) => self.rescan(),
            }
            if let Some(hot) = &mut self.hot {
                for (path, change) in hot.recheck(Instant::now(), poll::fingerprint) {
                    self.shared.feed(&path, change);
                }
            }
        }
        // Dropping the notify watcher only asks its thread to stop; that thread closes the
        // inotify descriptor, then drops the handler. Waiting for that makes `close` release
        // the OS resources before it returns (a program that makes watchers in a loop must
        // not run out of inotify instances).
        drop(self.watcher);
        let _ = self.handler_dropped.recv_timeout(Duration::from_secs(1));
    }

    /// `path` was created or renamed in: if it is a directory to watch, watch it and what is
    /// below, and report the `.py` files already there (written before the watch began).
    fn appeared(&mut self, path: &Path) {
        let parent = path.parent().unwrap_or(path);
        if !self.tree.recurses_into(parent) || self.tree.recurses_into(path) {
            return;
        }
        if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) || self.tree.is_ignored(path)
        {
            return;
        }
        self.add_tree(path);
    }

    fn add_tree(&mut self, top: &Path) {
        let (watcher, shared, roots, hot) =
            (&mut self.watcher, &self.shared, &self.roots, &mut self.hot);
        let mut watch = |dir: &Path| watch_dir(watcher.as_mut(), dir);
        let mut found = |file: &Path| {
            if roots.accepts(file) {
                shared.feed(file, Change::Modified);
                if let Some(hot) = hot.as_mut() {
                    hot.touch(file, poll::fingerprint(file), Instant::now());
                }
            }
        };
        if let Err(failure) = self.tree.add_tree(top, &mut watch, &mut found) {
            if !failure.is_local() {
                shared.fail(failure);
            }
        }
        shared.watched.store(self.tree.count(), Ordering::Relaxed);
    }

    /// `path` was deleted or renamed away: forget it if it was a watched directory, and
    /// report it (a rename sends no event for the files it takes along).
    fn vanished(&mut self, path: &Path) {
        let gone = self.tree.forget(path);
        if gone.is_empty() {
            return;
        }
        self.shared.feed_gone_dir(path);
        for dir in &gone {
            // inotify drops the watch of a deleted or moved directory itself, and notify its
            // record of it; the poll loop keeps scanning until told.
            let _ = self.watcher.unwatch(dir);
        }
        self.shared
            .watched
            .store(self.tree.count(), Ordering::Relaxed);
    }

    /// Events were lost: walk the roots again, watching directories that were missed.
    fn rescan(&mut self) {
        let roots = Arc::clone(&self.roots);
        for dir in &roots.dirs {
            if self.tree.recurses_into(dir) {
                self.add_tree(dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: EventKind) -> Option<Change> {
        route(&kind).0
    }

    fn looks(kind: EventKind) -> bool {
        route(&kind).1.is_some()
    }

    #[test]
    fn inotify_events_map_to_changes_and_directory_lookups() {
        use notify::event::DataChange;
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let close_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let close_read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert_eq!(change(open), Some(Change::Opened));
        assert_eq!(change(close_write), Some(Change::Closed { wrote: true }));
        assert_eq!(change(close_read), Some(Change::Closed { wrote: false }));
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(change(data), Some(Change::Modified));
        let attrib = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any));
        assert_eq!(change(attrib), None, "chmod is not a change");
        let to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let from = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!((change(to), looks(to)), (Some(Change::MovedIn), true));
        assert_eq!((change(from), looks(from)), (Some(Change::MovedOut), true));
        assert_eq!((change(both), looks(both)), (None, false));
        let file = EventKind::Create(CreateKind::File);
        let folder = EventKind::Create(CreateKind::Folder);
        assert_eq!((change(file), looks(file)), (Some(Change::Created), false));
        assert_eq!((change(folder), looks(folder)), (None, true));
        let removed = EventKind::Remove(RemoveKind::Folder);
        assert_eq!((change(removed), looks(removed)), (None, true));
    }

    #[test]
    fn poll_events_map_to_changes_that_wait_for_quiet() {
        let mtime = EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime));
        assert_eq!(change(mtime), Some(Change::Modified));
        let created = EventKind::Create(CreateKind::Any);
        assert_eq!(
            (change(created), looks(created)),
            (Some(Change::Created), true)
        );
        let removed = EventKind::Remove(RemoveKind::Any);
        assert_eq!(
            (change(removed), looks(removed)),
            (Some(Change::Removed), true)
        );
    }
}
