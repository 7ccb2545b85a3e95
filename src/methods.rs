//! The module's Python-facing functions and their method table: check arguments, call one
//! operation, convert the result. Documented for users in
//! `python/mighty_patcher/mighty_patcher.pyi` and `docs/native.md`.

use core::ptr;

use pyo3_ffi::{
    METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_O, Py_ssize_t, PyLong_FromUnsignedLong,
    PyMethodDef, PyMethodDefPointer, PyObject, PyObject_IsTrue, PyTuple_GET_ITEM, PyTuple_GET_SIZE,
    PyTuple_Pack,
};

use crate::convert::{boolean, finish, list, none, type_error, utf8};
use crate::errors::{PyResult, Raised};
use crate::objects::Function;
use crate::patch::{self, members};
use crate::refs::{Borrowed, Owned};
use crate::state;
use crate::{callbacks, heap, reloading, selftest};

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

unsafe extern "C" fn patch_function(
    module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: a module-level function called by CPython with the GIL held, `module` our module.
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
            let state = state::get(module);
            patch::function::patch_function(state, target.unwrap(), source.unwrap())?;
            none()
        })
    })
}

unsafe extern "C" fn swap_code(
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
            patch::function::swap_code(state::get(module), function.unwrap(), code.unwrap())?;
            none()
        })
    })
}

unsafe extern "C" fn patch_class(
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
            patch::class::patch_class(state::get(module), old.unwrap(), new.unwrap(), &filter)?;
            none()
        })
    })
}

unsafe extern "C" fn functions_using(module: *mut PyObject, codes: *mut PyObject) -> *mut PyObject {
    // SAFETY: METH_O module-level function; `codes` is borrowed for the call, GIL held.
    unsafe {
        meth_o(module, codes, |module, codes| {
            heap::functions_using(state::get(module.as_ptr()), codes)
        })
    }
}

unsafe extern "C" fn instances_of(module: *mut PyObject, types: *mut PyObject) -> *mut PyObject {
    // SAFETY: METH_O module-level function; `types` is borrowed for the call, GIL held.
    unsafe { meth_o(module, types, |_, types| heap::instances_of(types)) }
}

unsafe extern "C" fn track_new_code(module: *mut PyObject, code: *mut PyObject) -> *mut PyObject {
    // SAFETY: METH_O module-level function; `code` is borrowed for the call, GIL held.
    unsafe {
        meth_o(module, code, |module, code| {
            let code = crate::objects::Code::expect(code, "track_new_code()'s argument")?;
            #[cfg(Py_3_12)]
            heap::index::track_new(state::get(module.as_ptr()), code.object())?;
            #[cfg(not(Py_3_12))]
            let _ = (module, code);
            none()
        })
    }
}

unsafe extern "C" fn function_index(module: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    #[cfg(Py_3_12)]
    {
        let _ = module;
        // SAFETY: METH_NOARGS, GIL held; Py_BuildValue returns a new reference or NULL, its
        // arguments matching the format (C strings, Py_ssize_t, unsigned long long, int).
        finish(unsafe {
            match heap::index::stats() {
                Err(raised) => Err(raised),
                Ok(None) => none(),
                Ok(Some((codes, functions, walks, watcher))) => {
                    Owned::from_new(pyo3_ffi::Py_BuildValue(
                        c"{s:n,s:n,s:K,s:i}".as_ptr(),
                        c"codes".as_ptr(),
                        codes as Py_ssize_t,
                        c"functions".as_ptr(),
                        functions as Py_ssize_t,
                        c"walks".as_ptr(),
                        walks as core::ffi::c_ulonglong,
                        c"watcher".as_ptr(),
                        watcher,
                    ))
                }
            }
        })
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = module;
        finish(none())
    }
}

unsafe extern "C" fn member_functions(
    module: *mut PyObject,
    value: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: METH_O module-level function; `value` is borrowed for the call, GIL held.
    unsafe { meth_o(module, value, |_, value| list(members::functions(value)?)) }
}

