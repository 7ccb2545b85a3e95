//! Reload callbacks: code run after each reload, with the reload's report.
//!
//! The reload engine (Python) calls `_notify_reloaded(report)` once a reload is applied (or
//! refused); `report` is a dict (`module`, `file`, `ok`, `patched`, `added`, `deleted`,
//! `rerun`, `needs_restart`, `seconds`, `error`). Every registered callback is then called with
//! it, in registration order. A callback is either a C function `int (*)(PyObject *report,
//! void *arg)`, registered through the C API (`capi`), or a Python callable, registered with
//! `add_reload_callback`. Both kinds live in one list in the module state.
//!
//! The rules the list keeps:
//! - A callback that fails (raises, or returns -1 with an exception set) is reported with
//!   `sys.unraisablehook` and does not stop the others.
//! - Callbacks run Python code, which may add or remove callbacks. A round calls the callbacks
//!   registered when it started, each only if it is still registered when its turn comes: a C
//!   extension may free a callback's `arg` as soon as it has unregistered it.
//! - Python callables are strong references, visited by the module's `m_traverse` and dropped
//!   by its `m_clear`; C callbacks are a plain function pointer and `void *arg`, which the
//!   registry neither owns nor reads.

use core::cell::RefCell;
use core::ffi::{c_int, c_void};
use std::ffi::CString;

use pyo3_ffi::{
    Py_EQ, PyCallable_Check, PyDict_Check, PyErr_Occurred, PyErr_WriteUnraisable,
    PyExc_SystemError, PyExc_TypeError, PyExc_ValueError, PyObject, PyObject_CallFunctionObjArgs,
    PyObject_RichCompareBool, visitproc,
};

use crate::abi::ffi;
use crate::errors::{PyResult, Raised, raise};
use crate::refs::{Borrowed, Owned};
use crate::state::{self, State};

/// A C reload callback: 0 on success, -1 with an exception set on failure. `report` is
/// borrowed for the call.
pub type NativeCallback = unsafe extern "C" fn(report: *mut PyObject, arg: *mut c_void) -> c_int;

enum Callback {
    Native {
        function: NativeCallback,
        arg: *mut c_void,
    },
    Python(Owned),
}

struct Entry {
    /// Unique within the registry: how a round finds an entry again after running Python code.
    id: u64,
    callback: Callback,
}

/// The registered callbacks, in registration order: a part of the module state
/// ([`new_part`]), dropped with the module.
#[derive(Default)]
pub struct Registry {
    next_id: u64,
    entries: Vec<Entry>,
}

impl Registry {
    fn push(&mut self, callback: Callback) {
        self.next_id += 1;
        self.entries.push(Entry {
            id: self.next_id,
            callback,
        });
    }

    /// Adds a C callback; the same pair may be registered more than once.
    pub fn add_native(&mut self, function: NativeCallback, arg: *mut c_void) {
        self.push(Callback::Native { function, arg });
    }

    /// Removes the earliest registration of this (function, arg) pair; false if there is none.
    pub fn remove_native(&mut self, function: NativeCallback, arg: *mut c_void) -> bool {
        let found = self.entries.iter().position(|e| match e.callback {
            Callback::Native {
                function: f,
                arg: a,
            } => core::ptr::fn_addr_eq(f, function) && a == arg,
            Callback::Python(_) => false,
        });
        found.map(|i| self.entries.remove(i)).is_some()
    }

    fn ids(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.id).collect()
    }

    /// The entry `id` if it is still registered, as something that outlives a change of the
    /// list (a Python callable gets a strong reference of its own).
    fn get(&self, id: u64) -> Option<Callback> {
        let entry = self.entries.iter().find(|e| e.id == id)?;
        Some(match &entry.callback {
            Callback::Native { function, arg } => Callback::Native {
                function: *function,
                arg: *arg,
            },
            Callback::Python(callable) => Callback::Python(callable.clone()),
        })
    }

    /// The Python callables, for `m_traverse`.
    ///
    /// # Safety
    /// Called by the garbage collector's traversal, with `visit` and `arg` as it gave them.
    pub unsafe fn traverse(&self, visit: visitproc, arg: *mut c_void) -> c_int {
        for entry in &self.entries {
            if let Callback::Python(callable) = &entry.callback {
                // SAFETY: `callable` is a strong reference the registry owns.
                let status = unsafe { visit(callable.as_ptr(), arg) };
                if status != 0 {
                    return status;
                }
            }
        }
        0
    }

    /// Takes the Python callables out of the list (for `m_clear`); the caller drops them
    /// after the list is consistent again, since a decref may run Python code.
    pub fn take_python(&mut self) -> Vec<Owned> {
        let (python, native): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| matches!(e.callback, Callback::Python(_)));
        self.entries = native;
        python
            .into_iter()
            .filter_map(|e| match e.callback {
                Callback::Python(callable) => Some(callable),
                Callback::Native { .. } => None,
            })
            .collect()
    }
}

