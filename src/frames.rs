//! The frames that borrow a dict as their globals or builtins (3.11+), for `patch::keepalive`.
//!
//! Where CPython keeps the frames of running or resumable Python code, and how each is reached
//! through public API:
//! - on a thread's stack: `sys._current_frames()` gives the top frame of every thread of the
//!   interpreter (CPython holds its lock of the thread list while it collects them), and
//!   `PyFrame_GetBack` each frame below;
//! - suspended in a generator, coroutine or async generator: `gi_frame`, `cr_frame`,
//!   `ag_frame` of each such object on the GC heap (`heap::collect`);
//! - kept by a frame object after the frame returned (a traceback's `tb_frame`, a saved
//!   `f_back`): each frame object on the GC heap.
//!
//! From each frame found, the chain of its callers is followed as well: frames parked by a
//! third-party stack switcher are reachable that way (greenlet keeps a frame object for the top
//! of each suspended greenlet).
//!
//! Reaching a frame makes CPython create its frame object if it had none, and reading
//! `gi_frame` and friends raises an `object.__getattr__` audit event: this is done while a patch
//! is prepared, when nothing has changed yet, so a hook that refuses only refuses the patch.

use std::collections::HashSet;

use pyo3_ffi::{
    Py_TYPE, PyAsyncGen_Type, PyCoro_Type, PyDict_Values, PyFrame_GetBack, PyFrame_GetCode,
    PyFrame_Type, PyFrameObject, PyGen_Type, PyList_GET_ITEM, PyList_GET_SIZE, PyObject,
    PyObject_CallNoArgs, PyObject_GetAttrString, PySys_GetObject, PyTypeObject,
};

use crate::abi::ffi;
use crate::convert::is_none;
use crate::errors::PyResult;
use crate::heap;
use crate::refs::{Borrowed, Owned};

/// A code object run by frames that borrow some of the dicts asked about.
pub struct Borrower {
    /// The code object those frames run (a frame owns it).
    pub code: Owned,
    /// Which of the dicts (indices into the slice given to [`borrowing`]) they borrow.
    pub dicts: Vec<usize>,
}

/// Every code object run by a frame whose globals or builtins is one of `dicts`.
///
/// # Safety
/// GIL held.
pub unsafe fn borrowing(dicts: &[Borrowed<'_>]) -> PyResult<Vec<Borrower>> {
    let mut search = Search {
        dicts,
        seen: HashSet::new(),
        found: Vec::new(),
    };
    // SAFETY: GIL held (forwarded) for every step.
    unsafe {
        for top in thread_tops()? {
            search.walk(top)?;
        }
        for resumable in heap_frames()? {
            search.walk(resumable)?;
        }
    }
    Ok(search.found)
}

struct Search<'a, 'b> {
    dicts: &'a [Borrowed<'b>],
    /// Frame objects already looked at (by address; each is kept alive by a reference held
    /// during its walk, and a walk that reaches a frame seen before stops there).
    seen: HashSet<usize>,
    found: Vec<Borrower>,
}

impl Search<'_, '_> {
    /// Looks at `frame` and the frames below it.
    ///
    /// # Safety
    /// GIL held; `frame` is a frame object.
    unsafe fn walk(&mut self, frame: Owned) -> PyResult<()> {
        let mut current = Some(frame);
        while let Some(frame) = current {
            if !self.seen.insert(frame.as_ptr() as usize) {
                break;
            }
            // SAFETY: `frame` is a frame object: the walk starts from one (this function's
            // contract) and `PyFrame_GetBack` returns frame objects; the GIL is held.
            unsafe { self.look_at(&frame)? };
            // SAFETY: a live frame object; returns a new reference to the caller's frame object
            // (made if needed) or NULL, without an exception, at the bottom.
            current = unsafe { Owned::from_new_opt(PyFrame_GetBack(frame.as_ptr().cast()).cast()) };
        }
        Ok(())
    }

