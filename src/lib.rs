//! `mighty_patcher`: the native core of a restart-less hot code reloader for CPython.
//!
//! This file holds the module's entry point, definition and method table; everything else
//! lives in files named by role (see `docs/design.md`, "Layout").

pub mod abi;
mod callbacks;
mod capi;
mod errors;
mod heap;
mod methods;
mod patch;
mod refs;
mod reloading;
mod selftest;
mod state;
mod watch;

use core::ptr;

use pyo3_ffi::{
    METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_O, Py_mod_exec, PyMethodDef,
    PyMethodDefPointer, PyModuleDef, PyModuleDef_HEAD_INIT, PyModuleDef_Init, PyModuleDef_Slot,
    PyObject,
};

static mut METHODS: [PyMethodDef; 13] = [
    PyMethodDef {
        ml_name: c"patch_function".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionFast: methods::patch_function,
        },
        ml_flags: METH_FASTCALL,
        ml_doc: c"patch_function(target, source, /)\n--\n\n\
            Make function `target` behave exactly like `source`, in place."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"swap_code".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionFast: methods::swap_code,
        },
        ml_flags: METH_FASTCALL,
        ml_doc: c"swap_code(function, code, /)\n--\n\n\
            Give `function` new code, keeping its closure cells (matched by name)."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"patch_class".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionFastWithKeywords: methods::patch_class,
        },
        ml_flags: METH_FASTCALL | METH_KEYWORDS,
        ml_doc: c"patch_class(old, new, /, *, update=None, remove=None)\n--\n\n\
            Patch class `old` in place so that it behaves like `new`."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"functions_using".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::functions_using,
        },
        ml_flags: METH_O,
        ml_doc: c"functions_using(codes, /)\n--\n\n\
            Every live function whose __code__ is one of `codes`."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"currently_reloading".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::currently_reloading,
        },
        ml_flags: METH_NOARGS,
        ml_doc: c"currently_reloading()\n--\n\n\
            True while the calling thread is applying a reload."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"reloading".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::reloading_context,
        },
        ml_flags: METH_NOARGS,
        ml_doc: c"reloading()\n--\n\n\
            Context manager marking the calling thread as reloading (nestable)."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"specialization_version".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::specialization_version,
        },
        ml_flags: METH_O,
        ml_doc: c"specialization_version(function, /)\n--\n\n\
            The function's func_version (None before 3.11)."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"build_info".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::build_info,
        },
        ml_flags: METH_NOARGS,
        ml_doc: c"build_info()\n--\n\n\
            What the extension was built for and what it runs on."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"selftest".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionFastWithKeywords: methods::run_selftest,
        },
        ml_flags: METH_FASTCALL | METH_KEYWORDS,
        ml_doc: c"selftest(*, verbose=True)\n--\n\n\
            Check this build against the running interpreter; True if all checks pass."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"add_reload_callback".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::add_reload_callback,
        },
        ml_flags: METH_O,
        ml_doc: c"add_reload_callback(callback, /)\n--\n\n\
            Call `callback(report)` after each reload; returns `callback`."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"remove_reload_callback".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::remove_reload_callback,
        },
        ml_flags: METH_O,
        ml_doc: c"remove_reload_callback(callback, /)\n--\n\n\
            Stop calling `callback` after each reload (ValueError if it is not registered)."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"_notify_reloaded".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunction: methods::notify_reloaded,
        },
        ml_flags: METH_O,
        ml_doc: c"_notify_reloaded(report, /)\n--\n\n\
            Call every reload callback with `report` (the reload engine's dict)."
            .as_ptr(),
    },
    // Sentinel: a zeroed entry ends the table.
    PyMethodDef::zeroed(),
];

#[cfg(Py_3_12)]
const SLOT_COUNT: usize = 3;
#[cfg(not(Py_3_12))]
const SLOT_COUNT: usize = 2;

static mut SLOTS: [PyModuleDef_Slot; SLOT_COUNT] = [
    PyModuleDef_Slot {
        slot: Py_mod_exec,
        value: state::exec as *mut _,
    },
    // Several interpreters may import the module; they share one GIL (our statics are
    // read-only after initialisation, but the code has not been audited for a per-interpreter
    // GIL).
    #[cfg(Py_3_12)]
    PyModuleDef_Slot {
        slot: pyo3_ffi::Py_mod_multiple_interpreters,
        value: pyo3_ffi::Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED,
    },
    // Sentinel: slot 0 ends the table.
    PyModuleDef_Slot {
        slot: 0,
        value: ptr::null_mut(),
    },
];

static mut MODULE_DEF: PyModuleDef = PyModuleDef {
    m_base: PyModuleDef_HEAD_INIT,
    m_name: c"mighty_patcher".as_ptr(),
    m_doc: c"Native core of mighty_patcher: in-place patching of live functions and classes."
        .as_ptr(),
    m_size: core::mem::size_of::<state::State>() as isize,
    m_methods: (&raw mut METHODS).cast(),
    m_slots: (&raw mut SLOTS).cast(),
    m_traverse: Some(state::traverse),
    m_clear: Some(state::clear),
    m_free: Some(state::free),
};

/// Entry point. Refuses, with an ImportError, an interpreter other than the one the extension
/// was built for, before anything version-dependent is touched.
///
/// # Safety
/// Called by CPython's import machinery, with the GIL held, once per import.
#[allow(non_snake_case, reason = "must be named PyInit_<module>")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn PyInit_mighty_patcher() -> *mut PyObject {
    if abi::check_interpreter().is_err() {
        return ptr::null_mut();
    }
    // SAFETY: MODULE_DEF and its tables are statics that live for the whole process;
    // PyModuleDef_Init only initialises the definition's header and returns it.
    unsafe { PyModuleDef_Init(&raw mut MODULE_DEF) }
}
