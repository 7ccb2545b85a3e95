//! One pass over the GC-tracked heap: every live function whose code object is in a set.
//!
//! This is how closures made before an edit are found: a factory `make(n)` returns a new
//! `inner` function on each call, all sharing one code object; after `inner` is edited, each
//! of them must move to the new code (`patch::function::swap_code`).
//!
//! On 3.12+ the pass is `PyUnstable_GC_VisitObjects`, in C, with the garbage collector
//! disabled for its duration. The visitor only reads and increfs: it never decrefs, so no
//! object can die (and no finalizer run) while the GC lists are being walked. Before 3.12 there
//! is no such API; `gc.get_objects()` gives the same objects as a list (a correct but
//! allocating walk), which we filter the same way.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3_ffi::{
    PyCode_Check, PyErr_Occurred, PyExc_TypeError, PyFunction_Check, PyFunctionObject, PyIter_Next,
    PyList_New, PyList_SET_ITEM, PyObject, PyObject_GetIter,
};

use crate::errors::{PyResult, Raised, raise};
use crate::refs::{Borrowed, Owned};

/// The addresses of the wanted code objects. The visitor asks about every function on the
/// heap, so membership must be cheap: a short list is scanned, a long one hashed by address.
enum Codes {
    Few(Vec<usize>),
    Many(HashSet<usize, BuildHasherDefault<AddressHasher>>),
}

impl Codes {
    fn new(addresses: Vec<usize>) -> Codes {
        if addresses.len() <= 16 {
            Codes::Few(addresses)
        } else {
            Codes::Many(addresses.into_iter().collect())
        }
    }

    fn contains(&self, address: usize) -> bool {
        match self {
            Codes::Few(list) => list.contains(&address),
            Codes::Many(set) => set.contains(&address),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Codes::Few(list) => list.is_empty(),
            Codes::Many(set) => set.is_empty(),
        }
    }
}

/// Addresses are already unique: mix the bits a little (objects are 16-byte aligned).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, address: usize) {
        self.0 = ((address as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What a walk is looking for and what it found.
struct Walk {
    /// The wanted code objects (kept alive by `keep` in the caller).
    codes: Codes,
    /// Strong references to the functions found (increfed by the visitor).
    found: Vec<Owned>,
}

impl Walk {
    /// Looks at one object; keeps it if it is a function using one of the codes.
    ///
    /// # Safety
    /// `obj` is a live object; GIL held.
    unsafe fn visit(&mut self, obj: *mut PyObject) {
        // SAFETY: `obj` is alive; a function's `func_code` is a live code object.
        unsafe {
            if PyFunction_Check(obj) != 0 {
                let code = (*obj.cast::<PyFunctionObject>()).func_code;
                if self.codes.contains(code as usize) {
                    // An incref only: the visitor must never drop a reference.
                    self.found
                        .push(Borrowed::from_ptr(obj).expect("live").to_owned());
                }
            }
        }
    }
}

/// Every live function whose `__code__` is one of `codes` (any iterable of code objects).
///
/// # Safety
/// GIL held.
pub unsafe fn functions_using(codes: Borrowed<'_>) -> PyResult<Owned> {
    let mut keep = Vec::new();
    let mut addresses = Vec::new();
    // SAFETY: iteration protocol on a live object; each item is a new reference we keep in
    // `keep` so the addresses in `walk.codes` stay valid for the whole walk.
    unsafe {
        let iter = Owned::from_new(PyObject_GetIter(codes.as_ptr()))?;
        while let Some(item) = Owned::from_new_opt(PyIter_Next(iter.as_ptr())) {
            if PyCode_Check(item.as_ptr()) == 0 {
                return Err(raise(
                    PyExc_TypeError,
                    "functions_using() takes an iterable of code objects",
                ));
            }
            addresses.push(item.as_ptr() as usize);
            keep.push(item);
        }
        if !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
    }
    let mut walk = Walk {
        codes: Codes::new(addresses),
        found: Vec::new(),
    };
    if !walk.codes.is_empty() {
        // SAFETY: GIL held (forwarded).
        unsafe { visit_all(&mut walk)? };
    }
    // SAFETY: PyList_New returns a new reference or NULL; SET_ITEM steals each found reference
    // into the fresh list's empty slots.
    unsafe {
        let list = Owned::from_new(PyList_New(walk.found.len() as isize))?;
        for (i, func) in walk.found.into_iter().enumerate() {
            PyList_SET_ITEM(list.as_ptr(), i as isize, func.into_raw());
        }
        drop(keep);
        Ok(list)
    }
}

#[cfg(Py_3_12)]
unsafe fn visit_all(walk: &mut Walk) -> PyResult<()> {
    unsafe extern "C" fn visitor(
        obj: *mut PyObject,
        arg: *mut core::ffi::c_void,
    ) -> core::ffi::c_int {
        // SAFETY: `arg` is the `Walk` passed below, alive for the whole call; `obj` is a live
        // object CPython holds a reference to while we look at it.
        unsafe { (*arg.cast::<Walk>()).visit(obj) };
        1
    }
    // SAFETY: the callback matches `gcvisitobjects_t` and does not allocate Python objects,
    // run Python code or drop references.
    unsafe {
        let visit = crate::abi::ffi::api()
            .gc_visit_objects
            .expect("resolved on 3.12+");
        visit(visitor, core::ptr::from_mut(walk).cast());
    }
    Ok(())
}

#[cfg(not(Py_3_12))]
unsafe fn visit_all(walk: &mut Walk) -> PyResult<()> {
    // SAFETY: GIL held; `gc.get_objects()` returns a new list of every tracked object, which
    // keeps them alive while we look at them.
    unsafe {
        let gc = Owned::from_new(pyo3_ffi::PyImport_ImportModule(c"gc".as_ptr()))?;
        let objects = Owned::from_new(pyo3_ffi::PyObject_CallMethod(
            gc.as_ptr(),
            c"get_objects".as_ptr(),
            core::ptr::null(),
        ))?;
        let n = pyo3_ffi::PyList_GET_SIZE(objects.as_ptr());
        for i in 0..n {
            walk.visit(pyo3_ffi::PyList_GET_ITEM(objects.as_ptr(), i));
        }
    }
    Ok(())
}
