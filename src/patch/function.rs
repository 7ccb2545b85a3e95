//! In-place surgery on function objects.
//!
//! The invariants of a `PyFunctionObject` (CPython's `Include/cpython/funcobject.h` and
//! `Objects/funcobject.c`), which hold before and after every operation here:
//! - `func_code` is a code object; `func_closure` is NULL or a tuple of cells exactly as long
//!   as the code's `co_freevars` (NULL when there are none);
//! - `func_globals` and `func_builtins` are dicts; `func_name` and `func_qualname` are str;
//! - `func_defaults` is NULL or a tuple, `func_kwdefaults` NULL or a dict, `func_dict` NULL or
//!   a dict, `func_annotations` NULL, a dict, or (3.10-3.13, until first read) a flat tuple;
//!   `func_annotate` (3.14+) NULL or a callable; `func_typeparams` (3.12+) NULL or a tuple;
//! - `func_version` (3.11+) describes the state warm call sites were specialised for (see
//!   `abi::version`).
//!
//! Every operation has the same shape:
//! 1. *prepare*: check the arguments and build every new value (this allocates, and an
//!    allocation may run the garbage collector and with it finalizers, so it is done while the
//!    function is still untouched); raise the `object.__setattr__` audit event CPython raises
//!    for `__code__`, so a hook can veto the patch before anything changes;
//! 2. *commit*: plain pointer stores, which run no Python code;
//! 3. `abi::version::after_write`, before anything can call the function;
//! 4. drop the old values, last: a decref can run arbitrary code, which now sees the new
//!    function only.

use core::ptr;

use pyo3_ffi::{
    PyCode_Check, PyDict_Copy, PyExc_TypeError, PyFunction_Check, PyFunctionObject, PyObject,
    PyObject_GetAttrString, PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM,
};

use crate::abi::{ffi, version};
use crate::errors::{PyResult, Raised, raise, text, utf8};
use crate::refs::{Borrowed, Owned, new_ref_opt};
use crate::state::State;

fn as_function(obj: Borrowed<'_>, role: &str) -> PyResult<*mut PyFunctionObject> {
    // SAFETY: `obj` is alive; PyFunction_Check reads its type only.
    if unsafe { PyFunction_Check(obj.as_ptr()) } == 0 {
        // SAFETY: PyExc_TypeError is a static exception type.
        return Err(raise(
            unsafe { PyExc_TypeError },
            &format!("{role} must be a Python function, not {}", type_name(obj)),
        ));
    }
    Ok(obj.as_ptr().cast())
}

