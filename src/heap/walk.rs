//! The heap walk itself: every GC-tracked object, shown to a predicate that picks what to
//! keep, and the address sets predicates look objects up in.
//!
//! On 3.12+ the pass is `PyUnstable_GC_VisitObjects`, in C, with the garbage collector
//! disabled for its duration. The predicate only reads, and the visitor only increfs what it
//! keeps: it never decrefs, so no object can die (and no finalizer run) while the GC lists are
//! being walked. Before 3.12 there is no such API: `gc.get_objects()` gives the same objects as
//! a list (a correct but allocating walk), filtered the same way.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3_ffi::PyObject;

use crate::errors::PyResult;
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
    let objects = unsafe { gc_call(c"get_objects", None)? };
    // SAFETY: as above.
    unsafe { filter_list(&objects, wanted, found) };
    Ok(())
}

/// `gc.<name>(*args)`, a new reference.
///
/// # Safety
/// GIL held.
#[cfg(not(Py_3_12))]
pub unsafe fn gc_call(name: &core::ffi::CStr, args: Option<&Owned>) -> PyResult<Owned> {
    // SAFETY: GIL held; each call returns a new reference or NULL with an exception set.
    unsafe {
        let gc = Owned::from_new(pyo3_ffi::PyImport_ImportModule(c"gc".as_ptr()))?;
        let function =
            Owned::from_new(pyo3_ffi::PyObject_GetAttrString(gc.as_ptr(), name.as_ptr()))?;
        let empty;
        let args = match args {
            Some(args) => args,
            None => {
                empty = Owned::from_new(pyo3_ffi::PyTuple_New(0))?;
                &empty
            }
        };
        Owned::from_new(pyo3_ffi::PyObject_Call(
            function.as_ptr(),
            args.as_ptr(),
            core::ptr::null_mut(),
        ))
    }
}

/// The items of `list` that `wanted` picks, as strong references.
///
/// # Safety
/// GIL held; `list` is a list, which keeps its items alive while we look at them.
#[cfg(not(Py_3_12))]
pub unsafe fn filter_list(list: &Owned, wanted: Predicate<'_>, found: &mut Vec<Owned>) {
    // SAFETY: a list; GET_ITEM borrows items the list keeps alive (nothing changes the list:
    // the predicate runs no Python code).
    unsafe {
        let n = pyo3_ffi::PyList_GET_SIZE(list.as_ptr());
        for i in 0..n {
            let obj = pyo3_ffi::PyList_GET_ITEM(list.as_ptr(), i);
            if wanted(obj) {
                found.push(Borrowed::from_ptr(obj).expect("listed").to_owned());
            }
        }
    }
}

/// A set of object addresses. A predicate asks about every object on the heap, so membership
/// must be cheap: a short list is scanned, a long one hashed by address.
pub enum Addresses {
    Few(Vec<usize>),
    Many(HashSet<usize, BuildHasherDefault<AddressHasher>>),
}

impl Addresses {
    pub fn new(addresses: Vec<usize>) -> Addresses {
        if addresses.len() <= 16 {
            Addresses::Few(addresses)
        } else {
            Addresses::Many(addresses.into_iter().collect())
        }
    }

    pub fn contains(&self, address: usize) -> bool {
        match self {
            Addresses::Few(list) => list.contains(&address),
            Addresses::Many(set) => set.contains(&address),
        }
    }
}

/// Addresses are already unique: mix the bits a little (objects are 16-byte aligned).
#[derive(Default)]
pub struct AddressHasher(u64);

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
