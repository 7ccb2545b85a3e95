//! `selftest()`: is this interpreter the one we were built for, do the layouts we rely on hold
//! at run time, and do warm call sites run new code after a patch?
//!
//! The first two are checked here, against the live type objects and a probe function; the
//! behavioural checks are Python code (`selftest.py`, compiled into the extension) driving
//! the native operations the way the reloader does.

use core::ffi::CStr;
use std::ffi::CString;

use pyo3_ffi::{
    Py_CompileString, Py_file_input, PyBool_FromLong, PyCode_Type, PyDict_New,
    PyDict_SetItemString, PyEval_EvalCode, PyFunction_GetClosure, PyFunction_GetCode,
    PyFunction_GetDefaults, PyFunction_GetGlobals, PyFunction_GetKwDefaults, PyFunction_GetModule,
    PyFunction_Type, PyFunctionObject, PyImport_ImportModule, PyList_Append, PyList_New,
    PyLong_FromSsize_t, PyMapping_GetItemString, PyObject, PyObject_CallFunctionObjArgs,
    PyObject_GetAttrString, PyTuple_Pack, PyType_Type,
};

use crate::abi::{self, Running, layout};
use crate::convert::{string, take_message};
use crate::errors::{PyResult, Raised};
use crate::refs::Owned;
use crate::state;

mod watchers;

const SCRIPT: &str = include_str!("selftest.py");

/// One result line: what was checked, whether it held, and a detail for the report.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn cstring(text: &str) -> CString {
    CString::new(text.replace('\0', "")).expect("no NUL left")
}

fn interpreter_check() -> Check {
    let running = Running::get();
    match running.mismatch() {
        None => Check {
            name: "interpreter",
            ok: true,
            detail: format!(
                "CPython {} matches the build ({})",
                running.version,
                abi::BUILT_VERSION
            ),
        },
        Some(why) => Check {
            name: "interpreter",
            ok: false,
            detail: why,
        },
    }
}

/// The struct sizes the live type objects report against ours.
fn size_check() -> Check {
    // SAFETY: static type objects of the running interpreter; reading tp_basicsize.
    let (function, heap_type, code) = unsafe {
        (
            PyFunction_Type.tp_basicsize as usize,
            PyType_Type.tp_basicsize as usize,
            PyCode_Type.tp_basicsize as usize,
        )
    };
    let mut problems = Vec::new();
    if function != layout::FUNCTION_SIZE {
        problems.push(format!(
            "function objects are {function} bytes, not {}",
            layout::FUNCTION_SIZE
        ));
    }
    if heap_type != layout::HEAP_TYPE_SIZE {
        problems.push(format!(
            "classes are {heap_type} bytes, not {}",
            layout::HEAP_TYPE_SIZE
        ));
    }
    #[cfg(Py_3_11)]
    {
        let expected = core::mem::offset_of!(layout::headers::PyCodeObject, co_code_adaptive);
        if code != expected {
            problems.push(format!(
                "code objects start bytecode at {code}, not {expected}"
            ));
        }
    }
    if problems.is_empty() {
        Check {
            name: "struct sizes",
            ok: true,
            detail: format!(
                "PyFunctionObject {function} B, PyHeapTypeObject {heap_type} B, PyCodeObject {code} B"
            ),
        }
    } else {
        Check {
            name: "struct sizes",
            ok: false,
            detail: problems.join("; "),
        }
    }
}

const PROBE: &CStr = c"def outer():\n    x = 1\n    def probe(a, b=2, *, c=3) -> int:\n        \
    \"doc\"\n        return a + b + c + x\n    return probe\nprobe = outer()\n";

/// Reads a probe function's fields through our struct and through the public API.
fn field_check() -> PyResult<Check> {
    // SAFETY: GIL held; every object made here is owned and released on return; the struct
    // reads are of a live function.
    unsafe {
        let probe = run_and_get(
            &namespace("mighty_patcher.probe")?,
            PROBE,
            c"<probe>",
            c"probe",
        )?;
        let f = probe.as_ptr();
        let raw = &*f.cast::<PyFunctionObject>();
        let attr = |name: &CStr| Owned::from_new(PyObject_GetAttrString(f, name.as_ptr()));
        let mut wrong = Vec::new();
        let mut compare = |field: &str, ours: *mut PyObject, theirs: *mut PyObject| {
            if ours != theirs {
                wrong.push(field.to_owned());
            }
        };
        compare("func_code", raw.func_code, PyFunction_GetCode(f));
        compare("func_globals", raw.func_globals, PyFunction_GetGlobals(f));
        compare(
            "func_defaults",
            raw.func_defaults,
            PyFunction_GetDefaults(f),
        );
        compare(
            "func_kwdefaults",
            raw.func_kwdefaults,
            PyFunction_GetKwDefaults(f),
        );
        compare("func_closure", raw.func_closure, PyFunction_GetClosure(f));
        compare("func_module", raw.func_module, PyFunction_GetModule(f));
        compare("func_name", raw.func_name, attr(c"__name__")?.as_ptr());
        compare(
            "func_qualname",
            raw.func_qualname,
            attr(c"__qualname__")?.as_ptr(),
        );
        compare("func_doc", raw.func_doc, attr(c"__doc__")?.as_ptr());
        compare(
            "func_builtins",
            raw.func_builtins,
            attr(c"__builtins__")?.as_ptr(),
        );
        #[cfg(Py_3_13)]
        {
            let code = raw.func_code.cast::<layout::headers::PyCodeObject>();
            if raw.func_version != (*code).co_version {
                wrong.push("func_version/co_version".to_owned());
            }
        }
        Ok(if wrong.is_empty() {
            Check {
                name: "function fields",
                ok: true,
                detail: "every field read in place matches the C API's getters".to_owned(),
            }
        } else {
            Check {
                name: "function fields",
                ok: false,
                detail: format!("fields at unexpected offsets: {}", wrong.join(", ")),
            }
        })
    }
}