fn type_name(obj: Borrowed<'_>) -> String {
    // SAFETY: `obj` is alive, so is its type; tp_name is a NUL-terminated static string.
    unsafe {
        let name = (*pyo3_ffi::Py_TYPE(obj.as_ptr())).tp_name;
        core::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// The audit event `func.__code__ = code` raises; a hook that raises refuses the patch.
///
/// # Safety
/// GIL held; both objects alive.
unsafe fn audit_code_change(func: *mut PyFunctionObject, code: *mut PyObject) -> PyResult<()> {
    // SAFETY: format "OsO" takes two objects and a C string, passed as such.
    let status = unsafe {
        ffi::PySys_Audit(
            c"object.__setattr__".as_ptr(),
            c"OsO".as_ptr(),
            func.cast::<PyObject>(),
            c"__code__".as_ptr(),
            code,
        )
    };
    if status < 0 { Err(Raised) } else { Ok(()) }
}

/// Moves `value` into the field at `slot` and returns the field's previous value.
///
/// # Safety
/// `slot` is an object-pointer field of a live function, which owns the reference it holds.
/// The caller restores the function's invariants before any Python code runs.
unsafe fn exchange(slot: *mut *mut PyObject, value: Option<Owned>) -> Option<Owned> {
    let new = value.map_or(ptr::null_mut(), Owned::into_raw);
    // SAFETY: the field's reference moves out to us (an owned reference), the new one moves in.
    unsafe { Owned::from_new_opt(ptr::replace(slot, new)) }
}

/// Every field that makes a function what it is; each a strong reference or NULL.
struct Fields {
    code: Option<Owned>,
    globals: Option<Owned>,
    builtins: Option<Owned>,
    name: Option<Owned>,
    qualname: Option<Owned>,
    defaults: Option<Owned>,
    kwdefaults: Option<Owned>,
    closure: Option<Owned>,
    doc: Option<Owned>,
    dict: Option<Owned>,
    module: Option<Owned>,
    annotations: Option<Owned>,
    #[cfg(Py_3_14)]
    annotate: Option<Owned>,
    #[cfg(Py_3_12)]
    typeparams: Option<Owned>,
}

impl Fields {
    /// New references to `source`'s fields, with a copy of its `__dict__`.
    ///
    /// # Safety
    /// `source` is a live function; GIL held.
    unsafe fn read(source: *mut PyFunctionObject) -> PyResult<Fields> {
        // SAFETY: each field is NULL or a live object owned by `source`; new_ref_opt increfs.
        // PyDict_Copy returns a new reference or NULL with an exception set.
        unsafe {
            let s = &*source;
            let dict = if s.func_dict.is_null() {
                None
            } else {
                Some(Owned::from_new(PyDict_Copy(s.func_dict))?)
            };
            Ok(Fields {
                code: new_ref_opt(s.func_code),
                globals: new_ref_opt(s.func_globals),
                builtins: new_ref_opt(s.func_builtins),
                name: new_ref_opt(s.func_name),
                qualname: new_ref_opt(s.func_qualname),
                defaults: new_ref_opt(s.func_defaults),
                kwdefaults: new_ref_opt(s.func_kwdefaults),
                closure: new_ref_opt(s.func_closure),
                doc: new_ref_opt(s.func_doc),
                dict,
                module: new_ref_opt(s.func_module),
                annotations: new_ref_opt(s.func_annotations),
                #[cfg(Py_3_14)]
                annotate: new_ref_opt(s.func_annotate),
                #[cfg(Py_3_12)]
                typeparams: new_ref_opt(s.func_typeparams),
            })
        }
    }

    /// Stores every field into `target` and returns the values it held.
    ///
    /// # Safety
    /// `target` is a live function and `self` a consistent set of fields (read from one
    /// function), so the invariants hold once all are stored; no Python code runs meanwhile.
    unsafe fn store(self, target: *mut PyFunctionObject) -> Fields {
        // SAFETY: forwarded contract; each `exchange` moves one owned reference in and out.
        unsafe {
            let t = &mut *target;
            Fields {
                code: exchange(&mut t.func_code, self.code),
                globals: exchange(&mut t.func_globals, self.globals),
                builtins: exchange(&mut t.func_builtins, self.builtins),
                name: exchange(&mut t.func_name, self.name),
                qualname: exchange(&mut t.func_qualname, self.qualname),
                defaults: exchange(&mut t.func_defaults, self.defaults),
                kwdefaults: exchange(&mut t.func_kwdefaults, self.kwdefaults),
                closure: exchange(&mut t.func_closure, self.closure),
                doc: exchange(&mut t.func_doc, self.doc),
                dict: exchange(&mut t.func_dict, self.dict),
                module: exchange(&mut t.func_module, self.module),
                annotations: exchange(&mut t.func_annotations, self.annotations),
                #[cfg(Py_3_14)]
                annotate: exchange(&mut t.func_annotate, self.annotate),
                #[cfg(Py_3_12)]
                typeparams: exchange(&mut t.func_typeparams, self.typeparams),
            }
        }
    }
}

/// Makes `target` behave exactly like `source`, in place: every reference to `target` then
/// runs `source`'s code with `source`'s closure cells, globals, builtins, defaults, keyword
/// defaults, annotations, type parameters, doc, name, qualname and module, and a copy of its
/// `__dict__`. `target` keeps its identity and its weak references.
///
/// Refuses (see [`crate::abi::require_gil`]) when the GIL was forced off.
///
/// # Safety
/// GIL held; `state` is this module's state.
pub unsafe fn patch_function(
    state: &State,
    target: Borrowed<'_>,
    source: Borrowed<'_>,
) -> PyResult<()> {
    crate::abi::require_gil()?;
    // SAFETY: forwarded contract; the GIL was just checked.
    unsafe { patch_function_unchecked(state, target, source) }
}

/// [`patch_function`] without the GIL check, for callers that made it already
/// (`patch::class`, once per class patch).
///
/// # Safety
/// As [`patch_function`], and [`crate::abi::require_gil`] succeeded during this call from
/// Python.
pub(crate) unsafe fn patch_function_unchecked(
    state: &State,
    target: Borrowed<'_>,
    source: Borrowed<'_>,
) -> PyResult<()> {
    let t = as_function(target, "the function to patch")?;
    let s = as_function(source, "the new function")?;
    if target.is(source) {
        return Ok(());
    }
    // SAFETY: both are live functions (checked above); the GIL is held throughout.
    unsafe {
        let new = Fields::read(s)?;
        audit_code_change(t, (*s).func_code)?;
        keep_old_namespaces(state, t, s)?;
        let old = new.store(t);
        version::after_write(t);
        drop(old);
    }
    Ok(())
}

/// On 3.11+, when `source` brings other globals or builtins than `target` has, attaches
/// `target`'s current ones to its current code so frames running it keep them (see
/// `patch::keepalive`).
///
/// # Safety
/// Both are live functions; GIL held.
unsafe fn keep_old_namespaces(
    state: &State,
    target: *mut PyFunctionObject,
    source: *mut PyFunctionObject,
) -> PyResult<()> {
    #[cfg(Py_3_11)]
    {
        // SAFETY: fields of live functions; new_ref_opt increfs what is kept.
        unsafe {
            let (t, s) = (&*target, &*source);
            let mut kept = Vec::new();
            if !ptr::eq(t.func_globals, s.func_globals) {
                kept.extend(new_ref_opt(t.func_globals));
            }
            if !ptr::eq(t.func_builtins, s.func_builtins) {
                kept.extend(new_ref_opt(t.func_builtins));
            }
            let code = Borrowed::from_ptr(t.func_code).expect("a function always has code");
            super::keepalive::retain(state.code_extra_index, code, kept)?;
        }
    }
    #[cfg(not(Py_3_11))]
    let _ = (state, target, source);
    Ok(())
}

/// Gives `func` the code `code` and keeps its closure state: the new closure holds, for each
/// of `code`'s free variables, the cell `func` already had for a variable of that name. A
/// closure made by a factory before an edit thus keeps the values it captured.
///
/// Refuses, changing nothing, when `code` needs a free variable `func` has no cell for.
///
/// # Safety
/// GIL held.
pub unsafe fn swap_code(state: &State, func: Borrowed<'_>, code: Borrowed<'_>) -> PyResult<()> {
    crate::abi::require_gil()?;
    let f = as_function(func, "the function to patch")?;
    // SAFETY: `code` is alive; PyCode_Check reads its type only.
    if unsafe { PyCode_Check(code.as_ptr()) } == 0 {
        // SAFETY: static exception type.
        return Err(raise(
            unsafe { PyExc_TypeError },
            &format!(
                "the new code must be a code object, not {}",
                type_name(code)
            ),
        ));
    }
    // SAFETY: `f` is a live function; its fields are live objects it owns.
    unsafe {
        let closure = closure_for(state, f, code)?;
        audit_code_change(f, code.as_ptr())?;
        let old_code = exchange(&mut (*f).func_code, Some(code.to_owned()));
        let old_closure = exchange(&mut (*f).func_closure, closure);
        version::after_write(f);
        drop((old_code, old_closure));
    }
    Ok(())
}

/// Free variable names of a code object, as Rust strings.
fn free_vars(code: Borrowed<'_>) -> PyResult<Vec<String>> {
    // SAFETY: `code` is a live code object; co_freevars is a tuple of str (new reference).
    unsafe {
        let names = Owned::from_new(PyObject_GetAttrString(
            code.as_ptr(),
            c"co_freevars".as_ptr(),
        ))?;
        let n = PyTuple_GET_SIZE(names.as_ptr());
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let name = Borrowed::from_ptr(PyTuple_GET_ITEM(names.as_ptr(), i)).expect("item");
            out.push(utf8(name).unwrap_or_default());
        }
        Ok(out)
    }
}

/// For each name in `new`, the index of the same name in `old`; or the first name `old` lacks.
pub fn match_free_vars(old: &[String], new: &[String]) -> Result<Vec<usize>, String> {
    new.iter()
        .map(|name| {
            old.iter()
                .position(|o| o == name)
                .ok_or_else(|| name.clone())
        })
        .collect()
}

/// The closure `func` needs to run `code`: its own cells, rearranged by name.
///
/// # Safety
/// `func` is a live function, `code` a live code object; GIL held.
unsafe fn closure_for(
    state: &State,
    func: *mut PyFunctionObject,
    code: Borrowed<'_>,
) -> PyResult<Option<Owned>> {
    // SAFETY: `func` is live; its code is a live code object.
    let old_code = unsafe { Borrowed::from_ptr((*func).func_code) }.expect("code");
    let wanted = free_vars(code)?;
    if wanted.is_empty() {
        return Ok(None);
    }
    let have = free_vars(old_code)?;
    let order = match match_free_vars(&have, &wanted) {
        Ok(order) => order,
        Err(missing) => {
            // SAFETY: func_qualname is a live str owned by `func`.
            let qualname = unsafe { Borrowed::from_ptr((*func).func_qualname) }
                .map_or_else(|| "function".to_owned(), text);
            return Err(raise(
                state.patch_error,
                &format!(
                    "cannot move {qualname} to its new code: the new code uses the free \
                     variable '{missing}', and the closure made earlier has no cell for it; \
                     {qualname} keeps its old code"
                ),
            ));
        }
    };
    // SAFETY: the invariant says the old closure is a tuple as long as `have` (non-empty, as
    // `wanted` matched names in it); each item is a cell we incref before the new tuple
    // steals it. PyTuple_New returns a new reference or NULL with an exception set.
    unsafe {
        let old = (*func).func_closure;
        let tuple = Owned::from_new(PyTuple_New(order.len() as isize))?;
        for (i, &j) in order.iter().enumerate() {
            let cell = Borrowed::from_ptr(PyTuple_GET_ITEM(old, j as isize)).expect("cell");
            PyTuple_SET_ITEM(tuple.as_ptr(), i as isize, cell.to_owned().into_raw());
        }
        Ok(Some(tuple))
    }
}

#[cfg(test)]
mod tests {
    use super::match_free_vars;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn free_variables_are_matched_by_name_not_position() {
        let old = names(&["a", "b", "c"]);
        assert_eq!(match_free_vars(&old, &names(&["c", "a"])), Ok(vec![2, 0]));
        assert_eq!(match_free_vars(&old, &names(&[])), Ok(vec![]));
    }

    #[test]
    fn a_newly_captured_name_is_reported() {
        let old = names(&["a"]);
        assert_eq!(
            match_free_vars(&old, &names(&["a", "z"])),
            Err("z".to_owned())
        );
    }
}
