//! Owned and borrowed handles: the one place that increfs and decrefs by hand.
//!
//! The rules, once, for the whole crate:
//!
//! - Every raw `*mut PyObject` is wrapped as soon as it is obtained. A *new reference* (what
//!   most C API calls return) becomes an [`Owned`], which decrefs when dropped. A *borrowed
//!   reference* (a method argument, `PyTuple_GET_ITEM`, a struct field read in place) becomes a
//!   [`Borrowed`], whose lifetime must not outlast whatever keeps the object alive; call
//!   [`Borrowed::to_owned`] to keep it longer.
//! - Giving a reference away (a *steal*: storing into a struct field, `PyList_SET_ITEM`,
//!   returning to Python) goes through [`Owned::into_raw`], so a stolen reference is never
//!   dropped twice.
//! - A decref can run arbitrary Python code: `__del__`, weakref callbacks, a garbage
//!   collection. On the patching path new values are stored first, the function's
//!   specialisation is invalidated, and only then are the old values dropped (see
//!   `patch::function`), so that code never sees a half-patched object.
//! - All of it needs the GIL (an attached thread state). Every function that takes or returns
//!   these handles is called from a method of the module, which CPython calls with the GIL held.

use core::marker::PhantomData;
use core::ptr::NonNull;

use pyo3_ffi::{Py_DECREF, Py_INCREF, PyObject};

use crate::errors::{PyResult, Raised};

/// A strong reference; dropping it decrefs.
#[repr(transparent)]
pub struct Owned(NonNull<PyObject>);

impl Owned {
    /// Wraps the result of a C API call that returns a new reference or NULL with an
    /// exception set.
    ///
    /// # Safety
    /// `ptr` is NULL or a new reference that the caller gives up; the GIL is held.
    pub unsafe fn from_new(ptr: *mut PyObject) -> PyResult<Owned> {
        NonNull::new(ptr).map(Owned).ok_or(Raised)
    }

    /// Wraps a new reference that may legitimately be NULL without an exception (an optional
    /// struct field taken over by the caller, for example).
    ///
    /// # Safety
    /// `ptr` is NULL or a new reference that the caller gives up; the GIL is held.
    pub unsafe fn from_new_opt(ptr: *mut PyObject) -> Option<Owned> {
        NonNull::new(ptr).map(Owned)
    }

    pub fn as_ptr(&self) -> *mut PyObject {
        self.0.as_ptr()
    }

    pub fn borrow(&self) -> Borrowed<'_> {
        Borrowed(self.0, PhantomData)
    }

    /// Gives the reference away (a steal); the caller is now responsible for it.
    pub fn into_raw(self) -> *mut PyObject {
        let ptr = self.0.as_ptr();
        core::mem::forget(self);
        ptr
    }
}

impl Clone for Owned {
    fn clone(&self) -> Self {
        // SAFETY: `self` holds a strong reference, so the object is alive; the GIL is held
        // wherever handles exist (module rules above).
        unsafe { Py_INCREF(self.as_ptr()) };
        Owned(self.0)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: we own one strong reference (new reference wrapped by `from_new*` or an
        // incref by `to_owned`/`clone`), released exactly once here, with the GIL held.
        unsafe { Py_DECREF(self.as_ptr()) };
    }
}

/// A borrowed reference, valid for `'a`.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Borrowed<'a>(NonNull<PyObject>, PhantomData<&'a PyObject>);

impl<'a> Borrowed<'a> {
    /// # Safety
    /// `ptr` is NULL or a live object that something else keeps alive for `'a`.
    pub unsafe fn from_ptr(ptr: *mut PyObject) -> Option<Borrowed<'a>> {
        NonNull::new(ptr).map(|p| Borrowed(p, PhantomData))
    }

    pub fn as_ptr(self) -> *mut PyObject {
        self.0.as_ptr()
    }

    /// Takes a strong reference of our own (an incref).
    pub fn to_owned(self) -> Owned {
        // SAFETY: a borrowed reference points to a live object for `'a`; the GIL is held.
        unsafe { Py_INCREF(self.as_ptr()) };
        Owned(self.0)
    }

    pub fn is(self, other: Borrowed<'_>) -> bool {
        self.0 == other.0
    }
}

/// Takes a strong reference to an optional field value (an `XINCREF`).
///
/// # Safety
/// `ptr` is NULL or a live object; the GIL is held.
pub unsafe fn new_ref_opt(ptr: *mut PyObject) -> Option<Owned> {
    // SAFETY: forwarded contract; `to_owned` increfs.
    unsafe { Borrowed::from_ptr(ptr) }.map(Borrowed::to_owned)
}
