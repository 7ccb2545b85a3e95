//! The C API: a versioned table of entry points for other C extensions, published on the
//! module as the capsule `mighty_patcher._C_API` and described for C by
//! `python/mighty_patcher/include/mighty_patcher.h`, whose struct this one mirrors field by
//! field.
//!
//! The rules, once:
//! - Every entry follows CPython's error convention: on failure a Python exception is set and
//!   -1 (or NULL) is returned. Object arguments are borrowed; NULL where an object is required
//!   sets SystemError. Every entry needs the GIL.
//! - Entries call the same operations as the module's Python functions (`methods`), with the
//!   same checks, so the two cannot drift apart.
//! - The table is a static of this shared library, which CPython never unloads: a pointer to
//!   it stays valid for the life of the process, in every interpreter. Appending fields is
//!   backwards compatible; `size` and `api_version` tell a caller what is there.
//! - The entries take no module argument. They serve the calling interpreter's module: the
//!   module instance most recently executed in that interpreter (by interpreter ID, which
//!   CPython never reuses) that is still alive. A module is listed once its `exec` has
//!   succeeded and struck off at the start of its `m_clear` or `m_free`, before its state is
//!   torn down, and an entry takes a strong reference to it for the whole call, so the state
//!   cannot be freed under a running entry. A module whose reference count already dropped to
//!   zero (a weak reference callback running inside its deallocation) is never taken. When no
//!   live module serves the interpreter, an entry raises RuntimeError rather than touching
//!   freed memory: the C extension keeps working once `mighty_patcher` is imported again.

use core::ffi::{c_int, c_ulong, c_void};
use core::ptr;
use std::sync::{Mutex, PoisonError};

use pyo3_ffi::{
    Py_REFCNT, PyCapsule_New, PyExc_RuntimeError, PyExc_SystemError, PyModule_AddObjectRef,
    PyObject,
};

use crate::callbacks::{self, NativeCallback};
use crate::convert::status;
use crate::errors::{PyResult, Raised, raise};
use crate::refs::{Borrowed, Owned};
use crate::{abi, heap, patch, reloading, state};

/// The capsule's name, as `PyCapsule_Import` expects it: the module's import name, a dot, the
/// attribute.
pub const CAPSULE_NAME: &core::ffi::CStr = c"mighty_patcher._C_API";

/// Version of the table's contents; bumped when fields are appended (never reordered).
pub const API_VERSION: c_int = 1;

/// `MightyPatcher_CAPI` in the header: same fields, same order, same C types.
#[repr(C)]
pub struct Table {
    /// `sizeof` the table as this build lays it out.
    pub size: usize,
    pub api_version: c_int,
    /// `PY_VERSION_HEX` of the interpreter the extension was built for.
    pub python_version: c_ulong,
    pub patch_function: unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> c_int,
    pub swap_code: unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> c_int,
    pub patch_class:
        unsafe extern "C" fn(*mut PyObject, *mut PyObject, *mut PyObject, *mut PyObject) -> c_int,
    pub functions_using: unsafe extern "C" fn(*mut PyObject) -> *mut PyObject,
    pub currently_reloading: unsafe extern "C" fn() -> c_int,
    pub enter_reloading: unsafe extern "C" fn() -> c_int,
    pub exit_reloading: unsafe extern "C" fn() -> c_int,
    pub add_reload_callback: unsafe extern "C" fn(Option<NativeCallback>, *mut c_void) -> c_int,
    pub remove_reload_callback: unsafe extern "C" fn(Option<NativeCallback>, *mut c_void) -> c_int,
}

static TABLE: Table = Table {
    size: core::mem::size_of::<Table>(),
    api_version: API_VERSION,
    python_version: abi::BUILT_HEXVERSION as c_ulong,
    patch_function,
    swap_code,
    patch_class,
    functions_using,
    currently_reloading,
    enter_reloading,
    exit_reloading,
    add_reload_callback,
    remove_reload_callback,
};

