//! Storing a function's new fields so that function watchers hear of it (3.12+).
//!
//! A function watcher (`PyFunction_AddWatcher`: a JIT, a profiler, a debugger) is told by
//! CPython, *before* each store, of the changes its own setters make: `MODIFY_CODE` (the
//! `__code__` setter), `MODIFY_DEFAULTS` and `MODIFY_KWDEFAULTS` (`PyFunction_SetDefaults`,
//! `PyFunction_SetKwDefaults` and the attribute setters), and from 3.15 `MODIFY_QUALNAME` (the
//! `__qualname__` setter). Other fields have no event. CPython keeps the function that dispatches
//! events private, so the events are raised the only way there is: by storing those fields
//! through those setters. [`store`] does, in this order:
//!
//! 1. `__code__` through CPython's setter, which raises the audit event
//!    `object.__setattr__(func, "__code__", code)`, tells the watchers `MODIFY_CODE` with the new
//!    code while the function is still entirely old, and stores the code. The setter refuses
//!    code whose free variables are not as many as the closure's cells (a patch changes both),
//!    and from 3.13 warns about code of another kind (a function becoming a generator); in those
//!    two cases the code and closure are stored together first and the setter is then called
//!    with the code the function already has: the watchers are told `MODIFY_CODE` *after* the
//!    store (documented in `docs/native.md`).
//! 2. Every other field without an event, directly, with no Python code in between, and the
//!    function's specialisation invalidated at once (`abi::version::after_write`): from here on
//!    the function is consistent, and it runs the new code with the new closure, globals and
//!    builtins.
//! 3. The defaults, keyword defaults and (3.15+) qualname through the setters above, when they
//!    change, each telling the watchers before its store. A watcher that calls the function
//!    meanwhile runs the new code with the fields not stored yet, as with CPython's setters
//!    called one after the other.
//!
//! Each setter releases the value it replaces at once; the caller holds its own reference to
//! every old value (returned by [`store`]), so nothing is freed, and no finalizer runs, before
//! the patch is complete.
//!
//! Before 3.12 there are no watchers, and every field is stored directly.

use super::fields::Values;
use crate::errors::PyResult;
use crate::objects::Function;

#[cfg(Py_3_12)]
use {
    super::fields::Field,
    crate::errors::Raised,
    crate::objects::Code,
    crate::refs::{Borrowed, Owned},
    pyo3_ffi::PyObject,
};

/// What [`store`] needs to know about the new code, worked out while nothing has changed (it
/// may fail: it reads attributes of the code objects).
#[derive(Clone, Copy)]
pub struct Plan {
    /// How many free variables the new code has (`None`: the code does not change).
    #[cfg(Py_3_12)]
    new_free_vars: Option<usize>,
    /// Whether the new code is of the same kind as the current one (generator, coroutine...).
    #[cfg(Py_3_12)]
    same_kind: bool,
}

impl Plan {
    /// The plan for giving `func` the fields in `new`.
    pub fn new(func: Function<'_>, new: &Values) -> PyResult<Plan> {
        #[cfg(Py_3_12)]
        {
            let Some(Some(code)) = new.get(Field::Code) else {
                return Ok(Plan {
                    new_free_vars: None,
                    same_kind: true,
                });
            };
            let new_code = Code::cast(code.borrow()).expect("the invariant: code is code");
            let old = func.code();
            let old_code = Code::cast(old.borrow()).expect("the invariant: code is code");
            Ok(Plan {
                new_free_vars: Some(new_code.free_var_count()?),
                same_kind: new_code.kind()? == old_code.kind()?,
            })
        }
        #[cfg(not(Py_3_12))]
        {
            let _ = (func, new);
            Ok(Plan {})
        }
    }
}

/// Moves `new` into `func` (see the module documentation) and returns the old values.
///
/// `Err` only if CPython's `__code__` setter refuses now what the same audit event accepted when
/// the patch was prepared (a hook that changed its mind) or the closure changed meanwhile; the
/// function is then as it was.
///
/// # Safety
/// GIL held; `new` holds values read from one function (or a code object and the closure made
/// for it), consistent once all are stored.
pub unsafe fn store(func: Function<'_>, new: Values, plan: Plan) -> PyResult<Values> {
    #[cfg(Py_3_12)]
    {
        // SAFETY: `new` holds values read from one function (or a code object and the closure
        // built for it), consistent once stored; the GIL is held.
        unsafe { store_telling_watchers(func, new, plan) }
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = plan;
        // SAFETY: the values form a consistent function once stored (the contract above), and
        // no code runs during the stores.
        Ok(unsafe { new.store(func) })
    }
}

