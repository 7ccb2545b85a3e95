//! Conversions between Rust values and Python objects, and between results and what CPython
//! expects back from a C function: the one place for `str` <-> `String`, `None`, `bool`,
//! `TypeError`, and `PyResult<Owned>` -> `*mut PyObject`.

use core::ptr;
use std::ffi::CString;

use pyo3_ffi::{
    Py_None, PyBool_FromLong, PyErr_Clear, PyExc_TypeError, PyList_New, PyList_SET_ITEM, PyObject,
    PyObject_Str, PyUnicode_AsUTF8AndSize, PyUnicode_FromString,
};

use crate::errors::{Pending, PyResult, Raised, raise};
use crate::refs::{Borrowed, Owned};

/// Converts an operation's result to what CPython expects from a function returning an
/// object: a new reference, or NULL with the exception set.
pub fn finish(result: PyResult<Owned>) -> *mut PyObject {
    match result {
        Ok(value) => value.into_raw(),
        Err(Raised) => ptr::null_mut(),
    }
}

/// Converts a result to what CPython expects from a function returning a status: 0, or -1
/// with the exception set.
pub fn status(result: PyResult<()>) -> core::ffi::c_int {
    match result {
        Ok(()) => 0,
        Err(Raised) => -1,
    }
}

/// A new reference to `None`.
pub fn none() -> PyResult<Owned> {
    // SAFETY: Py_None is a live singleton; `to_owned` takes a new reference to it.
    Ok(unsafe { Borrowed::from_ptr(Py_None()) }
        .expect("None")
        .to_owned())
}

/// A new list holding `items` (their references move into it).
pub fn list(items: Vec<Owned>) -> PyResult<Owned> {
    // SAFETY: PyList_New returns a new reference or NULL; SET_ITEM steals each reference into
    // the fresh list's empty slots.
    unsafe {
        let list = Owned::from_new(PyList_New(items.len() as isize))?;
        for (i, item) in items.into_iter().enumerate() {
            PyList_SET_ITEM(list.as_ptr(), i as isize, item.into_raw());
        }
        Ok(list)
    }
}

/// Whether `obj` is `None`.
pub fn is_none(obj: Borrowed<'_>) -> bool {
    // SAFETY: Py_None returns the None singleton (borrowed, never freed).
    obj.as_ptr() == unsafe { Py_None() }
}

/// `True` or `False`, as a new reference.
pub fn boolean(value: bool) -> PyResult<Owned> {
    // SAFETY: PyBool_FromLong returns a new reference.
    unsafe { Owned::from_new(PyBool_FromLong(value.into())) }
}

/// Sets a `TypeError` with `message`.
pub fn type_error(message: &str) -> Raised {
    // SAFETY: a static exception type.
    raise(unsafe { PyExc_TypeError }, message)
}

/// A Rust string as a new `str` (a NUL in `text` is dropped).
pub fn string(text: &str) -> PyResult<Owned> {
    let text = CString::new(text.replace('\0', "")).expect("no NUL left");
    // SAFETY: a NUL-terminated copy; returns a new reference or NULL with an exception set.
    unsafe { Owned::from_new(PyUnicode_FromString(text.as_ptr())) }
}

/// The name of `obj`'s type (`tp_name`), for messages.
pub fn type_name(obj: Borrowed<'_>) -> String {
    // SAFETY: `obj` is alive, so is its type; `tp_name` is a NUL-terminated string the type
    // owns for its whole life.
    unsafe {
        let name = (*pyo3_ffi::Py_TYPE(obj.as_ptr())).tp_name;
        core::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// `str(obj)` for messages; never fails (an error while formatting gives `<?>`).
pub fn text(obj: Borrowed<'_>) -> String {
    // SAFETY: `obj` is alive for the call; PyObject_Str returns a new reference or NULL.
    let Ok(s) = (unsafe { Owned::from_new(PyObject_Str(obj.as_ptr())) }) else {
        // SAFETY: an exception is set by the failed call; we drop it on purpose.
        unsafe { PyErr_Clear() };
        return "<?>".to_owned();
    };
    utf8(s.borrow()).unwrap_or_else(|| "<?>".to_owned())
}

/// The UTF-8 contents of a `str`, or `None` (with no exception left set) if it has none.
pub fn utf8(s: Borrowed<'_>) -> Option<String> {
    let mut size = 0;
    // SAFETY: `s` is alive; the returned buffer is owned by `s` and copied before `s` can die.
    let data = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        // SAFETY: the failed call set an exception, which we drop on purpose.
        unsafe { PyErr_Clear() };
        return None;
    }
    // SAFETY: CPython guarantees `size` valid bytes at `data`.
    let bytes = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Takes the exception currently set and returns its message (`str(exc)`), leaving no
/// exception set; used to fold a lower-level failure into a clearer one.
pub fn take_message() -> String {
    // SAFETY: the GIL is held wherever an exception can be set; `Pending` owns what it took.
    let mut pending = unsafe { Pending::take() };
    // SAFETY: as above; the value stays owned by `pending` while we format it.
    let value = unsafe { Borrowed::from_ptr(pending.normalised_value()) };
    value.map(text).unwrap_or_default()
}