/// A module serving the C entries of one interpreter.
struct Serving {
    interpreter: i64,
    /// Address of the module object (borrowed: listed only while the module is alive).
    module: usize,
}

/// Modules in order of execution; read and changed with the GIL held (the mutex only makes
/// the static sound in Rust's eyes).
static SERVING: Mutex<Vec<Serving>> = Mutex::new(Vec::new());

fn serving_list() -> std::sync::MutexGuard<'static, Vec<Serving>> {
    SERVING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds the `_C_API` capsule to `module` and lists the module as the one serving its
/// interpreter. The last step of `Py_mod_exec`.
///
/// # Safety
/// `module` is this extension's module, being executed; GIL held.
pub unsafe fn publish(module: *mut PyObject) -> PyResult<()> {
    // SAFETY: the capsule points at a static that lives as long as the process and has no
    // destructor; PyCapsule_New returns a new reference, which PyModule_AddObjectRef does not
    // steal. CAPSULE_NAME is a static C string, as the capsule requires.
    unsafe {
        let capsule = Owned::from_new(PyCapsule_New(
            ptr::from_ref(&TABLE).cast_mut().cast(),
            CAPSULE_NAME.as_ptr(),
            None,
        ))?;
        if PyModule_AddObjectRef(module, c"_C_API".as_ptr(), capsule.as_ptr()) < 0 {
            return Err(Raised);
        }
        let interpreter = abi::interpreter_id()?;
        serving_list().push(Serving {
            interpreter,
            module: module as usize,
        });
    }
    Ok(())
}

/// Strikes `module` off the list; from now on the entries do not use its state.
pub fn withdraw(module: *mut PyObject) {
    serving_list().retain(|s| s.module != module as usize);
}

/// A strong reference to the module serving the calling interpreter.
///
/// # Safety
/// GIL held.
unsafe fn serving_module() -> PyResult<Owned> {
    // SAFETY: GIL held (forwarded).
    let interpreter = unsafe { abi::interpreter_id()? };
    let list = serving_list();
    for entry in list.iter().rev().filter(|s| s.interpreter == interpreter) {
        let module = entry.module as *mut PyObject;
        // SAFETY: a listed module is alive (struck off before its state is torn down); its
        // reference count is 0 only inside its own deallocation, when it must not be revived.
        if unsafe { Py_REFCNT(module) } > 0 {
            // SAFETY: a live object; `to_owned` increfs, with the GIL held.
            return Ok(unsafe { Borrowed::from_ptr(module) }
                .expect("listed modules are not NULL")
                .to_owned());
        }
    }
    drop(list);
    // SAFETY: static exception type.
    Err(raise(
        unsafe { PyExc_RuntimeError },
        "the mighty_patcher C API has no module to serve it in this interpreter (it was \
         never imported here, or it was deallocated); import mighty_patcher again",
    ))
}