/// Runs every check, prints the report when `verbose`, returns `True` if all passed.
///
/// # Safety
/// GIL held; `module` is this extension's module.
pub unsafe fn run(module: *mut PyObject, verbose: bool) -> PyResult<Owned> {
    let mut checks = vec![interpreter_check()];
    if checks[0].ok {
        checks.push(size_check());
        checks.push(field_check().unwrap_or_else(|Raised| Check {
            name: "function fields",
            ok: false,
            detail: take_message(),
        }));
        // SAFETY: GIL held; `module` is this extension's module (forwarded contract).
        let state = unsafe { state::get(module) };
        let (ok, detail) = match watchers::check(state) {
            Ok(Ok(detail)) => (true, detail),
            Ok(Err(problem)) => (false, problem),
            Err(Raised) => (false, take_message()),
        };
        checks.push(Check {
            name: watchers::NAME,
            ok,
            detail,
        });
    }
    // SAFETY: GIL held; all objects built here are owned; the script runs in a fresh namespace.
    unsafe {
        let results = Owned::from_new(PyList_New(0))?;
        for check in &checks {
            let name = string(check.name)?;
            let ok = Owned::from_new(PyBool_FromLong(check.ok.into()))?;
            let detail = string(&check.detail)?;
            let item =
                Owned::from_new(PyTuple_Pack(3, name.as_ptr(), ok.as_ptr(), detail.as_ptr()))?;
            if PyList_Append(results.as_ptr(), item.as_ptr()) < 0 {
                return Err(Raised);
            }
        }
        let run = script_function()?;
        let verbose = Owned::from_new(PyBool_FromLong(verbose.into()))?;
        // When the interpreter or a layout is not what we were built for, patching could
        // corrupt memory: the script then reports and skips the behavioural checks.
        let module_or_none = if checks.iter().all(|c| c.ok) {
            module
        } else {
            pyo3_ffi::Py_None()
        };
        Owned::from_new(PyObject_CallFunctionObjArgs(
            run.as_ptr(),
            module_or_none,
            results.as_ptr(),
            verbose.as_ptr(),
            core::ptr::null_mut::<PyObject>(),
        ))
    }
}

/// Compiles the behavioural script and returns its `run` function.
unsafe fn script_function() -> PyResult<Owned> {
    let source = cstring(SCRIPT);
    let globals = namespace("mighty_patcher._selftest")?;
    run_and_get(&globals, &source, c"<mighty_patcher selftest>", c"run")
}

/// A fresh module namespace: `__builtins__` and `__name__` set.
fn namespace(name: &str) -> PyResult<Owned> {
    // SAFETY: GIL held; new references all, stored (not stolen) into the dict.
    unsafe {
        let globals = Owned::from_new(PyDict_New())?;
        let builtins = Owned::from_new(PyImport_ImportModule(c"builtins".as_ptr()))?;
        let name = string(name)?;
        if PyDict_SetItemString(
            globals.as_ptr(),
            c"__builtins__".as_ptr(),
            builtins.as_ptr(),
        ) < 0
            || PyDict_SetItemString(globals.as_ptr(), c"__name__".as_ptr(), name.as_ptr()) < 0
        {
            return Err(Raised);
        }
        Ok(globals)
    }
}

/// Runs `source` as a module body in `globals` (`filename` in tracebacks) and returns the
/// object it bound to `name`.
fn run_and_get(globals: &Owned, source: &CStr, filename: &CStr, name: &CStr) -> PyResult<Owned> {
    // SAFETY: GIL held; compile and execute in `globals`, new references all.
    unsafe {
        let code = Owned::from_new(Py_CompileString(
            source.as_ptr(),
            filename.as_ptr(),
            Py_file_input,
        ))?;
        Owned::from_new(PyEval_EvalCode(
            code.as_ptr(),
            globals.as_ptr(),
            globals.as_ptr(),
        ))?;
        Owned::from_new(PyMapping_GetItemString(globals.as_ptr(), name.as_ptr()))
    }
}

/// `build_info()`: what the extension was built for and what it runs on.
pub fn build_info() -> PyResult<Owned> {
    let running = Running::get();
    // SAFETY: GIL held; each value is a new reference stored (not stolen) into the dict.
    unsafe {
        let dict = Owned::from_new(PyDict_New())?;
        let put = |key: &CStr, value: PyResult<Owned>| -> PyResult<()> {
            let value = value?;
            if PyDict_SetItemString(dict.as_ptr(), key.as_ptr(), value.as_ptr()) < 0 {
                return Err(Raised);
            }
            Ok(())
        };
        put(c"built_for", string(abi::BUILT_VERSION))?;
        put(c"running", string(&running.version))?;
        put(
            c"free_threaded",
            Owned::from_new(PyBool_FromLong(abi::BUILT_FREE_THREADED.into())),
        )?;
        put(
            c"function_size",
            Owned::from_new(PyLong_FromSsize_t(layout::FUNCTION_SIZE as isize)),
        )?;
        put(
            c"heap_type_size",
            Owned::from_new(PyLong_FromSsize_t(layout::HEAP_TYPE_SIZE as isize)),
        )?;
        put(c"include_dir", string(env!("MP_BUILT_INCLUDE")))?;
        put(c"executable", string(env!("MP_BUILT_EXECUTABLE")))?;
        Ok(dict)
    }
}
