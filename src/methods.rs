//! The module's Python-facing functions: check arguments, call one operation, convert the
//! result. Documented for users in `python/mighty_patcher/mighty_patcher.pyi`.

use core::ptr;

use pyo3_ffi::{
    Py_None, Py_ssize_t, PyBool_FromLong, PyExc_TypeError, PyFunction_Check,
    PyLong_FromUnsignedLong, PyObject, PyTuple_GET_ITEM, PyTuple_GET_SIZE,
};

use crate::errors::{PyResult, Raised, raise, utf8};
use crate::refs::{Borrowed, Owned};
use crate::state;
use crate::{abi, callbacks, heap, patch, reloading, selftest};

/// Converts an operation's result to what CPython expects from a method.
pub(crate) fn finish(result: PyResult<Owned>) -> *mut PyObject {
    match result {
        Ok(value) => value.into_raw(),
        Err(Raised) => ptr::null_mut(),
    }
}

/// A new reference to `None`, as a method's result.
pub(crate) fn none() -> PyResult<Owned> {
    // SAFETY: Py_None is a live singleton; `to_owned` takes a new reference to it.
    Ok(unsafe { Borrowed::from_ptr(Py_None()) }
        .expect("None")
        .to_owned())
}

fn boolean(value: bool) -> PyResult<Owned> {
    // SAFETY: PyBool_FromLong returns a new reference.
    unsafe { Owned::from_new(PyBool_FromLong(value.into())) }
}

/// Sets a `TypeError` with `message`.
pub(crate) fn type_error(message: &str) -> Raised {
    // SAFETY: static exception type.
    raise(unsafe { PyExc_TypeError }, message)
}