/// The registry, as a part of the module state (see `state`): installed by `module` when the
/// module is executed, dropped with it.
pub fn new_part() -> Box<dyn core::any::Any> {
    Box::new(RefCell::new(Registry::default()))
}

/// The registry of `module`. Borrowed (`borrow`/`borrow_mut`) only for a step that runs no
/// Python code, so a callback that calls back into the module never finds it borrowed.
///
/// # Safety
/// `module` is this extension's module, alive and executed; GIL held.
unsafe fn registry<'a>(module: Borrowed<'a>) -> &'a RefCell<Registry> {
    // SAFETY: the module is ours (made from our definition) and alive for `'a`.
    unsafe { state::of(module.as_ptr()) }
        .and_then(State::part::<RefCell<Registry>>)
        .expect("module exec installs the registry")
}

/// The registry of a state, for the module's `m_traverse` and `m_clear` (`None` before `exec`).
pub fn of_state(state: &State) -> Option<&RefCell<Registry>> {
    state.part::<RefCell<Registry>>()
}

/// Registers a C callback.
///
/// # Safety
/// `module` is this extension's module, alive and executed; GIL held.
pub unsafe fn add_native(module: Borrowed<'_>, function: NativeCallback, arg: *mut c_void) {
    // SAFETY: `module` is our executed module, alive for the call (the contract of every
    // function here, which `registry` needs).
    unsafe { registry(module) }
        .borrow_mut()
        .add_native(function, arg);
}

/// Unregisters the earliest registration of a C callback with this `arg`; raises ValueError if
/// there is none.
///
/// # Safety
/// `module` is this extension's module, alive and executed; GIL held.
pub unsafe fn remove_native(
    module: Borrowed<'_>,
    function: NativeCallback,
    arg: *mut c_void,
) -> PyResult<()> {
    // SAFETY: `module` is our executed module, alive for the call (the contract of every
    // function here, which `registry` needs).
    let removed = unsafe { registry(module) }
        .borrow_mut()
        .remove_native(function, arg);
    if removed {
        return Ok(());
    }
    // SAFETY: static exception type.
    Err(raise(
        unsafe { PyExc_ValueError },
        "remove_reload_callback(): this callback and argument are not registered",
    ))
}

/// Registers a Python callable; raises TypeError if it is not callable.
///
/// # Safety
/// `module` is this extension's module, alive and executed; GIL held.
pub unsafe fn add_python(module: Borrowed<'_>, callable: Borrowed<'_>) -> PyResult<()> {
    // SAFETY: `callable` is alive; PyCallable_Check only reads its type.
    if unsafe { PyCallable_Check(callable.as_ptr()) } == 0 {
        // SAFETY: static exception type.
        return Err(raise(
            unsafe { PyExc_TypeError },
            "add_reload_callback() takes a callable",
        ));
    }
    // SAFETY: `module` is our executed module, alive for the call (the contract of every
    // function here, which `registry` needs).
    unsafe { registry(module) }
        .borrow_mut()
        .push(Callback::Python(callable.to_owned()));
    Ok(())
}

/// Unregisters the earliest registration of a Python callable equal to `callable` (`==`, so
/// a bound method made again is found); raises ValueError if there is none.
///
/// # Safety
/// `module` is this extension's module, alive and executed; GIL held.
pub unsafe fn remove_python(module: Borrowed<'_>, callable: Borrowed<'_>) -> PyResult<()> {
    let module = module.to_owned();
    // SAFETY: forwarded contract; the module is kept alive by `module` while comparisons run
    // Python code.
    unsafe {
        let ids = registry(module.borrow()).borrow().ids();
        for id in ids {
            let candidate = registry(module.borrow()).borrow().get(id);
            let Some(Callback::Python(candidate)) = candidate else {
                continue;
            };
            match PyObject_RichCompareBool(candidate.as_ptr(), callable.as_ptr(), Py_EQ) {
                -1 => return Err(Raised),
                0 => continue,
                _ => {}
            }
            let removed = {
                let mut registry = registry(module.borrow()).borrow_mut();
                let at = registry.entries.iter().position(|e| e.id == id);
                at.map(|i| registry.entries.remove(i))
            };
            if removed.is_some() {
                // Dropped last, with the registry no longer borrowed: the decref may run
                // Python code.
                drop(removed);
                return Ok(());
            }
        }
        Err(raise(
            PyExc_ValueError,
            "remove_reload_callback(): the callable is not registered",
        ))
    }
}

