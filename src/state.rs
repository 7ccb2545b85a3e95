//! The module's state (multi-phase init): exception types, the `Reloading` type, the code
//! extra index that keeps old globals alive, and the per-thread reload depths.

use core::ffi::{c_int, c_void};
use core::ptr;

use pyo3_ffi::{
    Py_CLEAR, PyErr_NewExceptionWithDoc, PyExc_Exception, PyModule_AddObjectRef, PyModule_GetState,
    PyObject, PyType_FromModuleAndSpec, PyType_Spec, PyUnicode_FromString, visitproc,
};

use crate::errors::{PyResult, Raised};
use crate::patch::keepalive;
use crate::refs::Owned;
use crate::reloading::{self, Depths};
use crate::{abi, callbacks, capi, watch};

/// Creates a heap type from a static `spec` for `module` (the type keeps the module alive, and
/// its methods find the module's state through it).
///
/// # Safety
/// GIL held, during module exec; `spec` and its tables are statics, which CPython may read
/// after this returns.
unsafe fn new_type(module: *mut PyObject, spec: *mut PyType_Spec) -> PyResult<Owned> {
    // SAFETY: per this function's contract; returns a new reference.
    unsafe { Owned::from_new(PyType_FromModuleAndSpec(module, spec, ptr::null_mut())) }
}

/// Lives in the module object (`m_size`); CPython zero-fills it before `exec` runs.
#[repr(C)]
pub struct State {
    /// `PatchError`: a patch could not be applied; nothing was changed. Strong reference.
    pub patch_error: *mut PyObject,
    /// `NeedsRestart(PatchError)`: the change cannot be made in place. Strong reference.
    pub needs_restart: *mut PyObject,
    /// The `Reloading` context manager type. Strong reference.
    pub reloading_type: *mut PyObject,
    /// Index of our slot in code objects' extra data (see `patch::keepalive`); -1 if none.
    pub code_extra_index: isize,
    /// Reload depth per thread, owned (`Box::into_raw`); freed by `free`.
    pub depths: *mut Depths,
    /// Reload callbacks (`callbacks`), owned (`Box::into_raw`): its Python callables are
    /// visited by `traverse` and dropped by `clear`; the box is freed by `free`.
    pub callbacks: *mut callbacks::Registry,
    /// `WatchError(OSError)`: watching files failed (`watch`). Strong reference.
    pub watch_error: *mut PyObject,
}

/// The state of `module`.
///
/// # Safety
/// `module` is this extension's module object (the `self` of its module-level functions),
/// and `exec` has run on it.
pub unsafe fn of(module: *mut PyObject) -> &'static mut State {
    // SAFETY: the module was created from our PyModuleDef, whose m_size is size_of::<State>(),
    // so its state is a valid, initialised `State` for as long as the module lives; module
    // functions run with the GIL held, which serialises access.
    unsafe { &mut *PyModule_GetState(module).cast::<State>() }
}

/// `Py_mod_exec`: fills the state and the module's attributes.
pub unsafe extern "C" fn exec(module: *mut PyObject) -> c_int {
    // SAFETY: CPython calls exec with the GIL held on a fresh module made from our def.
    match unsafe { try_exec(module) } {
        Ok(()) => 0,
        Err(Raised) => -1,
    }
}

