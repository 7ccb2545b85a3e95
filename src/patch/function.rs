//! In-place surgery on function objects: `patch_function` (every field from another function)
//! and `swap_code` (new code, the closure cells it needs rearranged by name).
//!
//! Each operation is two steps, so that a class patch can check all its functions before it
//! changes any:
//! 1. [`prepare`] / [`prepare_swap`]: check the arguments and build every new value (an
//!    allocation may run the garbage collector, and with it finalizers, so this is done while
//!    the function is untouched); raise the `object.__setattr__` audit event CPython raises for
//!    `__code__`, so that a hook can refuse the patch before anything changes; when the globals
//!    or builtins change, find the frames that borrow the old ones (`patch::keepalive`).
//! 2. [`Prepared::commit`]: attach the old namespaces to the code objects of those frames;
//!    store the new values (`patch::events`, which tells function watchers);
//!    `abi::version::after_write`, before anything can call the function. It returns the old
//!    values as an [`Applied`], which the caller drops last: a decref can run arbitrary code,
//!    which then sees consistent functions only.

use crate::abi::version;
use crate::errors::{PyResult, Raised, raise};
use crate::objects::{Code, Function};
use crate::refs::{Borrowed, Owned};
use crate::state::State;

use super::events;
use super::fields::{Field, Values};
use super::keepalive;

/// The audit event `func.__code__ = code` raises; a hook that raises refuses the patch.
fn audit_code_change(func: Function<'_>, code: Code<'_>) -> PyResult<()> {
    // SAFETY: format "OsO" takes two objects and a C string, passed as such; GIL held.
    let status = unsafe {
        crate::abi::ffi::PySys_Audit(
            c"object.__setattr__".as_ptr(),
            c"OsO".as_ptr(),
            func.object().as_ptr(),
            c"__code__".as_ptr(),
            code.object().as_ptr(),
        )
    };
    if status < 0 { Err(Raised) } else { Ok(()) }
}

/// A patch of one function, checked, with its new values built; nothing has changed yet.
pub struct Prepared<'py> {
    target: Function<'py>,
    new: Values,
    events: events::Plan,
    /// Code objects of frames that borrow a globals or builtins dict the patch takes away,
    /// with those dicts (`patch::keepalive`).
    keep: Vec<(Owned, Vec<Owned>)>,
    /// Our slot in code objects' extra data.
    code_extra_index: isize,
}

/// A patch that was made: the function's previous values, released when this is dropped.
pub struct Applied<'py> {
    target: Function<'py>,
    old: Values,
}

impl Applied<'_> {
    /// Puts the previous values back, without telling watchers or auditing (it restores a
    /// state both accepted before); for a class patch that fails after some of its functions
    /// were patched.
    ///
    /// # Safety
    /// GIL held; nothing else changed the function since the patch.
    pub unsafe fn undo(self) {
        // SAFETY: the old values were read from this function, consistent together; stored
        // with no code running, then the specialisation is invalidated.
        unsafe {
            let new = self.old.store(self.target);
            version::after_write(self.target);
            drop(new);
        }
    }
}

/// Checks and builds the patch that makes `target` behave exactly like `source`.
///
/// # Safety
/// GIL held; `state` is this module's state.
pub unsafe fn prepare<'py>(
    state: &State,
    target: Function<'py>,
    source: Function<'_>,
) -> PyResult<Prepared<'py>> {
    let new = Values::copy_of(source)?;
    let code = source.code();
    audit_code_change(target, Code::cast(code.borrow()).expect("code is code"))?;
    let events = events::Plan::new(target, &new)?;
    // SAFETY: GIL held (forwarded).
    let keep = unsafe { borrowers_of_old_namespaces(target, &new)? };
    Ok(Prepared {
        target,
        new,
        events,
        keep,
        code_extra_index: state.code_extra_index(),
    })
}

/// The frames that borrow the globals and builtins `target` loses when it takes those in `new`
/// (3.11+; on 3.10 frames own theirs): their code objects, with the dicts each borrows.
///
/// # Safety
/// GIL held.
unsafe fn borrowers_of_old_namespaces(
    target: Function<'_>,
    new: &Values,
) -> PyResult<Vec<(Owned, Vec<Owned>)>> {
    #[cfg(Py_3_11)]
    {
        let leaving = leaving_namespaces(target, new);
        if leaving.is_empty() {
            return Ok(Vec::new());
        }
        let dicts: Vec<Borrowed<'_>> = leaving.iter().map(Owned::borrow).collect();
        // SAFETY: GIL held (forwarded).
        let found = unsafe { crate::frames::borrowing(&dicts)? };
        Ok(found
            .into_iter()
            .map(|b| {
                (
                    b.code,
                    b.dicts.iter().map(|&i| leaving[i].clone()).collect(),
                )
            })
            .collect())
    }
    #[cfg(not(Py_3_11))]
    {
        let _ = (target, new);
        Ok(Vec::new())
    }
}

/// The globals and builtins `target` holds now that `new` replaces with other dicts.
#[cfg(Py_3_11)]
fn leaving_namespaces(target: Function<'_>, new: &Values) -> Vec<Owned> {
    [Field::Globals, Field::Builtins]
        .into_iter()
        .filter_map(|field| match new.get(field) {
            Some(value) if !field.holds(target, value) => field.read(target),
            _ => None,
        })
        .collect()
}