#[cfg(Py_3_12)]
unsafe fn store_telling_watchers(
    func: Function<'_>,
    mut new: Values,
    plan: Plan,
) -> PyResult<Values> {
    let code = new.take(Field::Code);
    let mut told = Vec::new();
    for field in [Field::Defaults, Field::KwDefaults] {
        if let Some(value) = new.take(field) {
            told.push((field, value));
        }
    }
    #[cfg(Py_3_15)]
    if let Some(value) = new.take(Field::Qualname) {
        told.push((Field::Qualname, value));
    }

    let mut old = match code {
        None => {
            // SAFETY: no code change: the stored fields agree with the code the function keeps.
            unsafe { store_directly(func, new) }
        }
        Some(code) => {
            let code = code.expect("the invariant: a function has code");
            // What CPython's setter checks before it tells the watchers.
            let setter_accepts = plan.same_kind && plan.new_free_vars == Some(func.closure_len());
            if setter_accepts {
                let old_code = func.code();
                // SAFETY: `func` is consistent; the setter tells the watchers, then stores.
                unsafe { set_attribute(func, c"__code__", code.borrow())? };
                // SAFETY: code is stored and the closure has the right length; the rest follows
                // with no code running in between.
                let mut old = unsafe { store_directly(func, new) };
                old.push(Field::Code, Some(old_code));
                old
            } else {
                new.push(Field::Code, Some(code.clone()));
                // SAFETY: code and closure are stored together: consistent from here on.
                let old = unsafe { store_directly(func, new) };
                // SAFETY: the function now holds `code` and a matching closure, so the setter
                // only tells the watchers and stores the same code again.
                if let Err(Raised) = unsafe { set_attribute(func, c"__code__", code.borrow()) } {
                    // SAFETY: the old values were consistent; stored back together.
                    drop(unsafe { store_directly(func, old) });
                    return Err(Raised);
                }
                old
            }
        }
    };
    for (field, value) in told {
        if field.holds(func, value.as_ref()) {
            old.push(field, value);
            continue;
        }
        let previous = field.read(func);
        // SAFETY: the function is consistent; each setter tells the watchers, then stores.
        if unsafe { tell_and_store(func, field, value.as_ref()) } < 0 {
            // Not expected: the value satisfied the same checks in the function it came from.
            // Reported, and stored directly so that the function is still all new.
            // SAFETY: the failed setter set an exception, which this reports and clears; the
            // direct store moves one reference in and the field's out (dropped: `previous`
            // holds the old value).
            unsafe {
                pyo3_ffi::PyErr_WriteUnraisable(func.object().as_ptr());
                drop(store_directly(func, Values::new(vec![(field, value)])));
            }
        }
        old.push(field, previous);
    }
    Ok(old)
}

/// Stores `values` directly, then invalidates the function's specialisation at once: a warm
/// call site keyed on its version must not run the new fields with the old assumptions in the
/// Python code (audit hooks, watchers) that runs before the patch is complete.
///
/// # Safety
/// As [`Values::store`]; the function is consistent once `values` are stored.
#[cfg(Py_3_12)]
unsafe fn store_directly(func: Function<'_>, values: Values) -> Values {
    // SAFETY: the values are consistent once stored (this function's contract), so the
    // function is consistent when `after_write` runs; no code runs in between.
    unsafe {
        let old = values.store(func);
        crate::abi::version::after_write(func);
        old
    }
}

/// Stores a defaults, keyword defaults or qualname value through CPython's setter for it.
///
/// # Safety
/// GIL held; `value` satisfies the field's invariant (a tuple, a dict, a str, or NULL).
#[cfg(Py_3_12)]
unsafe fn tell_and_store(func: Function<'_>, field: Field, value: Option<&Owned>) -> i32 {
    // SAFETY: Py_None stands for NULL in both setters; each increfs the new value, tells the
    // watchers and stores; they fail only for a value of the wrong type.
    unsafe {
        let value = value.map_or_else(|| pyo3_ffi::Py_None(), Owned::as_ptr);
        let f = func.object().as_ptr();
        match field {
            Field::Defaults => pyo3_ffi::PyFunction_SetDefaults(f, value),
            Field::KwDefaults => pyo3_ffi::PyFunction_SetKwDefaults(f, value),
            #[cfg(Py_3_15)]
            Field::Qualname => pyo3_ffi::PyObject_SetAttrString(f, c"__qualname__".as_ptr(), value),
            _ => unreachable!("only fields with an event"),
        }
    }
}

/// `func.<name> = value`, through the function type's attribute setter.
///
/// # Safety
/// GIL held.
#[cfg(Py_3_12)]
unsafe fn set_attribute(
    func: Function<'_>,
    name: &core::ffi::CStr,
    value: Borrowed<'_>,
) -> PyResult<()> {
    let f: *mut PyObject = func.object().as_ptr();
    // SAFETY: both objects are alive; PyObject_SetAttrString returns -1 with an exception set.
    if unsafe { pyo3_ffi::PyObject_SetAttrString(f, name.as_ptr(), value.as_ptr()) } < 0 {
        return Err(Raised);
    }
    Ok(())
}
