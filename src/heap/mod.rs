//! Passes over the GC-tracked heap: every live object a predicate picks.
//!
//! Used to find the closures made before an edit (every function whose code object is in a
//! set: `functions_using`), the instances of edited classes (`instances_of`) and the frames a
//! patch must know of (`frames`).
//!
//! The walk (`walk`) is `PyUnstable_GC_VisitObjects` on 3.12+ and `gc.get_objects()` before;
//! for a few code objects before 3.12, `gc.get_referrers(*codes)` finds the functions in one
//! pass that allocates nothing per object (a function always reports its code object to the
//! collector), which is faster.
//!
//! On 3.12+ `functions_using` mostly does not walk at all: [`index`] keeps, per interpreter,
//! the live functions of the code objects it was asked about, current through a function
//! watcher.

#[cfg(Py_3_12)]
pub mod index;
mod walk;

pub use walk::collect;

use pyo3_ffi::{Py_TYPE, PyErr_Occurred, PyIter_Next, PyObject, PyObject_GetIter, PyType_Check};

use crate::convert::{list, type_error};
use crate::errors::{PyResult, Raised};
use crate::objects::{Code, Function};
use crate::refs::{Borrowed, Owned};
use crate::state::State;

use walk::Addresses;
#[cfg(not(Py_3_12))]
use walk::{filter_list, gc_call};

/// The items of an iterable, each checked by `check` (a `TypeError` with `message` if not).
///
/// # Safety
/// GIL held.
unsafe fn items(
    iterable: Borrowed<'_>,
    check: impl Fn(Borrowed<'_>) -> bool,
    message: &str,
) -> PyResult<Vec<Owned>> {
    let mut keep = Vec::new();
    // SAFETY: the iteration protocol on a live object; each item is a new reference.
    unsafe {
        let iter = Owned::from_new(PyObject_GetIter(iterable.as_ptr()))?;
        while let Some(item) = Owned::from_new_opt(PyIter_Next(iter.as_ptr())) {
            if !check(item.borrow()) {
                return Err(type_error(message));
            }
            keep.push(item);
        }
        if !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
    }
    Ok(keep)
}

/// Every live function whose `__code__` is one of `codes` (any iterable of code objects), as
/// a new list. On 3.12+ from the index of `state`'s interpreter (a heap walk only for code
/// objects it was never asked about), elsewhere from one pass over the heap.
///
/// # Safety
/// GIL held.
pub unsafe fn functions_using(state: &State, codes: Borrowed<'_>) -> PyResult<Owned> {
    // Strong references, so the addresses looked for stay valid for the whole search.
    // SAFETY: GIL held (forwarded).
    let keep = unsafe {
        items(
            codes,
            |item| Code::cast(item).is_some(),
            "functions_using() takes an iterable of code objects",
        )?
    };
    if keep.is_empty() {
        return list(Vec::new());
    }
    #[cfg(Py_3_12)]
    // SAFETY: GIL held (forwarded); `keep` holds code objects.
    if let Some(found) = unsafe { index::functions_using(state, &keep)? } {
        return list(found);
    }
    #[cfg(not(Py_3_12))]
    let _ = state;
    // SAFETY: GIL held (forwarded); `keep` holds code objects.
    let found = unsafe { walk_for_functions(&keep)? };
    drop(keep);
    list(found)
}

/// The live functions whose code is one of `codes`, by one pass over the heap.
///
/// # Safety
/// GIL held; `codes` are code objects.
pub unsafe fn walk_for_functions(codes: &[Owned]) -> PyResult<Vec<Owned>> {
    let wanted = Addresses::new(codes.iter().map(|c| c.as_ptr() as usize).collect());
    let mut uses_wanted_code = |obj: *mut PyObject| {
        // SAFETY: `obj` is alive while the collector (or the list holding it) shows it to us.
        let obj = unsafe { Borrowed::from_ptr(obj) }.expect("live");
        Function::cast(obj).is_some_and(|f| wanted.contains(f.code_address()))
    };
    #[cfg(not(Py_3_12))]
    if codes.len() <= REFERRERS_AT_MOST {
        // SAFETY: GIL held; a tuple of the codes, then gc.get_referrers(*codes): a new list of
        // the tracked objects whose traversal reaches one of them (every function reports its
        // code object), filtered exactly as the full walk would.
        unsafe {
            let args = Owned::from_new(pyo3_ffi::PyTuple_New(codes.len() as isize))?;
            for (i, code) in codes.iter().enumerate() {
                pyo3_ffi::PyTuple_SET_ITEM(args.as_ptr(), i as isize, code.clone().into_raw());
            }
            let referrers = gc_call(c"get_referrers", Some(&args))?;
            let mut found = Vec::new();
            filter_list(&referrers, &mut uses_wanted_code, &mut found);
            return Ok(found);
        }
    }
    // SAFETY: GIL held (forwarded); the predicate reads a type and a pointer only.
    unsafe { collect(&mut uses_wanted_code) }
}

/// Up to how many code objects `gc.get_referrers` is used (before 3.12): it compares every
/// reference of every object with each of them, so past a few the full list is faster.
#[cfg(not(Py_3_12))]
const REFERRERS_AT_MOST: usize = 4;

/// Every live object whose type is exactly one of `types` (an iterable of types), as a new
/// list: one pass over the heap, comparing type pointers only, so no code of the program runs
/// (no `__class__` property is read, no `__eq__` or `__hash__` called). Objects the collector
/// does not track (instances of classes without a `__dict__` or references) are not found.
///
/// # Safety
/// GIL held.
pub unsafe fn instances_of(types: Borrowed<'_>) -> PyResult<Owned> {
    // SAFETY: a live object; PyType_Check reads its type's flags only.
    let is_type = |item: Borrowed<'_>| unsafe { PyType_Check(item.as_ptr()) } != 0;
    // SAFETY: GIL held (forwarded).
    let keep = unsafe { items(types, is_type, "instances_of() takes an iterable of types")? };
    if keep.is_empty() {
        return list(Vec::new());
    }
    let wanted = Addresses::new(keep.iter().map(|t| t.as_ptr() as usize).collect());
    let mut of_wanted_type = |obj: *mut PyObject| {
        // SAFETY: `obj` is alive while the collector (or the list holding it) shows it to us;
        // its type pointer is read, nothing else.
        wanted.contains(unsafe { Py_TYPE(obj) } as usize)
    };
    // SAFETY: GIL held (forwarded); the predicate reads a pointer only.
    let found = unsafe { collect(&mut of_wanted_type)? };
    drop(keep);
    list(found)
}
