//! Old globals and builtins outlive the frames that borrow them.
//!
//! From 3.11 on, an executing frame (`_PyInterpreterFrame`), including the suspended frame of
//! a generator or coroutine, holds its code object and its function strongly but its globals
//! and builtins only *borrowed*, from the function it was started from. When a patch gives a
//! function other globals (a function first made by `exec` in a private namespace, such as a
//! dataclass's `__init__`, is patched from one made in the module), the old dicts may have had
//! no other owner: freeing them would leave those frames pointing at freed memory.
//!
//! Every such frame runs the function's *old code object* and keeps it alive. So the old dicts
//! are attached to the old code object, in a slot of its PEP 523 extra data, and released by
//! CPython when that code object is deallocated — when no frame runs it any more and no other
//! function uses it. On 3.10 frames own their globals, and this is not needed.

use core::ffi::c_void;
use core::ptr;

use crate::abi::ffi;
use crate::errors::{PyResult, Raised};
use crate::refs::{Borrowed, Owned};

/// What one code object keeps alive for the frames that may still run it.
type Kept = Vec<Owned>;

/// `freefunc` for our extra slot: runs when a code object with kept dicts is deallocated.
unsafe extern "C" fn release(kept: *mut c_void) {
    if !kept.is_null() {
        // SAFETY: the pointer was made by `Box::into_raw` in `retain` and is released once,
        // by CPython's code object deallocation, with the GIL held.
        drop(unsafe { Box::from_raw(kept.cast::<Kept>()) });
    }
}

/// Reserves our extra slot (once per module instance).
pub fn request_index() -> PyResult<isize> {
    // SAFETY: called during module exec with the GIL held; `release` matches `freefunc`.
    let index = unsafe { (ffi::api().request_code_extra_index)(release) };
    if index < 0 {
        return Err(Raised);
    }
    Ok(index)
}

/// Keeps `objects` alive until `code` is deallocated.
#[cfg_attr(
    not(Py_3_11),
    allow(dead_code, reason = "3.10 frames own their globals")
)]
///
/// # Safety
/// `code` is a live code object, `index` came from `request_index`; GIL held.
pub unsafe fn retain(index: isize, code: Borrowed<'_>, objects: Vec<Owned>) -> PyResult<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let mut current: *mut c_void = ptr::null_mut();
    // SAFETY: `code` is a live code object; the getter writes the slot's pointer (or NULL).
    if unsafe { (ffi::api().code_get_extra)(code.as_ptr(), index, &mut current) } < 0 {
        return Err(Raised);
    }
    if !current.is_null() {
        // SAFETY: our slot only ever holds a `Box<Kept>` made below.
        unsafe { (*current.cast::<Kept>()).extend(objects) };
        return Ok(());
    }
    let kept = Box::into_raw(Box::new(objects));
    // SAFETY: on success the code object owns `kept` and will pass it to `release`.
    if unsafe { (ffi::api().code_set_extra)(code.as_ptr(), index, kept.cast()) } < 0 {
        // SAFETY: not stored: still ours to free.
        drop(unsafe { Box::from_raw(kept) });
        return Err(Raised);
    }
    Ok(())
}
