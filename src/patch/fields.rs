//! The fields of a function object that a patch replaces, read and moved as a unit.
//!
//! A function is consistent (the invariants in `objects::function`) only when its code and
//! closure agree, and it behaves as one version of a definition only when all its fields come
//! from that version; so fields are read from one function and stored together, with no Python
//! code running in between (`patch::events` decides which stores go through CPython's setters,
//! which run watchers, and in which order).

use core::ptr;

use pyo3_ffi::{PyDict_Copy, PyFunctionObject, PyObject};

use crate::errors::PyResult;
use crate::objects::Function;
use crate::refs::{Borrowed, Owned};

/// One object field of `PyFunctionObject`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    Code,
    Closure,
    Globals,
    Builtins,
    Name,
    Qualname,
    Defaults,
    KwDefaults,
    Doc,
    Dict,
    Module,
    Annotations,
    #[cfg(Py_3_12)]
    TypeParams,
    #[cfg(Py_3_14)]
    Annotate,
}

/// Everything `patch_function` takes from the new function.
pub const EVERY_FIELD: &[Field] = &[
    Field::Code,
    Field::Closure,
    Field::Globals,
    Field::Builtins,
    Field::Name,
    Field::Qualname,
    Field::Defaults,
    Field::KwDefaults,
    Field::Doc,
    Field::Dict,
    Field::Module,
    Field::Annotations,
    #[cfg(Py_3_12)]
    Field::TypeParams,
    #[cfg(Py_3_14)]
    Field::Annotate,
];

impl Field {
    /// Where the field sits in `func`.
    fn place(self, func: Function<'_>) -> *mut *mut PyObject {
        let f: *mut PyFunctionObject = func.as_raw();
        // SAFETY: `func` is a live `PyFunctionObject` (a `Function` is checked when made) and
        // every field named here sits where `build.rs` checked it against the headers; only the
        // address is computed.
        unsafe {
            match self {
                Field::Code => &raw mut (*f).func_code,
                Field::Closure => &raw mut (*f).func_closure,
                Field::Globals => &raw mut (*f).func_globals,
                Field::Builtins => &raw mut (*f).func_builtins,
                Field::Name => &raw mut (*f).func_name,
                Field::Qualname => &raw mut (*f).func_qualname,
                Field::Defaults => &raw mut (*f).func_defaults,
                Field::KwDefaults => &raw mut (*f).func_kwdefaults,
                Field::Doc => &raw mut (*f).func_doc,
                Field::Dict => &raw mut (*f).func_dict,
                Field::Module => &raw mut (*f).func_module,
                Field::Annotations => &raw mut (*f).func_annotations,
                #[cfg(Py_3_12)]
                Field::TypeParams => &raw mut (*f).func_typeparams,
                #[cfg(Py_3_14)]
                Field::Annotate => &raw mut (*f).func_annotate,
            }
        }
    }

    /// The field's value in `func`, as a new reference (`None` for NULL).
    pub fn read(self, func: Function<'_>) -> Option<Owned> {
        // SAFETY: the field of a live function holds NULL or a live object the function owns;
        // the reference is taken at once.
        unsafe { Borrowed::from_ptr(*self.place(func)) }.map(Borrowed::to_owned)
    }

    /// Whether `func` holds exactly `value` (by identity; `None` for NULL).
    #[cfg_attr(
        not(Py_3_11),
        allow(dead_code, reason = "namespaces and events: 3.11+")
    )]
    pub fn holds(self, func: Function<'_>, value: Option<&Owned>) -> bool {
        // SAFETY: a plain read of a pointer field of a live function.
        let current = unsafe { *self.place(func) };
        ptr::eq(current, value.map_or(ptr::null_mut(), |v| v.as_ptr()))
    }
}

/// Values for some fields of a function, each a strong reference or `None` (NULL).
pub struct Values(Vec<(Field, Option<Owned>)>);

impl Values {
    pub fn new(values: Vec<(Field, Option<Owned>)>) -> Values {
        Values(values)
    }

    /// Every field of `source` (new references), with a copy of its `__dict__`: what
    /// `patch_function` gives the function it patches.
    pub fn copy_of(source: Function<'_>) -> PyResult<Values> {
        let mut values = Vec::with_capacity(EVERY_FIELD.len());
        for &field in EVERY_FIELD {
            let value = match (field, field.read(source)) {
                (Field::Dict, Some(dict)) => {
                    // SAFETY: `__dict__` is NULL or a dict; PyDict_Copy returns a new reference
                    // or NULL with an exception set.
                    Some(unsafe { Owned::from_new(PyDict_Copy(dict.as_ptr())) }?)
                }
                (_, value) => value,
            };
            values.push((field, value));
        }
        Ok(Values(values))
    }

    /// The value for `field`, if `self` has one (`Some(None)`: the field is to be NULL).
    #[cfg_attr(
        not(Py_3_11),
        allow(dead_code, reason = "namespaces and events: 3.11+")
    )]
    pub fn get(&self, field: Field) -> Option<Option<&Owned>> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, value)| value.as_ref())
    }

    /// Takes the value for `field` out of `self`.
    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "used by patch::events, 3.12+")
    )]
    pub fn take(&mut self, field: Field) -> Option<Option<Owned>> {
        let at = self.0.iter().position(|(f, _)| *f == field)?;
        Some(self.0.swap_remove(at).1)
    }

    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "used by patch::events, 3.12+")
    )]
    pub fn push(&mut self, field: Field, value: Option<Owned>) {
        self.0.push((field, value));
    }

    /// Moves every value into its field of `func` and returns what the fields held.
    ///
    /// # Safety
    /// GIL held. The caller makes the function consistent again (the invariants in
    /// `objects::function`) before any Python code can run: storing a code object without
    /// the matching closure, or the reverse, leaves it inconsistent in between.
    pub unsafe fn store(self, func: Function<'_>) -> Values {
        Values(
            self.0
                .into_iter()
                .map(|(field, value)| {
                    let new = value.map_or(ptr::null_mut(), Owned::into_raw);
                    // SAFETY: the field owned the reference it held, which moves out to us as
                    // an owned reference; the new one moves in (a plain pointer store, no code
                    // runs).
                    let old = unsafe { Owned::from_new_opt(ptr::replace(field.place(func), new)) };
                    (field, old)
                })
                .collect(),
        )
    }
}