/// Calls every registered callback with `report`, in registration order.
///
/// # Safety
/// `module` is this extension's module, alive and executed; GIL held; no exception set.
pub unsafe fn notify(module: Borrowed<'_>, report: Borrowed<'_>) -> PyResult<()> {
    // SAFETY: `report` is alive; PyDict_Check only reads its type.
    if unsafe { PyDict_Check(report.as_ptr()) } == 0 {
        // SAFETY: static exception type.
        return Err(raise(
            unsafe { PyExc_TypeError },
            "_notify_reloaded() takes the reload report, a dict",
        ));
    }
    // A reference of our own: a callback may drop every other reference to the module.
    let module = module.to_owned();
    // SAFETY: forwarded contract; each step re-reads the registry, which callbacks may change.
    unsafe {
        let ids = registry(module.borrow()).borrow().ids();
        for id in ids {
            let callback = registry(module.borrow()).borrow().get(id);
            match callback {
                None => {}
                Some(Callback::Native { function, arg }) => {
                    let status = function(report.as_ptr(), arg);
                    if status < 0 || !PyErr_Occurred().is_null() {
                        report_native_failure(function, arg, status);
                    }
                }
                Some(Callback::Python(callable)) => {
                    // Not PyObject_CallOneArg: 3.10 does not export it (see `abi::ffi`).
                    let result = PyObject_CallFunctionObjArgs(
                        callable.as_ptr(),
                        report.as_ptr(),
                        core::ptr::null_mut::<PyObject>(),
                    );
                    if Owned::from_new(result).is_err() {
                        PyErr_WriteUnraisable(callable.as_ptr());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reports a failed C callback through `sys.unraisablehook`, with the message
/// "Exception ignored in the mighty_patcher reload callback 0x... (arg 0x...)".
///
/// # Safety
/// GIL held; the callback just returned `status`.
unsafe fn report_native_failure(function: NativeCallback, arg: *mut c_void, status: c_int) {
    let what = format!(
        "in the mighty_patcher reload callback {:p} (arg {arg:p})",
        function as *const c_void
    );
    // SAFETY: GIL held; reading and setting the error indicator.
    unsafe {
        if PyErr_Occurred().is_null() {
            raise(
                PyExc_SystemError,
                &format!("a reload callback returned {status} without setting an exception"),
            );
        }
    }
    let api = ffi::api();
    let message = CString::new(what).expect("no NUL in a formatted address");
    // SAFETY: an exception is set, as both functions require; `%s` takes the C string, which
    // outlives the call. `_PyErr_WriteUnraisableMsg` prefixes "Exception ignored ".
    unsafe {
        if let Some(format_unraisable) = api.format_unraisable {
            let full = CString::new(format!("Exception ignored {}", message.to_string_lossy()))
                .expect("no NUL");
            format_unraisable(c"%s".as_ptr(), full.as_ptr());
        } else if let Some(write_unraisable_msg) = api.write_unraisable_msg {
            write_unraisable_msg(message.as_ptr(), core::ptr::null_mut());
        } else {
            PyErr_WriteUnraisable(core::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use core::ffi::{c_int, c_void};

    use pyo3_ffi::PyObject;

    use super::Registry;

    unsafe extern "C" fn first(_: *mut PyObject, _: *mut c_void) -> c_int {
        0
    }

    unsafe extern "C" fn second(_: *mut PyObject, _: *mut c_void) -> c_int {
        0
    }

    #[test]
    fn a_native_callback_is_removed_by_function_and_argument() {
        let mut registry = Registry::default();
        let mut args = [0_u8; 2];
        let (a, b): (*mut c_void, *mut c_void) =
            ((&raw mut args[0]).cast(), (&raw mut args[1]).cast());
        registry.add_native(first, a);
        registry.add_native(first, b);
        registry.add_native(second, a);
        assert!(!registry.remove_native(second, b));
        assert!(registry.remove_native(first, b));
        assert!(!registry.remove_native(first, b));
        assert_eq!(registry.ids(), vec![1, 3]);
    }

    #[test]
    fn ids_are_not_reused_after_a_removal() {
        let mut registry = Registry::default();
        registry.add_native(first, core::ptr::null_mut());
        assert!(registry.remove_native(first, core::ptr::null_mut()));
        registry.add_native(first, core::ptr::null_mut());
        assert_eq!(registry.ids(), vec![2]);
        assert!(registry.get(1).is_none());
    }
}
