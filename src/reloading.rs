//! "A reload is in progress": a nestable per-thread depth, kept in the module state.
//!
//! The reloader marks the thread that applies a reload (`with reloading(): ...`); code that
//! runs during it — a re-run module statement, a hook — sees `currently_reloading()` true.
//! Other threads, which keep running the program, see false: a module they import for the
//! first time meanwhile runs its "first import only" blocks as usual.

use core::cell::RefCell;
use core::ffi::c_ulong;
use core::ptr;

use pyo3_ffi::{
    METH_NOARGS, METH_VARARGS, Py_False, Py_TPFLAGS_DEFAULT, Py_TYPE, Py_tp_doc, Py_tp_methods,
    PyMethodDef, PyMethodDefPointer, PyObject, PyThread_get_thread_ident, PyType_GenericAlloc,
    PyType_GetModule, PyType_Slot, PyType_Spec,
};

use crate::errors::PyResult;
use crate::refs::{Borrowed, Owned};
use crate::state::{self, State};

/// Reload depth per thread identifier; threads at depth 0 are not listed.
#[derive(Default)]
pub struct Depths(Vec<(c_ulong, u32)>);

impl Depths {
    pub fn of(&self, thread: c_ulong) -> u32 {
        self.0
            .iter()
            .find(|(t, _)| *t == thread)
            .map_or(0, |(_, d)| *d)
    }

    pub fn enter(&mut self, thread: c_ulong) {
        match self.0.iter_mut().find(|(t, _)| *t == thread) {
            Some((_, depth)) => *depth += 1,
            None => self.0.push((thread, 1)),
        }
    }

    /// Leaves one level; an unmatched exit is ignored rather than going negative.
    pub fn exit(&mut self, thread: c_ulong) {
        if let Some(i) = self.0.iter().position(|(t, _)| *t == thread) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.swap_remove(i);
            }
        }
    }
}

fn current_thread() -> c_ulong {
    // SAFETY: PyThread_get_thread_ident has no preconditions.
    unsafe { PyThread_get_thread_ident() }
}

/// The depth table, as a part of the module state (see `state`): installed by `module` when
/// the module is executed, dropped with it.
pub fn new_part() -> Box<dyn core::any::Any> {
    Box::new(RefCell::new(Depths::default()))
}

fn depths(state: &State) -> &RefCell<Depths> {
    state
        .part::<RefCell<Depths>>()
        .expect("module exec installs the depth table")
}

/// True while the calling thread is inside a reload.
pub fn currently_reloading(state: &State) -> bool {
    depths(state).borrow().of(current_thread()) > 0
}

pub fn enter(state: &State) {
    depths(state).borrow_mut().enter(current_thread());
}

pub fn exit(state: &State) {
    depths(state).borrow_mut().exit(current_thread());
}

/// A new `Reloading` context manager.
///
/// # Safety
/// GIL held; `state` is this module's state.
pub unsafe fn new_context(state: &State) -> PyResult<Owned> {
    // SAFETY: `reloading_type` is our heap type (a strong reference in the state, set by
    // exec); GenericAlloc returns a new reference or NULL with an exception set.
    unsafe { Owned::from_new(PyType_GenericAlloc(state.reloading_type.get().cast(), 0)) }
}

/// The state of the module that created `obj`'s type (a `Reloading` instance).
///
/// # Safety
/// `obj` is an instance of the `Reloading` type, alive for `'a`.
unsafe fn state_of_instance<'a>(obj: *mut PyObject) -> &'a State {
    // SAFETY: the type was made by PyType_FromModuleAndSpec with our module, which it keeps
    // alive as long as the instance (which keeps its type) lives; PyType_GetModule returns
    // that module (borrowed).
    unsafe { state::of(PyType_GetModule(Py_TYPE(obj))) }.expect("our module has a state")
}

unsafe extern "C" fn context_enter(slf: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: CPython calls this method with `slf` an instance of our type, GIL held.
    unsafe {
        enter(state_of_instance(slf));
        // `__enter__` returns the context manager itself: a new reference to borrowed `slf`.
        Borrowed::from_ptr(slf).map_or(ptr::null_mut(), |s| s.to_owned().into_raw())
    }
}

unsafe extern "C" fn context_exit(slf: *mut PyObject, _args: *mut PyObject) -> *mut PyObject {
    // SAFETY: as `context_enter`; Py_False is immortal or statically allocated, and we return
    // a new reference to it.
    unsafe {
        exit(state_of_instance(slf));
        let no = Py_False();
        pyo3_ffi::Py_INCREF(no);
        no
    }
}

static mut METHODS: [PyMethodDef; 3] = [
    PyMethodDef {
        ml_name: c"__enter__".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: context_enter,
        },
        ml_flags: METH_NOARGS,
        ml_doc: c"Mark the calling thread as reloading (one level deeper).".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"__exit__".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: context_exit,
        },
        ml_flags: METH_VARARGS,
        ml_doc: c"Leave one level; exceptions propagate.".as_ptr(),
    },
    // Sentinel: a zeroed entry ends the table.
    PyMethodDef::zeroed(),
];

static mut SLOTS: [PyType_Slot; 3] = [
    PyType_Slot {
        slot: Py_tp_methods,
        pfunc: (&raw mut METHODS).cast(),
    },
    PyType_Slot {
        slot: Py_tp_doc,
        pfunc: c"Context manager: while inside, currently_reloading() is true in this thread."
            .as_ptr()
            .cast_mut()
            .cast(),
    },
    // Sentinel: slot 0 ends the table.
    PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    },
];

static mut SPEC: PyType_Spec = PyType_Spec {
    name: c"mighty_patcher.Reloading".as_ptr(),
    basicsize: 0,
    itemsize: 0,
    flags: Py_TPFLAGS_DEFAULT as _,
    slots: (&raw mut SLOTS).cast(),
};

/// The spec of the `Reloading` type, which `state` creates for the module.
pub fn spec() -> *mut PyType_Spec {
    &raw mut SPEC
}

#[cfg(test)]
mod tests {
    use super::Depths;

    #[test]
    fn depth_nests_per_thread() {
        let mut depths = Depths::default();
        depths.enter(1);
        depths.enter(1);
        depths.enter(2);
        assert_eq!((depths.of(1), depths.of(2), depths.of(3)), (2, 1, 0));
        depths.exit(1);
        assert_eq!(depths.of(1), 1);
        depths.exit(1);
        depths.exit(1);
        assert_eq!(depths.of(1), 0);
        assert_eq!(depths.of(2), 1);
    }
}