    /// Records `frame`'s code if it borrows one of the dicts.
    ///
    /// # Safety
    /// GIL held; `frame` is a frame object.
    unsafe fn look_at(&mut self, frame: &Owned) -> PyResult<()> {
        let api = ffi::api();
        let (get_globals, get_builtins) = (
            api.frame_get_globals.expect("resolved on 3.11+"),
            api.frame_get_builtins.expect("resolved on 3.11+"),
        );
        let f = frame.as_ptr().cast::<PyFrameObject>();
        // SAFETY: both getters return a new reference (None for a frame without one); they are
        // compared by address only.
        let (globals, builtins) = unsafe {
            (
                Owned::from_new(get_globals(f))?,
                Owned::from_new(get_builtins(f))?,
            )
        };
        let borrowed: Vec<usize> = (0..self.dicts.len())
            .filter(|&i| {
                let dict = self.dicts[i];
                globals.borrow().is(dict) || builtins.borrow().is(dict)
            })
            .collect();
        if borrowed.is_empty() {
            return Ok(());
        }
        // SAFETY: PyFrame_GetCode returns a new reference to the frame's code object.
        let code = unsafe { Owned::from_new(PyFrame_GetCode(f).cast())? };
        match self
            .found
            .iter_mut()
            .find(|b| b.code.borrow().is(code.borrow()))
        {
            Some(known) => {
                for i in borrowed {
                    if !known.dicts.contains(&i) {
                        known.dicts.push(i);
                    }
                }
            }
            None => self.found.push(Borrower {
                code,
                dicts: borrowed,
            }),
        }
        Ok(())
    }
}

/// The top frame of every thread of this interpreter.
///
/// # Safety
/// GIL held.
unsafe fn thread_tops() -> PyResult<Vec<Owned>> {
    // SAFETY: PySys_GetObject returns a borrowed reference (or NULL, without an exception);
    // calling it returns a new dict of frame objects, which we keep while we read it.
    unsafe {
        let current_frames = PySys_GetObject(c"_current_frames".as_ptr());
        if current_frames.is_null() {
            return Ok(Vec::new());
        }
        let by_thread = Owned::from_new(PyObject_CallNoArgs(current_frames))?;
        let frames = Owned::from_new(PyDict_Values(by_thread.as_ptr()))?;
        Ok((0..PyList_GET_SIZE(frames.as_ptr()))
            .filter_map(|i| Borrowed::from_ptr(PyList_GET_ITEM(frames.as_ptr(), i)))
            .map(Borrowed::to_owned)
            .collect())
    }
}

/// The frame objects on the GC heap, and the frames of the generators, coroutines and async
/// generators there (those that have not finished).
///
/// # Safety
/// GIL held.
unsafe fn heap_frames() -> PyResult<Vec<Owned>> {
    let is = |obj: *mut PyObject, t: *mut PyTypeObject| {
        // SAFETY: `obj` is a live object shown by the collector; reading its type only.
        core::ptr::eq(unsafe { Py_TYPE(obj) }, t)
    };
    let mut frame_holder = |obj: *mut PyObject| {
        is(obj, &raw mut PyFrame_Type)
            || is(obj, &raw mut PyGen_Type)
            || is(obj, &raw mut PyCoro_Type)
            || is(obj, &raw mut PyAsyncGen_Type)
    };
    // SAFETY: GIL held; the predicate reads types only.
    let holders = unsafe { heap::collect(&mut frame_holder)? };
    let mut frames = Vec::with_capacity(holders.len());
    for holder in holders {
        let obj = holder.as_ptr();
        let attribute = if is(obj, &raw mut PyFrame_Type) {
            frames.push(holder);
            continue;
        } else if is(obj, &raw mut PyGen_Type) {
            c"gi_frame"
        } else if is(obj, &raw mut PyCoro_Type) {
            c"cr_frame"
        } else {
            c"ag_frame"
        };
        // SAFETY: a live object; returns a new reference (None once it has finished) or NULL
        // with an exception set (an audit hook refusing).
        let frame = unsafe { Owned::from_new(PyObject_GetAttrString(obj, attribute.as_ptr())) }?;
        if !is_none(frame.borrow()) {
            frames.push(frame);
        }
    }
    Ok(frames)
}
