//! Old globals and builtins outlive the frames that borrow them.
//!
//! **The invariant (3.11+): a dict that a frame borrows as its globals or builtins stays alive
//! for as long as that frame can run.** Everything that replaces a function's globals or
//! builtins keeps it through this file; `abi-notes/` point here.
//!
//! From 3.11 on a frame (`_PyInterpreterFrame`) holds its code object and its function
//! strongly, but its globals and builtins only *borrowed*, from the function it was started
//! from; CPython keeps them alive through that function. A frame may run long after it
//! started: on a thread's stack, suspended in a generator, coroutine or async generator, or
//! kept by a frame object once it returned (a traceback's `tb_frame`). Only a patch changes a
//! function's globals or builtins (one first made by `exec` in a namespace of its own, as
//! `namedtuple`'s methods are, patched from one made in a module), and the old dicts may have
//! had no other owner: without more, freeing them would leave those frames reading freed
//! memory. And a frame started from a function may run any code object the function ever had,
//! not just its current one: a patch that changed only the code, or `func.__code__ = ...`,
//! came in between.
//!
//! So when a patch moves a function off a globals or builtins dict:
//! 1. while nothing has changed yet, every frame that borrows the dict is found
//!    (`frames::borrowing`, which knows where CPython keeps frames), whatever code it runs;
//! 2. when the patch is committed, before anything is stored, the dict is attached to each such
//!    frame's code object, which the frame owns, and to the code the function runs at that
//!    moment (frames made from it after step 1, by an audit hook or a function watcher that
//!    calls it during the patch, run that code). A frame cannot outlive its code object, so the
//!    dict lives as long as any of those frames.
//!
//! The attachment is a slot of the code object's PEP 523 extra data, holding a `Box<Kept>`,
//! which CPython passes to [`release`] when the code object is deallocated. A code object that
//! stays alive for other reasons (another function still runs it) keeps the dicts as long: a
//! bounded cost, never a use after free. If CPython cannot record an attachment (out of
//! memory), the dicts are never released rather than released too early.
//!
//! The slot's index is per interpreter, and CPython has 255 of them, shared with debuggers,
//! profilers and JITs: it is requested once per interpreter ([`index`]), not once per import
//! of the module, and an interpreter that has none left makes the import fail with a
//! `RuntimeError`.
//!
//! On 3.10 frames own their globals and builtins, and nothing is attached.

use core::ffi::c_void;
use core::ptr;
use std::sync::{Mutex, PoisonError};

use pyo3_ffi::{PyErr_Clear, PyExc_RuntimeError};

use crate::abi::{self, ffi};
use crate::errors::{PyResult, raise};
use crate::objects::Code;
use crate::refs::{Borrowed, Owned};

/// What one code object keeps alive for the frames that may still run it.
type Kept = Vec<Owned>;

/// `freefunc` for our extra slot: runs when a code object with kept dicts is deallocated.
unsafe extern "C" fn release(kept: *mut c_void) {
    if !kept.is_null() {
        // SAFETY: the pointer was made by `Box::into_raw` in `keep` and is released once, by
        // CPython's code object deallocation, with the GIL held.
        drop(unsafe { Box::from_raw(kept.cast::<Kept>()) });
    }
}

/// The index each interpreter gave us, by interpreter ID (CPython never reuses an ID).
static INDICES: Mutex<Vec<(i64, isize)>> = Mutex::new(Vec::new());

/// Our extra slot's index in the calling interpreter's code objects, requested from CPython the
/// first time this interpreter asks.
///
/// # Safety
/// GIL held (module exec).
pub unsafe fn index() -> PyResult<isize> {
    // SAFETY: GIL held (forwarded).
    let interpreter = unsafe { abi::interpreter_id()? };
    let mut indices = INDICES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&(_, index)) = indices.iter().find(|(id, _)| *id == interpreter) {
        return Ok(index);
    }
    // SAFETY: GIL held; `release` matches `freefunc`. The function returns -1, without setting
    // an exception, when the interpreter has no index left.
    let index = unsafe { (ffi::api().request_code_extra_index)(release) };
    if index < 0 {
        // SAFETY: a static exception type.
        return Err(raise(
            unsafe { PyExc_RuntimeError },
            "mighty_patcher needs one code-extra index (PEP 523) in this interpreter, and all \
             255 that CPython has are taken (by debuggers, profilers or JITs loaded before it)",
        ));
    }
    indices.push((interpreter, index));
    Ok(index)
}

/// Keeps `dicts` alive until `code` is deallocated. Never fails (see the module documentation).
///
/// # Safety
/// `index` came from [`index`] in this interpreter; GIL held.
pub unsafe fn keep(index: isize, code: Code<'_>, dicts: &[Borrowed<'_>]) {
    if dicts.is_empty() {
        return;
    }
    let code = code.object().as_ptr();
    let mut current: *mut c_void = ptr::null_mut();
    // SAFETY: `code` is a live code object; the getter writes the slot's pointer (NULL if
    // unset) and fails only for an object that is not a code object.
    let read = unsafe { (ffi::api().code_get_extra)(code, index, &mut current) };
    if read == 0 && !current.is_null() {
        // SAFETY: our slot only ever holds a `Box<Kept>` made below, alive until `release`.
        let kept = unsafe { &mut *current.cast::<Kept>() };
        for dict in dicts {
            if !kept.iter().any(|k| k.borrow().is(*dict)) {
                kept.push(Borrowed::to_owned(*dict));
            }
        }
        return;
    }
    let kept: Box<Kept> = Box::new(dicts.iter().map(|d| Borrowed::to_owned(*d)).collect());
    let kept = Box::into_raw(kept);
    // SAFETY: on success the code object owns `kept` and will pass it to `release`.
    if read < 0 || unsafe { (ffi::api().code_set_extra)(code, index, kept.cast()) } < 0 {
        // SAFETY: the failed call set an exception, dropped on purpose: the dicts are kept
        // forever instead (the box is never freed), which is safe, where freeing them is not.
        unsafe { PyErr_Clear() };
    }
}
