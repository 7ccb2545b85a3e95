//! In-place surgery: one operation per function, each leaving the objects consistent.

pub mod class;
pub mod function;
pub mod keepalive;
