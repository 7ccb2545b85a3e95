//! In-place surgery: one operation per function or class, each leaving the objects consistent.
//!
//! - `fields`: a function's fields, read and moved as a unit;
//! - `events`: the order of stores that tells function watchers (3.12+);
//! - `keepalive`: old globals and builtins outlive the frames that borrow them;
//! - `function`: `patch_function` and `swap_code`, each prepared then committed;
//! - `members`: which functions a class member holds;
//! - `class`: `patch_class`, all or nothing.

pub mod class;
mod events;
mod fields;
pub mod function;
pub mod keepalive;
pub mod members;