unsafe fn try_exec(module: *mut PyObject) -> PyResult<()> {
    abi::ffi::resolve()?;
    abi::version::init()?;
    // SAFETY: the state was zero-filled by CPython; we store owned references into it, each
    // also added to the module (PyModule_AddObjectRef takes its own reference).
    unsafe {
        let state = of(module);
        state.code_extra_index = -1;
        state.depths = Box::into_raw(Box::default());
        state.callbacks = Box::into_raw(Box::default());

        let patch_error = Owned::from_new(PyErr_NewExceptionWithDoc(
            c"mighty_patcher.PatchError".as_ptr(),
            c"A patch could not be applied; the objects involved were not changed.".as_ptr(),
            PyExc_Exception,
            ptr::null_mut(),
        ))?;
        add(module, c"PatchError", &patch_error)?;
        let needs_restart = Owned::from_new(PyErr_NewExceptionWithDoc(
            c"mighty_patcher.NeedsRestart".as_ptr(),
            c"The change cannot be made in place (a __slots__ layout, for example); restart \
              the program to apply it. Nothing was changed."
                .as_ptr(),
            patch_error.as_ptr(),
            ptr::null_mut(),
        ))?;
        add(module, c"NeedsRestart", &needs_restart)?;
        state.patch_error = patch_error.into_raw();
        state.needs_restart = needs_restart.into_raw();

        let reloading_type = new_type(module, reloading::spec())?;
        add(module, c"Reloading", &reloading_type)?;
        state.reloading_type = reloading_type.into_raw();

        let watch_error = watch::create_error()?;
        add(module, c"WatchError", &watch_error)?;
        state.watch_error = watch_error.into_raw();
        let watcher_type = new_type(module, watch::spec())?;
        add(module, c"Watcher", &watcher_type)?;

        state.code_extra_index = keepalive::request_index()?;

        let version = Owned::from_new(PyUnicode_FromString(c"0.1.0".as_ptr()))?;
        add(module, c"__version__", &version)?;
        let built = std::ffi::CString::new(abi::BUILT_VERSION).expect("no NUL");
        let built = Owned::from_new(PyUnicode_FromString(built.as_ptr()))?;
        add(module, c"BUILT_FOR", &built)?;

        // Last: from here on the C API's entries may use this module's state.
        capi::publish(module)?;
    }
    Ok(())
}

/// # Safety
/// `module` is a module object; the GIL is held.
unsafe fn add(module: *mut PyObject, name: &core::ffi::CStr, value: &Owned) -> PyResult<()> {
    // SAFETY: PyModule_AddObjectRef does not steal; `value` stays owned by the caller.
    if unsafe { PyModule_AddObjectRef(module, name.as_ptr(), value.as_ptr()) } < 0 {
        return Err(Raised);
    }
    Ok(())
}

/// `m_traverse`: the state's strong references to GC-tracked objects.
pub unsafe extern "C" fn traverse(
    module: *mut PyObject,
    visit: visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: called by the GC with the module alive; the state may be NULL if the module was
    // never executed.
    unsafe {
        let state = PyModule_GetState(module).cast::<State>();
        if state.is_null() {
            return 0;
        }
        for field in [
            (*state).patch_error,
            (*state).needs_restart,
            (*state).reloading_type,
            (*state).watch_error,
        ] {
            if !field.is_null() {
                let status = visit(field, arg);
                if status != 0 {
                    return status;
                }
            }
        }
        if !(*state).callbacks.is_null() {
            let status = (*(*state).callbacks).traverse(visit, arg);
            if status != 0 {
                return status;
            }
        }
    }
    0
}

/// `m_clear`: drops the state's references (breaks cycles through the module).
pub unsafe extern "C" fn clear(module: *mut PyObject) -> c_int {
    // The C API's entries must not reach a state being torn down.
    capi::withdraw(module);
    // SAFETY: as `traverse`; Py_CLEAR nulls each field before the decref, and the callables
    // leave the registry before they are dropped.
    unsafe {
        let state = PyModule_GetState(module).cast::<State>();
        if !state.is_null() {
            if !(*state).callbacks.is_null() {
                drop((*(*state).callbacks).take_python());
            }
            Py_CLEAR(&mut (*state).patch_error);
            Py_CLEAR(&mut (*state).needs_restart);
            Py_CLEAR(&mut (*state).reloading_type);
            Py_CLEAR(&mut (*state).watch_error);
        }
    }
    0
}

/// `m_free`: everything `clear` drops, plus the Rust-owned depth table.
pub unsafe extern "C" fn free(module: *mut c_void) {
    // SAFETY: called once when the module is deallocated.
    unsafe {
        let module = module.cast::<PyObject>();
        clear(module);
        let state = PyModule_GetState(module).cast::<State>();
        if !state.is_null() && !(*state).depths.is_null() {
            drop(Box::from_raw((*state).depths));
            (*state).depths = ptr::null_mut();
        }
        if !state.is_null() && !(*state).callbacks.is_null() {
            drop(Box::from_raw((*state).callbacks));
            (*state).callbacks = ptr::null_mut();
        }
    }
}
