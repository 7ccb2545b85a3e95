//! Specialisation versions: what to do after a function's fields were written raw.
//!
//! From 3.11 on, the specialising interpreter caches a function's `func_version` in the
//! inline cache of a warm call site (`CALL_PY_EXACT_ARGS`, `CALL_PY_WITH_DEFAULTS`,
//! `LOAD_ATTR_PROPERTY`, `BINARY_SUBSCR_GETITEM`, ...) and from then on trusts whatever it
//! learnt about the function while the version matches: its argument count, its number of
//! defaults, the frame size of its code. A raw write to `func_code`, `func_defaults`,
//! `func_kwdefaults` or `func_closure` that leaves `func_version` alone makes those sites run
//! the new function with the old assumptions (measured: a wrong result on 3.11, a crash on
//! 3.12 and 3.13). So every raw write is followed by [`after_write`], before any Python code
//! can run.
//!
//! Per version (sources in `abi-notes/`):
//! - 3.10: no specialisation; nothing to do.
//! - 3.11: `PyFunction_SetDefaults` (public) sets `func_version = 0`. A later specialisation
//!   attempt gives the function a fresh version (`_PyFunction_GetVersionForCurrentState`).
//! - 3.12: `PyFunction_SetVectorcall(f, f->vectorcall)` (public) sets the version to 0 and
//!   runs no callbacks; fresh versions are again handed out lazily on the next specialisation.
//! - 3.13+: the same call clears the version and removes the function from the interpreter's
//!   version cache (`func_version_cache`), but versions are no longer handed out lazily: they
//!   come from the code object (`co_version`), set once by `MAKE_FUNCTION`. A function whose
//!   version was cleared is never specialised again. [`restore`] gives it back the version a
//!   function freshly made from its new code would have, without entering it in the version
//!   cache; `abi-notes/3.13.md` explains why that is safe.
//!
//! Function watchers (3.12+) are not told here: `patch::events` stores the fields that have an
//! event through CPython's own setters, which tell them.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::errors::PyResult;
use crate::objects::Function;
use crate::refs::Owned;

/// Invalidates `func`'s specialisation after raw writes, and on 3.13+ re-establishes a valid
/// version so calls stay fast.
///
/// # Safety
/// `func`'s fields satisfy the function invariants again (closure length equals the code's free
/// variable count); the GIL is held.
pub unsafe fn after_write(func: Function<'_>) {
    #[cfg(Py_3_12)]
    {
        // SAFETY: `func` is a live function; PyFunction_SetVectorcall clears the version (and
        // on 3.13+ the version-cache entry that points at `func`) and stores the same
        // vectorcall back. It runs no Python code and cannot fail.
        unsafe {
            let set_vectorcall = super::ffi::api().set_vectorcall.expect("resolved on 3.12+");
            set_vectorcall(
                func.as_raw(),
                func.vectorcall().expect("functions have a vectorcall"),
            );
        }
    }
    #[cfg(all(Py_3_11, not(Py_3_12)))]
    {
        // SAFETY: `func` is live. Its current defaults are NULL or a tuple, so the call cannot
        // fail; it increfs the value before releasing the old one (the same object), so nothing
        // is freed, and 3.11 has no watchers to call. This is what resets `func_version`.
        unsafe {
            let defaults = func.defaults();
            let defaults = defaults
                .as_ref()
                .map_or_else(|| pyo3_ffi::Py_None(), Owned::as_ptr);
            let status = pyo3_ffi::PyFunction_SetDefaults(func.object().as_ptr(), defaults);
            debug_assert_eq!(status, 0);
        }
    }
    #[cfg(Py_3_13)]
    {
        // SAFETY: the function's fields are consistent and its version was just cleared above,
        // as `restore` requires; the GIL is held.
        unsafe { restore(func) };
    }
    #[cfg(not(Py_3_11))]
    let _ = func;
}

/// The smallest valid version: 3.14 reserves 0 ("unset") and 1 ("cleared").
#[cfg(Py_3_13)]
const FIRST_VALID: u32 = if cfg!(Py_3_14) { 2 } else { 1 };

/// Gives `func` (version just cleared) the version `MAKE_FUNCTION` gives a function made from
/// its current code: `co_version`.
///
/// Invariants kept (CPython's `Objects/funcobject.c`, "Function (and code) versions"):
/// - a function with version `v` has a code object whose `co_version` is `v`: true, it is
///   read from the code now stored in `func`;
/// - every entry of the version cache points at a live function whose version maps to that
///   entry: `func` is not entered in the cache (it was removed by `PyFunction_SetVectorcall`),
///   and when it dies `func_clear_version` only clears an entry that points at it;
/// - specialisations keyed on a version rely only on what the code object determines: CPython
///   itself gives the same version to every closure made from one code object, whatever
///   their defaults or cells.
///
/// Skipped when the function's vectorcall is not the default one (the specialiser refuses such
/// functions anyway) or the version counter has run out.
///
/// # Safety
/// `func` is a live function whose version was just cleared; the GIL is held (on a
/// free-threaded build too: see [`super::require_gil`]).
#[cfg(Py_3_13)]
unsafe fn restore(func: Function<'_>) {
    if func.vectorcall().map(|v| v as usize) != default_vectorcall().map(|v| v as usize) {
        return;
    }
    let code = func.code();
    let version = crate::objects::Code::cast(code.borrow())
        .expect("the invariant: code is code")
        .version();
    if version >= FIRST_VALID {
        // SAFETY: `func` is live and `func_version` sits where `build.rs` checked it. Writing
        // it with the GIL held is what CPython's own `_PyFunction_SetVersion` does (on
        // free-threaded builds it is a plain store as well: they have no version cache).
        unsafe { (*func.as_raw()).func_version = version };
    }
}

/// The vectorcall of an ordinary Python function (`_PyFunction_Vectorcall`, which not every
/// version exports), read by [`init`] from a function made for the purpose.
static DEFAULT_VECTORCALL: AtomicUsize = AtomicUsize::new(0);

#[cfg(Py_3_13)]
fn default_vectorcall() -> Option<pyo3_ffi::vectorcallfunc> {
    let address = DEFAULT_VECTORCALL.load(Ordering::Relaxed);
    // SAFETY: `address` is 0 or the address of a `vectorcallfunc` stored by `init`.
    unsafe { core::mem::transmute::<usize, Option<pyo3_ffi::vectorcallfunc>>(address) }
}

/// Called when the module is executed: records the default vectorcall.
pub fn init() -> PyResult<()> {
    // SAFETY: with the GIL held (module exec), compile an empty function and read the
    // vectorcall CPython installed in it; every reference taken here is released on return.
    unsafe {
        let globals = Owned::from_new(pyo3_ffi::PyDict_New())?;
        let code = Owned::from_new(pyo3_ffi::Py_CompileString(
            c"pass".as_ptr(),
            c"<mighty_patcher>".as_ptr(),
            pyo3_ffi::Py_file_input,
        ))?;
        let func = Owned::from_new(pyo3_ffi::PyFunction_New(code.as_ptr(), globals.as_ptr()))?;
        let vectorcall = Function::cast(func.borrow())
            .expect("PyFunction_New makes a function")
            .vectorcall();
        DEFAULT_VECTORCALL.store(vectorcall.map_or(0, |v| v as usize), Ordering::Relaxed);
    }
    Ok(())
}