/// Runs `operation` with the serving module, which stays alive for the whole call.
///
/// # Safety
/// GIL held.
unsafe fn serve<T>(operation: impl FnOnce(Borrowed<'_>) -> PyResult<T>) -> PyResult<T> {
    // SAFETY: GIL held (forwarded).
    let module = unsafe { serving_module()? };
    let result = operation(module.borrow());
    drop(module);
    result
}

/// A required object argument, borrowed from the caller; NULL sets SystemError.
///
/// # Safety
/// `ptr` is NULL or a live object the caller keeps alive for the call.
unsafe fn required<'a>(ptr: *mut PyObject, entry: &str, name: &str) -> PyResult<Borrowed<'a>> {
    // SAFETY: `ptr` is NULL or an object the C caller lends for the whole call (the C API's
    // rule: object arguments are borrowed).
    unsafe { Borrowed::from_ptr(ptr) }.ok_or_else(|| {
        // SAFETY: static exception type.
        raise(
            unsafe { PyExc_SystemError },
            &format!("mighty_patcher C API: {entry}() got NULL for {name}"),
        )
    })
}

unsafe extern "C" fn patch_function(target: *mut PyObject, source: *mut PyObject) -> c_int {
    // SAFETY: the caller holds the GIL and lends both objects for the call (borrowed).
    status(unsafe {
        serve(|module| {
            let target = required(target, "patch_function", "target")?;
            let source = required(source, "patch_function", "source")?;
            patch::function::patch_function(state::get(module.as_ptr()), target, source)
        })
    })
}

unsafe extern "C" fn swap_code(function: *mut PyObject, code: *mut PyObject) -> c_int {
    // SAFETY: as `patch_function`.
    status(unsafe {
        serve(|module| {
            let function = required(function, "swap_code", "function")?;
            let code = required(code, "swap_code", "code")?;
            patch::function::swap_code(state::get(module.as_ptr()), function, code)
        })
    })
}

unsafe extern "C" fn patch_class(
    old: *mut PyObject,
    new: *mut PyObject,
    update: *mut PyObject,
    remove: *mut PyObject,
) -> c_int {
    // SAFETY: as `patch_function`; `update` and `remove` are NULL or borrowed objects.
    status(unsafe {
        serve(|module| {
            let old = required(old, "patch_class", "old")?;
            let new = required(new, "patch_class", "new")?;
            let filter = patch::class::Filter::from_arguments(
                Borrowed::from_ptr(update),
                Borrowed::from_ptr(remove),
            )?;
            patch::class::patch_class(state::get(module.as_ptr()), old, new, &filter)
        })
    })
}

unsafe extern "C" fn functions_using(codes: *mut PyObject) -> *mut PyObject {
    // SAFETY: as `patch_function`; the list is a new reference handed to the caller.
    let result = unsafe {
        serve(|module| {
            heap::functions_using(
                state::get(module.as_ptr()),
                required(codes, "functions_using", "codes")?,
            )
        })
    };
    result.map_or(ptr::null_mut(), Owned::into_raw)
}

unsafe extern "C" fn currently_reloading() -> c_int {
    // SAFETY: the caller holds the GIL.
    let result =
        unsafe { serve(|module| Ok(reloading::currently_reloading(state::get(module.as_ptr())))) };
    result.map_or(-1, c_int::from)
}

unsafe extern "C" fn enter_reloading() -> c_int {
    // SAFETY: the caller holds the GIL.
    status(unsafe {
        serve(|module| {
            reloading::enter(state::get(module.as_ptr()));
            Ok(())
        })
    })
}

unsafe extern "C" fn exit_reloading() -> c_int {
    // SAFETY: the caller holds the GIL.
    status(unsafe {
        serve(|module| {
            reloading::exit(state::get(module.as_ptr()));
            Ok(())
        })
    })
}

fn required_callback(callback: Option<NativeCallback>, entry: &str) -> PyResult<NativeCallback> {
    callback.ok_or_else(|| {
        // SAFETY: static exception type.
        raise(
            unsafe { PyExc_SystemError },
            &format!("mighty_patcher C API: {entry}() got NULL for callback"),
        )
    })
}

unsafe extern "C" fn add_reload_callback(
    callback: Option<NativeCallback>,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: the caller holds the GIL; `arg` is the caller's and is only passed back to it.
    status(unsafe {
        serve(|module| {
            let callback = required_callback(callback, "add_reload_callback")?;
            callbacks::add_native(module, callback, arg);
            Ok(())
        })
    })
}

unsafe extern "C" fn remove_reload_callback(
    callback: Option<NativeCallback>,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: as `add_reload_callback`.
    status(unsafe {
        serve(|module| {
            let callback = required_callback(callback, "remove_reload_callback")?;
            callbacks::remove_native(module, callback, arg)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn the_table_is_three_header_fields_then_nine_entries() {
        let word = core::mem::size_of::<usize>();
        assert_eq!(core::mem::size_of::<Table>(), 3 * word + 9 * word);
        assert_eq!(core::mem::offset_of!(Table, patch_function), 3 * word);
        assert_eq!(
            core::mem::offset_of!(Table, remove_reload_callback),
            11 * word
        );
    }
}
