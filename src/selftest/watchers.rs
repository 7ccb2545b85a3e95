//! The self-test's check that function watchers (3.12+) hear of a patch: a watcher registered
//! for the check must be told `MODIFY_CODE` with the new code while the function still holds
//! its old code, then `MODIFY_DEFAULTS` with the new defaults, as CPython's own setters would
//! tell it (`patch::events`).

/// The check's name in the report.
pub const NAME: &str = "function watchers";

/// `Ok(detail)` when the watcher heard what it should, `Err(problem)` when not.
#[cfg(not(Py_3_12))]
pub fn check(state: &crate::state::State) -> crate::errors::PyResult<Result<String, String>> {
    let _ = state;
    Ok(Ok("CPython before 3.12 has no function watchers".to_owned()))
}

#[cfg(Py_3_12)]
pub use watching::check;

#[cfg(Py_3_12)]
mod watching {
    use core::ffi::c_int;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    use pyo3_ffi::{PyDict_New, PyFunctionObject, PyObject};

    use crate::abi::ffi;
    use crate::errors::{PyResult, Raised};
    use crate::objects::Function;
    use crate::patch::function::patch_function;
    use crate::refs::Owned;
    use crate::state::State;

    const MODIFY_CODE: c_int = 2;
    const MODIFY_DEFAULTS: c_int = 3;

    /// The function being watched (its address), 0 outside the check.
    static WATCHED: AtomicUsize = AtomicUsize::new(0);
    /// What the watcher was told about it: (event, new value's address, whether the function
    /// already held the new value).
    static SEEN: Mutex<Vec<(c_int, usize, bool)>> = Mutex::new(Vec::new());

    fn seen() -> std::sync::MutexGuard<'static, Vec<(c_int, usize, bool)>> {
        SEEN.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The watcher: called by CPython for every function event while the check runs.
    unsafe extern "C" fn record(
        event: c_int,
        func: *mut PyFunctionObject,
        new_value: *mut PyObject,
    ) -> c_int {
        if func as usize != WATCHED.load(Ordering::Relaxed) || func.is_null() {
            return 0;
        }
        // SAFETY: CPython passes the live function the event is about (borrowed for the
        // call); plain reads of two fields checked by `build.rs`.
        let held = unsafe {
            match event {
                MODIFY_CODE => (*func).func_code,
                MODIFY_DEFAULTS => (*func).func_defaults,
                _ => return 0,
            }
        };
        seen().push((event, new_value as usize, held == new_value));
        0
    }

    /// Defines `def f(...)` from `source` in `globals` and returns the function.
    fn define(globals: &Owned, source: &core::ffi::CStr) -> PyResult<Owned> {
        super::super::run_and_get(globals, source, c"<mighty_patcher selftest>", c"f")
    }

    /// Registers a watcher, patches a probe function, and compares what the watcher heard
    /// with what CPython's setters would have told it.
    pub fn check(state: &State) -> PyResult<Result<String, String>> {
        let api = ffi::api();
        let add = api.function_add_watcher.expect("resolved on 3.12+");
        let clear = api.function_clear_watcher.expect("resolved on 3.12+");
        // SAFETY: GIL held; a new dict or NULL with an exception set.
        let globals = unsafe { Owned::from_new(PyDict_New())? };
        let old = define(&globals, c"def f(a=1):\n    return a\n")?;
        let new = define(&globals, c"def f(a=2):\n    return -a\n")?;
        let Some(source) = Function::cast(new.borrow()) else {
            return Ok(Err("the probe is not a function".to_owned()));
        };
        let expected = [
            (MODIFY_CODE, source.code_address(), false),
            (
                MODIFY_DEFAULTS,
                source.defaults().map_or(0, |d| d.as_ptr() as usize),
                false,
            ),
        ];
        seen().clear();
        WATCHED.store(old.as_ptr() as usize, Ordering::Relaxed);
        // SAFETY: GIL held; `record` matches `PyFunction_WatchCallback`. -1 with an exception
        // set when the interpreter's 8 watcher slots are taken.
        let id = unsafe { add(record) };
        if id < 0 {
            WATCHED.store(0, Ordering::Relaxed);
            return Err(Raised);
        }
        // SAFETY: GIL held; `state` is this module's (the caller's contract).
        let patched = unsafe { patch_function(state, old.borrow(), new.borrow()) };
        // SAFETY: the watcher registered above; clearing it cannot fail for a valid id.
        unsafe { clear(id) };
        WATCHED.store(0, Ordering::Relaxed);
        patched?;
        let heard = std::mem::take(&mut *seen());
        let name = |e: c_int| {
            if e == MODIFY_CODE {
                "MODIFY_CODE"
            } else {
                "MODIFY_DEFAULTS"
            }
        };
        if heard == expected {
            return Ok(Ok(
                "told MODIFY_CODE, then MODIFY_DEFAULTS, each with the new value before it \
                 was stored"
                    .to_owned(),
            ));
        }
        let told: Vec<String> = heard
            .iter()
            .map(|(event, _, held)| {
                format!(
                    "{} ({} the store)",
                    name(*event),
                    if *held { "after" } else { "before" }
                )
            })
            .collect();
        Ok(Err(format!(
            "the watcher of a patched function was told [{}], not MODIFY_CODE then \
             MODIFY_DEFAULTS, each with the new value, before the store",
            told.join(", ")
        )))
    }
}
