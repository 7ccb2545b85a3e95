//! C API functions that `pyo3-ffi` does not declare, or that only some versions export.
//!
//! Python loads extensions with `RTLD_NOW`: a single undefined symbol makes `dlopen` fail
//! before `PyInit_mighty_patcher` can say anything useful. So the extension links only against
//! symbols every supported CPython (3.10-3.15) exports, and looks up the others at run time,
//! with `dlsym`, when the module is executed — after `PyInit` has checked that the running
//! interpreter is the one we were built for. A missing symbol is then an ImportError naming it.

use core::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use pyo3_ffi::{PyExc_ImportError, PyFrameObject, PyFunctionObject, PyObject, vectorcallfunc};

use crate::errors::{PyResult, raise};

/// `freefunc`: how CPython releases a code object's extra slot.
pub type FreeFunc = unsafe extern "C" fn(*mut c_void);

/// `gcvisitobjects_t`: return 1 to go on, 0 to stop.
pub type GcVisitor = unsafe extern "C" fn(*mut PyObject, *mut c_void) -> c_int;

unsafe extern "C" {
    /// `PySys_Audit` (3.8+): raise an audit event; -1 with an exception if a hook refuses.
    pub fn PySys_Audit(event: *const c_char, format: *const c_char, ...) -> c_int;
}

type SetVectorcall = unsafe extern "C" fn(*mut PyFunctionObject, vectorcallfunc);
/// `PyFunction_WatchCallback` (3.12+): `(event, func, new_value) -> 0 | -1`.
pub type FunctionWatcher =
    unsafe extern "C" fn(c_int, *mut PyFunctionObject, *mut PyObject) -> c_int;
type AddWatcher = unsafe extern "C" fn(FunctionWatcher) -> c_int;
type ClearWatcher = unsafe extern "C" fn(c_int) -> c_int;
/// `PyFrame_GetGlobals` / `PyFrame_GetBuiltins` (3.11+): a new reference.
pub type FrameGetter = unsafe extern "C" fn(*mut PyFrameObject) -> *mut PyObject;
type GcVisitObjects = unsafe extern "C" fn(GcVisitor, *mut c_void);
type RequestIndex = unsafe extern "C" fn(FreeFunc) -> isize;
type GetExtra = unsafe extern "C" fn(*mut PyObject, isize, *mut *mut c_void) -> c_int;
type SetExtra = unsafe extern "C" fn(*mut PyObject, isize, *mut c_void) -> c_int;
/// `PyErr_FormatUnraisable(format, ...)` (3.13+).
pub type FormatUnraisable = unsafe extern "C" fn(*const c_char, ...);
/// `_PyErr_WriteUnraisableMsg(err_msg, obj)` (3.8-3.12): reports "Exception ignored {err_msg}".
pub type WriteUnraisableMsg = unsafe extern "C" fn(*const c_char, *mut PyObject);

/// The version-dependent entry points, resolved once per process.
pub struct Api {
    /// `PyFunction_SetVectorcall` (3.12+).
    pub set_vectorcall: Option<SetVectorcall>,
    /// `PyUnstable_GC_VisitObjects` (3.12+).
    pub gc_visit_objects: Option<GcVisitObjects>,
    /// `PyUnstable_Eval_RequestCodeExtraIndex` (3.12+), `_PyEval_RequestCodeExtraIndex` before.
    pub request_code_extra_index: RequestIndex,
    /// `PyUnstable_Code_GetExtra` (3.12+), `_PyCode_GetExtra` before.
    pub code_get_extra: GetExtra,
    /// `PyUnstable_Code_SetExtra` (3.12+), `_PyCode_SetExtra` before.
    pub code_set_extra: SetExtra,
    /// `PyFunction_AddWatcher` (3.12+).
    pub function_add_watcher: Option<AddWatcher>,
    /// `PyFunction_ClearWatcher` (3.12+).
    pub function_clear_watcher: Option<ClearWatcher>,
    /// `PyFrame_GetGlobals` (3.11+).
    pub frame_get_globals: Option<FrameGetter>,
    /// `PyFrame_GetBuiltins` (3.11+).
    pub frame_get_builtins: Option<FrameGetter>,
    /// `PyErr_FormatUnraisable` (3.13+): an unraisable exception with a message of our own.
    pub format_unraisable: Option<FormatUnraisable>,
    /// `_PyErr_WriteUnraisableMsg` (before 3.13): the same, where it is still exported.
    pub write_unraisable_msg: Option<WriteUnraisableMsg>,
}

static API: OnceLock<Api> = OnceLock::new();

/// The resolved entry points.
///
/// # Panics
/// If called before [`resolve`] succeeded (module exec does it first).
pub fn api() -> &'static Api {
    API.get().expect("abi::ffi::resolve runs in module exec")
}

