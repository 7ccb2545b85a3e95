//! Error convention: a fallible function returns `PyResult<T>`; `Err(Raised)` means a Python
//! exception is set and the caller should return NULL (or -1) to CPython without touching it.
//!
//! The bottom rung of the crate: it depends on nothing of ours.

use core::ptr;
use std::ffi::CString;

use pyo3_ffi::{Py_XDECREF, PyErr_SetString, PyObject};

/// Marker: a Python exception has been set.
#[derive(Debug)]
pub struct Raised;

pub type PyResult<T> = Result<T, Raised>;

/// Sets `exc` with `message`; returns the marker to propagate.
pub fn raise(exc: *mut PyObject, message: &str) -> Raised {
    let message = CString::new(message.replace('\0', "\\0")).expect("NULs were replaced");
    // SAFETY: `exc` is an exception type (a borrowed reference to a static or to a type owned by
    // the module state); `message` is a NUL-terminated copy that outlives the call.
    unsafe { PyErr_SetString(exc, message.as_ptr()) };
    Raised
}

/// The exception currently set, taken out of the error indicator so that code which must not
/// run with an exception set (undoing a half-done step) can run, then put back with
/// [`Pending::restore`].
pub struct Pending {
    kind: *mut PyObject,
    value: *mut PyObject,
    traceback: *mut PyObject,
}

impl Pending {
    /// Takes the exception currently set (the indicator is then clear).
    ///
    /// # Safety
    /// GIL held.
    pub unsafe fn take() -> Pending {
        let mut pending = Pending {
            kind: ptr::null_mut(),
            value: ptr::null_mut(),
            traceback: ptr::null_mut(),
        };
        // PyErr_Fetch is deprecated since 3.12 in favour of PyErr_GetRaisedException, which
        // 3.10 and 3.11 lack; every supported version still exports it.
        // SAFETY: PyErr_Fetch moves three new references (each possibly NULL) into `pending`,
        // which owns them until `restore` or drop.
        #[allow(deprecated, reason = "see above")]
        unsafe {
            pyo3_ffi::PyErr_Fetch(
                &mut pending.kind,
                &mut pending.value,
                &mut pending.traceback,
            )
        };
        pending
    }

    /// The three parts, normalised (the value an exception instance), still owned by `self`.
    ///
    /// # Safety
    /// GIL held.
    pub unsafe fn normalised_value(&mut self) -> *mut PyObject {
        // SAFETY: normalising keeps the three references owned by `self` (it may replace them).
        #[allow(deprecated, reason = "see `take`")]
        unsafe {
            pyo3_ffi::PyErr_NormalizeException(&mut self.kind, &mut self.value, &mut self.traceback)
        };
        self.value
    }

    /// Sets the exception again; `Raised`, to propagate it.
    ///
    /// # Safety
    /// GIL held; no exception is set.
    pub unsafe fn restore(self) -> Raised {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: PyErr_Restore steals the three references, which `this` no longer drops.
        #[allow(deprecated, reason = "see `take`")]
        unsafe {
            pyo3_ffi::PyErr_Restore(this.kind, this.value, this.traceback)
        };
        Raised
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // SAFETY: the three are owned references or NULL; a `Pending` only exists with the GIL
        // held (it is made by `take` and lives within the call that made it).
        unsafe {
            Py_XDECREF(self.kind);
            Py_XDECREF(self.value);
            Py_XDECREF(self.traceback);
        }
    }
}
