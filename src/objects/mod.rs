//! Typed handles: a Python object checked once to be a function, a code object or a class,
//! with accessors for the fields the crate reads. A handle is borrowed for `'py`, like
//! [`crate::refs::Borrowed`]; what an accessor returns from a field that a patch may replace is
//! a new reference, so it stays valid whatever happens to the field afterwards.
//!
//! A handle can only be made by a checked cast, so code taking a `Function<'_>` has the
//! invariant "this is a live `PyFunctionObject`" from its type rather than from a comment.

mod class;
mod code;
mod function;

pub use class::Type;
pub use code::Code;
pub use function::Function;