/// Address of a symbol of the running interpreter, or NULL.
fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT searches the global scope, where the interpreter's
    // symbols are (the python executable, or libpython it depends on); `name` is a C string.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if !found.is_null() {
        return found;
    }
    // An interpreter embedded with RTLD_LOCAL: find the object that defines a symbol we
    // link against, and look in it.
    // SAFETY: dladdr fills `info` for an address inside a loaded object; dlopen with
    // RTLD_NOLOAD only returns a handle to an object already loaded, which we release again.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        let anchor = pyo3_ffi::Py_GetVersion as *const c_void;
        if libc::dladdr(anchor, &mut info) == 0 || info.dli_fname.is_null() {
            return core::ptr::null_mut();
        }
        let handle = libc::dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return core::ptr::null_mut();
        }
        let found = libc::dlsym(handle, name.as_ptr());
        libc::dlclose(handle);
        found
    }
}

fn required(name: &CStr) -> PyResult<*mut c_void> {
    let found = lookup(name);
    if found.is_null() {
        // SAFETY: static exception type.
        return Err(raise(
            unsafe { PyExc_ImportError },
            &format!(
                "this CPython does not export {}, which mighty_patcher needs",
                name.to_string_lossy()
            ),
        ));
    }
    Ok(found)
}

/// Looks the entry points up (once per process).
pub fn resolve() -> PyResult<()> {
    if API.get().is_some() {
        return Ok(());
    }
    // 3.12 renamed the PEP 523 code-extra functions from `_Py*` to `PyUnstable_*`.
    let pick = |modern: &'static CStr, legacy: &'static CStr| {
        if cfg!(Py_3_12) { modern } else { legacy }
    };
    let request = required(pick(
        c"PyUnstable_Eval_RequestCodeExtraIndex",
        c"_PyEval_RequestCodeExtraIndex",
    ))?;
    let get = required(pick(c"PyUnstable_Code_GetExtra", c"_PyCode_GetExtra"))?;
    let set = required(pick(c"PyUnstable_Code_SetExtra", c"_PyCode_SetExtra"))?;
    let (set_vectorcall, gc_visit_objects, add_watcher, clear_watcher) = if cfg!(Py_3_12) {
        (
            required(c"PyFunction_SetVectorcall")?,
            required(c"PyUnstable_GC_VisitObjects")?,
            required(c"PyFunction_AddWatcher")?,
            required(c"PyFunction_ClearWatcher")?,
        )
    } else {
        let none = core::ptr::null_mut();
        (none, none, none, none)
    };
    let (frame_get_globals, frame_get_builtins) = if cfg!(Py_3_11) {
        (
            required(c"PyFrame_GetGlobals")?,
            required(c"PyFrame_GetBuiltins")?,
        )
    } else {
        (core::ptr::null_mut(), core::ptr::null_mut())
    };
    // Optional: without them a failed reload callback is reported with a generic message.
    let format_unraisable = lookup(c"PyErr_FormatUnraisable");
    let write_unraisable_msg = lookup(c"_PyErr_WriteUnraisableMsg");
    // SAFETY: each address is the named function of the running interpreter, whose C
    // signature is the one declared in `Api` (CPython's headers for the version we were built
    // for, which is the running one: checked by PyInit before module exec runs). A NULL
    // address becomes `None`.
    let api = unsafe {
        Api {
            set_vectorcall: core::mem::transmute::<*mut c_void, Option<SetVectorcall>>(
                set_vectorcall,
            ),
            gc_visit_objects: core::mem::transmute::<*mut c_void, Option<GcVisitObjects>>(
                gc_visit_objects,
            ),
            request_code_extra_index: core::mem::transmute::<*mut c_void, RequestIndex>(request),
            code_get_extra: core::mem::transmute::<*mut c_void, GetExtra>(get),
            code_set_extra: core::mem::transmute::<*mut c_void, SetExtra>(set),
            function_add_watcher: core::mem::transmute::<*mut c_void, Option<AddWatcher>>(
                add_watcher,
            ),
            function_clear_watcher: core::mem::transmute::<*mut c_void, Option<ClearWatcher>>(
                clear_watcher,
            ),
            frame_get_globals: core::mem::transmute::<*mut c_void, Option<FrameGetter>>(
                frame_get_globals,
            ),
            frame_get_builtins: core::mem::transmute::<*mut c_void, Option<FrameGetter>>(
                frame_get_builtins,
            ),
            format_unraisable: core::mem::transmute::<*mut c_void, Option<FormatUnraisable>>(
                format_unraisable,
            ),
            write_unraisable_msg: core::mem::transmute::<*mut c_void, Option<WriteUnraisableMsg>>(
                write_unraisable_msg,
            ),
        }
    };
    let _ = API.set(api);
    Ok(())
}
