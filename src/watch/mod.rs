//! The file watcher: `.py` files under some roots, reported once complete.
//!
//! Small and dumb on purpose (policy and logging live in Python): it collects events from the
//! `notify` crate, coalesces them per file, and lets a Python thread wait for a batch with the
//! GIL released. Files by role:
//!
//! - `coalesce`: the pure state machine that decides when a changed file is complete;
//! - `tree`: which directories are watched (recursion, ignore rules, symbolic links);
//! - `poll`: what notify's `PollWatcher` misses, made up for;
//! - `engine`: the notify backend, the keeper thread, the state shared with the waiter;
//! - `failure`: why watching failed, and the messages users read;
//! - `object`: the `Watcher` Python type and the `WatchError` exception.

mod coalesce;
mod engine;
mod failure;
mod object;
mod poll;
mod tree;

pub use object::{create_error, spec};
