//! `Function<'py>`: a Python function object.
//!
//! The invariants of a `PyFunctionObject` (CPython's `Include/cpython/funcobject.h` and
//! `Objects/funcobject.c`), which hold whenever Python code can run:
//! - `func_code` is a code object; `func_closure` is NULL or a tuple of cells exactly as long
//!   as the code's `co_freevars` (NULL when there are none);
//! - `func_globals` and `func_builtins` are dicts; `func_name` and `func_qualname` are str;
//! - `func_defaults` is NULL or a tuple, `func_kwdefaults` NULL or a dict, `func_dict` NULL or
//!   a dict, `func_annotations` NULL, a dict, or (3.10-3.13, until first read) a flat tuple;
//!   `func_annotate` (3.14+) NULL or a callable; `func_typeparams` (3.12+) NULL or a tuple;
//! - `func_version` (3.11+) describes the state warm call sites were specialised for (see
//!   `abi::version`).
//!
//! The fields sit where `build.rs` checked them against the interpreter's headers.

use pyo3_ffi::{PyFunction_Check, PyFunctionObject, PyObject, vectorcallfunc};

use crate::convert::{text, type_error, type_name};
use crate::errors::PyResult;
use crate::refs::{Borrowed, Owned};

/// A live Python function object (`types.FunctionType`), borrowed for `'py`.
#[derive(Clone, Copy)]
pub struct Function<'py>(Borrowed<'py>);

impl<'py> Function<'py> {
    /// `obj` as a function, if it is one.
    pub fn cast(obj: Borrowed<'py>) -> Option<Function<'py>> {
        // SAFETY: `obj` is alive; PyFunction_Check reads its type only.
        (unsafe { PyFunction_Check(obj.as_ptr()) } != 0).then_some(Function(obj))
    }

    /// `obj` as a function, or a `TypeError` naming its `role`.
    pub fn expect(obj: Borrowed<'py>, role: &str) -> PyResult<Function<'py>> {
        Function::cast(obj).ok_or_else(|| {
            type_error(&format!(
                "{role} must be a Python function, not {}",
                type_name(obj)
            ))
        })
    }

    pub fn object(self) -> Borrowed<'py> {
        self.0
    }

    /// The struct, for the code that reads or replaces whole fields (`patch::function`).
    pub fn as_raw(self) -> *mut PyFunctionObject {
        self.0.as_ptr().cast()
    }

    pub fn is(self, other: Function<'_>) -> bool {
        self.0.is(other.0)
    }

    /// A field's value, as a new reference (so it outlives a later change of the field).
    fn field(self, read: impl FnOnce(&PyFunctionObject) -> *mut PyObject) -> Option<Owned> {
        // SAFETY: a `Function` is a live `PyFunctionObject` (checked when it was made) whose
        // object fields are NULL or live objects it owns; the reference is taken at once.
        unsafe { Borrowed::from_ptr(read(&*self.as_raw())) }.map(Borrowed::to_owned)
    }

    /// `__code__`.
    pub fn code(self) -> Owned {
        self.field(|f| f.func_code)
            .expect("a function always has code")
    }

    /// The address of its code object, to compare identities without taking a reference (the
    /// heap walk may not).
    pub fn code_address(self) -> usize {
        // SAFETY: a live function (see `field`); a plain read of a pointer field.
        unsafe { (*self.as_raw()).func_code as usize }
    }

    /// `__globals__`.
    pub fn globals(self) -> Owned {
        self.field(|f| f.func_globals)
            .expect("a function always has globals")
    }

    /// The builtins its frames use (from `__globals__["__builtins__"]` when it was made).
    pub fn builtins(self) -> Owned {
        self.field(|f| f.func_builtins)
            .expect("a function always has builtins")
    }

    /// `__defaults__` (`None` for NULL).
    pub fn defaults(self) -> Option<Owned> {
        self.field(|f| f.func_defaults)
    }

    /// `__kwdefaults__` (`None` for NULL).
    pub fn kwdefaults(self) -> Option<Owned> {
        self.field(|f| f.func_kwdefaults)
    }

    /// `__qualname__` as an object.
    pub fn qualname_object(self) -> Owned {
        self.field(|f| f.func_qualname)
            .expect("a function always has a qualname")
    }

    /// `__qualname__`, for messages.
    pub fn qualname(self) -> String {
        text(self.qualname_object().borrow())
    }

    /// `__closure__` (`None` for NULL).
    pub fn closure(self) -> Option<Owned> {
        self.field(|f| f.func_closure)
    }

    /// How many cells the closure holds (0 without one).
    pub fn closure_len(self) -> usize {
        // SAFETY: the closure is NULL or a tuple (the invariant); reading its size only.
        self.closure()
            .map_or(0, |c| unsafe { pyo3_ffi::PyTuple_GET_SIZE(c.as_ptr()) }
                as usize)
    }

    /// The vectorcall entry point CPython calls it through.
    pub fn vectorcall(self) -> Option<vectorcallfunc> {
        // SAFETY: a live function (see `field`); a plain read of a pointer-sized field.
        unsafe { (*self.as_raw()).vectorcall }
    }

    /// `func_version` (`None` before 3.11, where there is none).
    pub fn version(self) -> Option<u32> {
        #[cfg(Py_3_11)]
        {
            // SAFETY: a live function; a plain read of a field checked by `abi::layout`.
            Some(unsafe { (*self.as_raw()).func_version })
        }
        #[cfg(not(Py_3_11))]
        None
    }
}