unsafe extern "C" fn member_function_pairs(
    module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    let _ = module;
    // SAFETY: a module-level function called by CPython with the GIL held.
    finish(unsafe {
        parse(
            "member_function_pairs",
            ["old", "new"],
            2,
            2,
            args.cast_const(),
            nargs,
            ptr::null_mut(),
        )
        .and_then(|[old, new]| {
            let Some(pairs) = members::in_place_pairs(old.unwrap(), new.unwrap())? else {
                return none();
            };
            let mut tuples = Vec::with_capacity(pairs.len());
            for (o, n) in pairs {
                tuples.push(Owned::from_new(PyTuple_Pack(2, o.as_ptr(), n.as_ptr()))?);
            }
            list(tuples)
        })
    })
}

unsafe extern "C" fn currently_reloading(module: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: module-level function, GIL held.
    let state = unsafe { state::get(module) };
    finish(boolean(reloading::currently_reloading(state)))
}

unsafe extern "C" fn reloading_context(module: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: module-level function, GIL held.
    finish(unsafe { reloading::new_context(state::get(module)) })
}

unsafe extern "C" fn specialization_version(
    module: *mut PyObject,
    func: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: METH_O with a borrowed argument; PyLong_FromUnsignedLong returns a new reference
    // or NULL with an exception.
    unsafe {
        meth_o(module, func, |_, func| {
            let Some(func) = Function::cast(func) else {
                return Err(type_error(
                    "specialization_version() takes a Python function",
                ));
            };
            match func.version() {
                Some(v) => Owned::from_new(PyLong_FromUnsignedLong(v.into())),
                None => none(),
            }
        })
    }
}

unsafe extern "C" fn build_info(module: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    let _ = module;
    finish(selftest::build_info())
}

unsafe extern "C" fn run_selftest(
    module: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `patch_function`.
    finish(unsafe {
        parse("selftest", ["verbose"], 0, 0, args, nargs, kwnames).and_then(|[verbose]| {
            let verbose = match verbose {
                Some(v) => match PyObject_IsTrue(v.as_ptr()) {
                    -1 => return Err(Raised),
                    v => v == 1,
                },
                None => true,
            };
            selftest::run(module, verbose)
        })
    })
}