/// Arguments of a `METH_FASTCALL | METH_KEYWORDS` call, matched against a signature whose
/// first `positional` parameters are positional-only and the rest keyword-only.
///
/// # Safety
/// `args`, `nargs` and `kwnames` are what CPython passed to the method.
unsafe fn parse<'a, const N: usize>(
    function: &str,
    names: [&str; N],
    positional: usize,
    required: usize,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> PyResult<[Option<Borrowed<'a>>; N]> {
    let mut values: [Option<Borrowed<'a>>; N] = [None; N];
    let given = nargs as usize;
    if given > positional {
        return Err(type_error(&format!(
            "{function}() takes {positional} positional argument{} but {given} were given",
            if positional == 1 { "" } else { "s" }
        )));
    }
    // SAFETY: CPython passes `nargs` positional arguments followed by one value per keyword
    // name, all borrowed for the duration of the call.
    unsafe {
        for (i, value) in values.iter_mut().enumerate().take(given) {
            *value = Borrowed::from_ptr(*args.add(i));
        }
        let nkw = if kwnames.is_null() {
            0
        } else {
            PyTuple_GET_SIZE(kwnames) as usize
        };
        for k in 0..nkw {
            let key = Borrowed::from_ptr(PyTuple_GET_ITEM(kwnames, k as isize)).expect("name");
            let key = utf8(key).unwrap_or_default();
            let Some(slot) = names.iter().skip(positional).position(|n| *n == key) else {
                return Err(type_error(&format!(
                    "{function}() got an unexpected keyword argument '{key}'"
                )));
            };
            values[positional + slot] = Borrowed::from_ptr(*args.add(given + k));
        }
    }
    if let Some(missing) = (0..required).find(|&i| values[i].is_none()) {
        return Err(type_error(&format!(
            "{function}() missing required argument '{}'",
            names[missing]
        )));
    }
    Ok(values)
}

pub unsafe extern "C" fn patch_function(
    module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: module-level function called by CPython with the GIL held.
    finish(unsafe {
        parse(
            "patch_function",
            ["target", "source"],
            2,
            2,
            args.cast_const(),
            nargs,
            ptr::null_mut(),
        )
        .and_then(|[target, source]| {
            let state = state::of(module);
            patch::function::patch_function(state, target.unwrap(), source.unwrap())?;
            none()
        })
    })
}

pub unsafe extern "C" fn swap_code(
    module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: as `patch_function`.
    finish(unsafe {
        parse(
            "swap_code",
            ["function", "code"],
            2,
            2,
            args.cast_const(),
            nargs,
            ptr::null_mut(),
        )
        .and_then(|[function, code]| {
            patch::function::swap_code(state::of(module), function.unwrap(), code.unwrap())?;
            none()
        })
    })
}

pub unsafe extern "C" fn patch_class(
    module: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `patch_function`.
    finish(unsafe {
        parse(
            "patch_class",
            ["old", "new", "update", "remove"],
            2,
            2,
            args,
            nargs,
            kwnames,
        )
        .and_then(|[old, new, update, remove]| {
            let filter = patch::class::Filter::from_arguments(update, remove)?;
            patch::class::patch_class(state::of(module), old.unwrap(), new.unwrap(), &filter)?;
            none()
        })
    })
}

pub unsafe extern "C" fn functions_using(
    module: *mut PyObject,
    codes: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: METH_O module-level function; `codes` is borrowed for the call, GIL held.
    unsafe { meth_o(module, codes, |_, codes| heap::functions_using(codes)) }
}

pub unsafe extern "C" fn currently_reloading(
    module: *mut PyObject,
    _: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: module-level function, GIL held.
    finish(boolean(reloading::currently_reloading(unsafe {
        state::of(module)
    })))
}

pub unsafe extern "C" fn reloading_context(
    module: *mut PyObject,
    _: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: module-level function, GIL held.
    finish(unsafe { reloading::new_context(state::of(module)) })
}

pub unsafe extern "C" fn specialization_version(
    module: *mut PyObject,
    func: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: METH_O with a borrowed argument; the version is read only from functions, and
    // PyLong_FromUnsignedLong returns a new reference or NULL with an exception.
    unsafe {
        meth_o(module, func, |_, func| {
            if PyFunction_Check(func.as_ptr()) == 0 {
                return Err(type_error(
                    "specialization_version() takes a Python function",
                ));
            }
            match abi::version::of(func.as_ptr().cast()) {
                Some(v) => Owned::from_new(PyLong_FromUnsignedLong(v.into())),
                None => none(),
            }
        })
    }
}

pub unsafe extern "C" fn build_info(module: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: module-level function, GIL held.
    finish(unsafe { selftest::build_info(module) })
}

pub unsafe extern "C" fn run_selftest(
    module: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `patch_function`.
    finish(unsafe {
        parse("selftest", ["verbose"], 0, 0, args, nargs, kwnames).and_then(|[verbose]| {
            let verbose = match verbose {
                Some(v) => match pyo3_ffi::PyObject_IsTrue(v.as_ptr()) {
                    -1 => return Err(Raised),
                    v => v == 1,
                },
                None => true,
            };
            selftest::run(module, verbose)
        })
    })
}

/// Runs `operation` for a METH_O module function with its module and its one argument.
///
/// # Safety
/// CPython's METH_O convention: `module` and `arg` are borrowed and non-null, GIL held.
unsafe fn meth_o(
    module: *mut PyObject,
    arg: *mut PyObject,
    operation: impl FnOnce(Borrowed<'_>, Borrowed<'_>) -> PyResult<Owned>,
) -> *mut PyObject {
    // SAFETY: per this function's contract.
    let (module, arg) = unsafe {
        (
            Borrowed::from_ptr(module).expect("module"),
            Borrowed::from_ptr(arg).expect("argument"),
        )
    };
    finish(operation(module, arg))
}

pub unsafe extern "C" fn add_reload_callback(
    module: *mut PyObject,
    callback: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: METH_O module-level function; `callback` is borrowed for the call.
    unsafe {
        meth_o(module, callback, |module, callback| {
            // Returns the callable, so that it can be used as a decorator.
            callbacks::add_python(module, callback).map(|()| callback.to_owned())
        })
    }
}

pub unsafe extern "C" fn remove_reload_callback(
    module: *mut PyObject,
    callback: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `add_reload_callback`.
    unsafe {
        meth_o(module, callback, |module, callback| {
            callbacks::remove_python(module, callback).and_then(|()| none())
        })
    }
}

pub unsafe extern "C" fn notify_reloaded(
    module: *mut PyObject,
    report: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `add_reload_callback`.
    unsafe {
        meth_o(module, report, |module, report| {
            callbacks::notify(module, report).and_then(|()| none())
        })
    }
}