impl<'py> Prepared<'py> {
    /// Makes the patch. `Err` only if CPython's `__code__` setter refuses what was accepted
    /// while preparing (see `patch::events::store`); the function is then unchanged.
    ///
    /// # Safety
    /// GIL held; [`crate::abi::require_gil`] succeeded during this call from Python.
    pub unsafe fn commit(self) -> PyResult<Applied<'py>> {
        let Prepared {
            target,
            new,
            events,
            keep,
            code_extra_index,
        } = self;
        // SAFETY: `code_extra_index` is this interpreter's (module exec); GIL held.
        unsafe {
            for (code, dicts) in &keep {
                let code = Code::cast(code.borrow()).expect("frames run code objects");
                let dicts: Vec<Borrowed<'_>> = dicts.iter().map(Owned::borrow).collect();
                keepalive::keep(code_extra_index, code, &dicts);
            }
            #[cfg(Py_3_11)]
            {
                let leaving = leaving_namespaces(target, &new);
                let dicts: Vec<Borrowed<'_>> = leaving.iter().map(Owned::borrow).collect();
                let current = target.code();
                let current = Code::cast(current.borrow()).expect("the invariant: code is code");
                keepalive::keep(code_extra_index, current, &dicts);
            }
        }
        // SAFETY: `new` holds values read from one function (or a code object and the closure
        // built for it by `prepare_swap`), consistent once all are stored.
        let old = unsafe { events::store(target, new, events)? };
        // SAFETY: the function is consistent again; nothing has called it since the stores.
        unsafe { version::after_write(target) };
        Ok(Applied { target, old })
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
    let target = Function::expect(target, "the function to patch")?;
    let source = Function::expect(source, "the new function")?;
    if target.is(source) {
        return Ok(());
    }
    // SAFETY: the GIL is held (this function's contract) and `require_gil` passed above.
    let applied = unsafe { prepare(state, target, source)?.commit()? };
    drop(applied);
    Ok(())
}

/// Checks and builds the patch that gives `func` the code `code` and keeps its closure state:
/// the new closure holds, for each of `code`'s free variables, the cell `func` already had for
/// a variable of that name. A closure made by a factory before an edit thus keeps the values
/// it captured.
///
/// Refuses, with `PatchError`, when `code` needs a free variable `func` has no cell for.
///
/// # Safety
/// GIL held; `state` is this module's state.
pub unsafe fn prepare_swap<'py>(
    state: &State,
    func: Function<'py>,
    code: Code<'_>,
) -> PyResult<Prepared<'py>> {
    let closure = closure_for(state, func, code)?;
    audit_code_change(func, code)?;
    let new = Values::new(vec![
        (Field::Code, Some(code.object().to_owned())),
        (Field::Closure, closure),
    ]);
    let events = events::Plan::new(func, &new)?;
    Ok(Prepared {
        target: func,
        new,
        events,
        keep: Vec::new(),
        code_extra_index: state.code_extra_index(),
    })
}

/// `swap_code(function, code)`: [`prepare_swap`], then commit.
///
/// # Safety
/// GIL held; `state` is this module's state.
pub unsafe fn swap_code(state: &State, func: Borrowed<'_>, code: Borrowed<'_>) -> PyResult<()> {
    crate::abi::require_gil()?;
    let func = Function::expect(func, "the function to patch")?;
    let code = Code::expect(code, "the new code")?;
    // SAFETY: the GIL is held (this function's contract) and `require_gil` passed above.
    let applied = unsafe { prepare_swap(state, func, code)?.commit()? };
    drop(applied);
    Ok(())
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
fn closure_for(state: &State, func: Function<'_>, code: Code<'_>) -> PyResult<Option<Owned>> {
    let wanted = code.free_vars()?;
    if wanted.is_empty() {
        return Ok(None);
    }
    let current = func.code();
    let have = Code::cast(current.borrow())
        .expect("the invariant: code is code")
        .free_vars()?;
    let order = match match_free_vars(&have, &wanted) {
        Ok(order) => order,
        Err(missing) => {
            let qualname = func.qualname();
            return Err(raise(
                state.patch_error.get(),
                &format!(
                    "cannot move {qualname} to its new code: the new code uses the free \
                     variable '{missing}', and the closure made earlier has no cell for it; \
                     {qualname} keeps its old code"
                ),
            ));
        }
    };
    let old = func
        .closure()
        .expect("the invariant: a closure as long as the code's free variables");
    // SAFETY: the invariant says the old closure is a tuple as long as `have` (non-empty, as
    // `wanted` matched names in it); each item is a cell we incref before the new tuple steals
    // it. PyTuple_New returns a new reference or NULL with an exception set.
    unsafe {
        let tuple = Owned::from_new(pyo3_ffi::PyTuple_New(order.len() as isize))?;
        for (i, &j) in order.iter().enumerate() {
            let cell = Borrowed::from_ptr(pyo3_ffi::PyTuple_GET_ITEM(old.as_ptr(), j as isize))
                .expect("cell");
            pyo3_ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i as isize, cell.to_owned().into_raw());
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