unsafe extern "C" fn add_reload_callback(
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

unsafe extern "C" fn remove_reload_callback(
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

unsafe extern "C" fn notify_reloaded(
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

/// One entry of the table.
const fn def(
    name: &'static core::ffi::CStr,
    meth: PyMethodDefPointer,
    flags: core::ffi::c_int,
    doc: &'static core::ffi::CStr,
) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }
}

static mut METHODS: [PyMethodDef; 18] = [
    def(
        c"patch_function",
        PyMethodDefPointer {
            PyCFunctionFast: patch_function,
        },
        METH_FASTCALL,
        c"patch_function(target, source, /)\n--\n\n\
          Make function `target` behave exactly like `source`, in place.",
    ),
    def(
        c"swap_code",
        PyMethodDefPointer {
            PyCFunctionFast: swap_code,
        },
        METH_FASTCALL,
        c"swap_code(function, code, /)\n--\n\n\
          Give `function` new code, keeping its closure cells (matched by name).",
    ),
    def(
        c"patch_class",
        PyMethodDefPointer {
            PyCFunctionFastWithKeywords: patch_class,
        },
        METH_FASTCALL | METH_KEYWORDS,
        c"patch_class(old, new, /, *, update=None, remove=None)\n--\n\n\
          Patch class `old` in place so that it behaves like `new`.",
    ),
    def(
        c"functions_using",
        PyMethodDefPointer {
            PyCFunction: functions_using,
        },
        METH_O,
        c"functions_using(codes, /)\n--\n\n\
          Every live function whose __code__ is one of `codes`.",
    ),
    def(
        c"instances_of",
        PyMethodDefPointer {
            PyCFunction: instances_of,
        },
        METH_O,
        c"instances_of(types, /)\n--\n\n\
          Every live object whose type is exactly one of `types`.",
    ),
    def(
        c"track_new_code",
        PyMethodDefPointer {
            PyCFunction: track_new_code,
        },
        METH_O,
        c"track_new_code(code, /)\n--\n\n\
          Let the function index (3.12+) follow the functions made from the code objects \
          nested in `code`, which was just compiled, without a heap walk.",
    ),
    def(
        c"function_index",
        PyMethodDefPointer {
            PyCFunction: function_index,
        },
        METH_NOARGS,
        c"function_index()\n--\n\n\
          What this interpreter's function index holds (a dict), or None without one.",
    ),
    def(
        c"member_functions",
        PyMethodDefPointer {
            PyCFunction: member_functions,
        },
        METH_O,
        c"member_functions(value, /)\n--\n\n\
          The functions `value` holds as a class member, which patch_class patches in place.",
    ),
    def(
        c"member_function_pairs",
        PyMethodDefPointer {
            PyCFunctionFast: member_function_pairs,
        },
        METH_FASTCALL,
        c"member_function_pairs(old, new, /)\n--\n\n\
          The (old, new) function pairs patch_class patches in place when member `old` \
          becomes `new`; None if `new` replaces `old`.",
    ),
    def(
        c"currently_reloading",
        PyMethodDefPointer {
            PyCFunction: currently_reloading,
        },
        METH_NOARGS,
        c"currently_reloading()\n--\n\n\
          True while the calling thread is applying a reload.",
    ),
    def(
        c"reloading",
        PyMethodDefPointer {
            PyCFunction: reloading_context,
        },
        METH_NOARGS,
        c"reloading()\n--\n\n\
          Context manager marking the calling thread as reloading (nestable).",
    ),
    def(
        c"specialization_version",
        PyMethodDefPointer {
            PyCFunction: specialization_version,
        },
        METH_O,
        c"specialization_version(function, /)\n--\n\n\
          The function's func_version (None before 3.11).",
    ),
    def(
        c"build_info",
        PyMethodDefPointer {
            PyCFunction: build_info,
        },
        METH_NOARGS,
        c"build_info()\n--\n\n\
          What the extension was built for and what it runs on.",
    ),
    def(
        c"selftest",
        PyMethodDefPointer {
            PyCFunctionFastWithKeywords: run_selftest,
        },
        METH_FASTCALL | METH_KEYWORDS,
        c"selftest(*, verbose=True)\n--\n\n\
          Check this build against the running interpreter; True if all checks pass.",
    ),
    def(
        c"add_reload_callback",
        PyMethodDefPointer {
            PyCFunction: add_reload_callback,
        },
        METH_O,
        c"add_reload_callback(callback, /)\n--\n\n\
          Call `callback(report)` after each reload; returns `callback`.",
    ),
    def(
        c"remove_reload_callback",
        PyMethodDefPointer {
            PyCFunction: remove_reload_callback,
        },
        METH_O,
        c"remove_reload_callback(callback, /)\n--\n\n\
          Stop calling `callback` after each reload (ValueError if it is not registered).",
    ),
    def(
        c"_notify_reloaded",
        PyMethodDefPointer {
            PyCFunction: notify_reloaded,
        },
        METH_O,
        c"_notify_reloaded(report, /)\n--\n\n\
          Call every reload callback with `report` (the reload engine's dict).",
    ),
    // Sentinel: a zeroed entry ends the table.
    PyMethodDef::zeroed(),
];

/// The method table, for the module definition. CPython reads it (and may write its
/// bookkeeping into it) for the life of the process.
pub fn table() -> *mut PyMethodDef {
    (&raw mut METHODS).cast()
}
