//! Which functions a class member holds: the one rule, used by `patch_class` to patch members
//! in place and offered to Python (`member_functions`, `member_function_pairs`), where the
//! reloader pairs the nested code objects of methods, moves line numbers and records what a
//! reload may have to roll back.
//!
//! A member holds functions when it is
//! - a function: itself;
//! - a `staticmethod` or a `classmethod` (exactly those types) around a function: that function;
//! - a `property` (exactly that type): each of its `fget`, `fset`, `fdel` that is a function.
//!
//! Two versions of a member are patched in place, role by role, when they are of the same kind:
//! two functions; two staticmethods (or two classmethods) around functions; two properties whose
//! accessors are, role by role, both functions or both absent. Otherwise the new member
//! replaces the old one (a property gaining a setter, a function becoming a staticmethod, a
//! subclass of `property`). Nested classes are patched in place too, member by member; they are
//! not functions a member holds.

use core::ptr;

use pyo3_ffi::{
    Py_TYPE, PyClassMethod_Type, PyObject_GetAttrString, PyProperty_Type, PyStaticMethod_Type,
    PyTypeObject,
};

use crate::convert::is_none;
use crate::errors::PyResult;
use crate::objects::Function;
use crate::refs::{Borrowed, Owned};

/// What kind of member an object is, for this rule.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Function,
    /// A `staticmethod` or `classmethod` (the type tells which).
    Wrapper,
    Property,
    Other,
}

/// A property's accessors, in role order.
const ACCESSORS: [&core::ffi::CStr; 3] = [c"fget", c"fset", c"fdel"];

pub fn kind(obj: Borrowed<'_>) -> Kind {
    // SAFETY: `obj` is alive; reading its type only. The types are static objects.
    let is = |t: *mut PyTypeObject| ptr::eq(unsafe { Py_TYPE(obj.as_ptr()) }, t);
    if Function::cast(obj).is_some() {
        Kind::Function
    } else if is(&raw mut PyStaticMethod_Type) || is(&raw mut PyClassMethod_Type) {
        Kind::Wrapper
    } else if is(&raw mut PyProperty_Type) {
        Kind::Property
    } else {
        Kind::Other
    }
}

fn attribute(obj: Borrowed<'_>, name: &core::ffi::CStr) -> PyResult<Owned> {
    // SAFETY: a live object; returns a new reference or NULL with an exception set.
    unsafe { Owned::from_new(PyObject_GetAttrString(obj.as_ptr(), name.as_ptr())) }
}

/// What a member holds in each of its roles (`None`: nothing, or not a function there).
fn roles(value: Borrowed<'_>) -> PyResult<Vec<Option<Owned>>> {
    let function = |obj: Owned| Function::cast(obj.borrow()).is_some().then_some(obj);
    Ok(match kind(value) {
        Kind::Function => vec![Some(value.to_owned())],
        Kind::Wrapper => vec![function(attribute(value, c"__func__")?)],
        Kind::Property => {
            let mut held = Vec::with_capacity(3);
            for name in ACCESSORS {
                held.push(function(attribute(value, name)?));
            }
            held
        }
        Kind::Other => Vec::new(),
    })
}

/// The functions `value` holds as a class member (see the module documentation).
pub fn functions(value: Borrowed<'_>) -> PyResult<Vec<Owned>> {
    Ok(roles(value)?.into_iter().flatten().collect())
}

/// How `patch_class` patches member `old` into member `new` in place: the (old, new) function
/// pairs, role by role; `None` when `new` replaces `old` instead.
pub fn in_place_pairs(
    old: Borrowed<'_>,
    new: Borrowed<'_>,
) -> PyResult<Option<Vec<(Owned, Owned)>>> {
    let (k, same_type) = (kind(old), {
        // SAFETY: both are alive; reading their types only.
        unsafe { ptr::eq(Py_TYPE(old.as_ptr()), Py_TYPE(new.as_ptr())) }
    });
    if k == Kind::Other || kind(new) != k || !same_type {
        return Ok(None);
    }
    let mut pairs = Vec::new();
    match k {
        Kind::Function | Kind::Wrapper => {
            let (o, n) = (roles(old)?, roles(new)?);
            match (
                o.into_iter().next().flatten(),
                n.into_iter().next().flatten(),
            ) {
                (Some(o), Some(n)) => pairs.push((o, n)),
                _ => return Ok(None),
            }
        }
        Kind::Property => {
            for name in ACCESSORS {
                let (a, b) = (attribute(old, name)?, attribute(new, name)?);
                let (fa, fb) = (
                    Function::cast(a.borrow()).is_some(),
                    Function::cast(b.borrow()).is_some(),
                );
                if fa && fb {
                    pairs.push((a, b));
                } else if !(is_none(a.borrow()) && is_none(b.borrow())) {
                    return Ok(None);
                }
            }
        }
        Kind::Other => unreachable!("handled above"),
    }
    Ok(Some(pairs))
}
