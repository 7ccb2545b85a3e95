//! `mighty_patcher`: the native core of a restart-less hot code reloader for CPython.
//!
//! This file holds the module's entry point only. The crate is a ladder (`tools/import_graph.py`
//! prints it and fails on a cycle): `errors` at the bottom, then handles and conversions
//! (`refs`, `convert`, `objects`), the per-version facts (`abi`), the state (`state`), the
//! operations (`patch`, `heap`, `frames`, `reloading`, `callbacks`, `watch`), their entry points
//! (`methods`, `capi`, `selftest`), and `module` at the top, which wires them together.

pub mod abi;
mod callbacks;
mod capi;
mod convert;
mod errors;
#[cfg(Py_3_11)]
mod frames;
mod heap;
mod methods;
mod module;
mod objects;
mod patch;
mod refs;
mod reloading;
mod selftest;
mod state;
mod watch;

use core::ptr;

use pyo3_ffi::{PyModuleDef_Init, PyObject};

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
    // SAFETY: the definition is a static that lives for the whole process; PyModuleDef_Init
    // only initialises its header and returns it. GIL held (forwarded).
    unsafe { PyModuleDef_Init(module::definition()) }
}
