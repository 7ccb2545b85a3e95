//! One pass over the GC-tracked heap: every live object a predicate picks.
//!
//! Used to find the closures made before an edit (every function whose code object is in a
//! set: `functions_using`) and the frames a patch must know of (`frames`).
//!
//! On 3.12+ the pass is `PyUnstable_GC_VisitObjects`, in C, with the garbage collector
//! disabled for its duration. The predicate only reads, and the visitor only increfs what it
//! keeps: it never decrefs, so no object can die (and no finalizer run) while the GC lists are
//! being walked. Before 3.12 there is no such API; `gc.get_objects()` gives the same objects as
//! a list (a correct but allocating walk), filtered the same way.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3_ffi::{
    PyErr_Occurred, PyIter_Next, PyList_New, PyList_SET_ITEM, PyObject, PyObject_GetIter,
};

use crate::convert::type_error;
use crate::errors::{PyResult, Raised};
use crate::objects::{Code, Function};
use crate::refs::{Borrowed, Owned};

/// Decides, for one object on the heap, whether to keep it. It runs while the collector walks
/// its lists: it may read the object, and must not allocate Python objects, run Python code or
/// drop a reference.
pub type Predicate<'a> = &'a mut dyn FnMut(*mut PyObject) -> bool;

/// Strong references to every GC-tracked object `wanted` picks.
///
/// # Safety
/// GIL held; `wanted` keeps the rules of [`Predicate`].
pub unsafe fn collect(wanted: Predicate<'_>) -> PyResult<Vec<Owned>> {
    let mut found = Vec::new();
    // SAFETY: the GIL is held and `wanted` only reads (this function's contract), which is what
    // both walks need.
    unsafe { visit_all(wanted, &mut found)? };
    Ok(found)
}

#[cfg(Py_3_12)]
unsafe fn visit_all(wanted: Predicate<'_>, found: &mut Vec<Owned>) -> PyResult<()> {
    struct Walk<'a, 'b> {
        wanted: Predicate<'a>,
        found: &'b mut Vec<Owned>,
    }
    unsafe extern "C" fn visitor(
        obj: *mut PyObject,
        arg: *mut core::ffi::c_void,
    ) -> core::ffi::c_int {
        // SAFETY: `arg` is the `Walk` passed below, alive for the whole call; `obj` is a live
        // object CPython holds a reference to while we look at it.
        unsafe {
            let walk = &mut *arg.cast::<Walk<'_, '_>>();
            if (walk.wanted)(obj) {
                // An incref only: the visitor must never drop a reference.
                walk.found
                    .push(Borrowed::from_ptr(obj).expect("live").to_owned());
            }
        }
        1
    }
    let mut walk = Walk { wanted, found };
    // SAFETY: the callback matches `gcvisitobjects_t` and does not allocate Python objects,
    // run Python code or drop references.
    unsafe {
        let visit = crate::abi::ffi::api()
            .gc_visit_objects
            .expect("resolved on 3.12+");
        visit(visitor, core::ptr::from_mut(&mut walk).cast());
    }
    Ok(())
}

#[cfg(not(Py_3_12))]
unsafe fn visit_all(wanted: Predicate<'_>, found: &mut Vec<Owned>) -> PyResult<()> {
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
            let obj = pyo3_ffi::PyList_GET_ITEM(objects.as_ptr(), i);
            if wanted(obj) {
                found.push(Borrowed::from_ptr(obj).expect("listed").to_owned());
            }
        }
    }
    Ok(())
}

/// The addresses of the wanted code objects. The predicate asks about every function on the
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

/// Every live function whose `__code__` is one of `codes` (any iterable of code objects), as
/// a new list.
///
/// # Safety
/// GIL held.
pub unsafe fn functions_using(codes: Borrowed<'_>) -> PyResult<Owned> {
    // Strong references, so the addresses in `wanted` stay valid for the whole walk.
    let mut keep = Vec::new();
    // SAFETY: the iteration protocol on a live object; each item is a new reference.
    unsafe {
        let iter = Owned::from_new(PyObject_GetIter(codes.as_ptr()))?;
        while let Some(item) = Owned::from_new_opt(PyIter_Next(iter.as_ptr())) {
            if Code::cast(item.borrow()).is_none() {
                return Err(type_error(
                    "functions_using() takes an iterable of code objects",
                ));
            }
            keep.push(item);
        }
        if !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
    }
    let found = if keep.is_empty() {
        Vec::new()
    } else {
        let wanted = Codes::new(keep.iter().map(|c| c.as_ptr() as usize).collect());
        let mut uses_wanted_code = |obj: *mut PyObject| {
            // SAFETY: `obj` is alive while the collector shows it to us.
            let obj = unsafe { Borrowed::from_ptr(obj) }.expect("live");
            Function::cast(obj).is_some_and(|f| wanted.contains(f.code_address()))
        };
        // SAFETY: GIL held (forwarded); the predicate reads a type and a pointer only.
        unsafe { collect(&mut uses_wanted_code)? }
    };
    // SAFETY: PyList_New returns a new reference or NULL; SET_ITEM steals each found reference
    // into the fresh list's empty slots.
    unsafe {
        let list = Owned::from_new(PyList_New(found.len() as isize))?;
        for (i, func) in found.into_iter().enumerate() {
            PyList_SET_ITEM(list.as_ptr(), i as isize, func.into_raw());
        }
        drop(keep);
        Ok(list)
    }
}
