//! `Code<'py>`: a code object. Read through its Python attributes (`co_freevars`, `co_flags`),
//! which every version has, except `co_version` (3.13+), read in place through bindgen's
//! declaration of this interpreter's `PyCodeObject` (`abi::layout`).

use pyo3_ffi::{
    PyCode_Check, PyLong_AsLong, PyObject_GetAttrString, PyTuple_GET_ITEM, PyTuple_GET_SIZE,
};

use crate::convert::{type_error, type_name, utf8};
use crate::errors::{PyResult, Raised};
use crate::refs::{Borrowed, Owned};

/// `co_flags` bits that make a code object a generator, coroutine or async generator.
#[cfg_attr(
    not(Py_3_12),
    allow(dead_code, reason = "read by patch::events, 3.12+")
)]
const KIND_FLAGS: i64 = 0x20 | 0x80 | 0x200;

/// A live code object (`types.CodeType`), borrowed for `'py`.
#[derive(Clone, Copy)]
pub struct Code<'py>(Borrowed<'py>);

impl<'py> Code<'py> {
    /// `obj` as a code object, if it is one.
    pub fn cast(obj: Borrowed<'py>) -> Option<Code<'py>> {
        // SAFETY: `obj` is alive; PyCode_Check reads its type only.
        (unsafe { PyCode_Check(obj.as_ptr()) } != 0).then_some(Code(obj))
    }

    /// `obj` as a code object, or a `TypeError` naming its `role`.
    pub fn expect(obj: Borrowed<'py>, role: &str) -> PyResult<Code<'py>> {
        Code::cast(obj).ok_or_else(|| {
            type_error(&format!(
                "{role} must be a code object, not {}",
                type_name(obj)
            ))
        })
    }

    pub fn object(self) -> Borrowed<'py> {
        self.0
    }

    fn attribute(self, name: &core::ffi::CStr) -> PyResult<Owned> {
        // SAFETY: a live object; returns a new reference or NULL with an exception set.
        unsafe { Owned::from_new(PyObject_GetAttrString(self.0.as_ptr(), name.as_ptr())) }
    }

    /// `co_freevars`, as Rust strings.
    pub fn free_vars(self) -> PyResult<Vec<String>> {
        let names = self.attribute(c"co_freevars")?;
        // SAFETY: `co_freevars` is a tuple of str, kept alive by `names`.
        unsafe {
            let n = PyTuple_GET_SIZE(names.as_ptr());
            Ok((0..n)
                .map(|i| {
                    Borrowed::from_ptr(PyTuple_GET_ITEM(names.as_ptr(), i))
                        .and_then(utf8)
                        .unwrap_or_default()
                })
                .collect())
        }
    }

    /// How many free variables it has: how long the closure of a function running it is.
    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "read by patch::events, 3.12+")
    )]
    pub fn free_var_count(self) -> PyResult<usize> {
        let names = self.attribute(c"co_freevars")?;
        // SAFETY: `co_freevars` is a tuple.
        Ok(unsafe { PyTuple_GET_SIZE(names.as_ptr()) } as usize)
    }

    /// Which kind of function it makes: plain, generator, coroutine or async generator (the
    /// `co_flags` bits CPython compares when `__code__` is assigned).
    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "read by patch::events, 3.12+")
    )]
    pub fn kind(self) -> PyResult<i64> {
        let flags = self.attribute(c"co_flags")?;
        // SAFETY: `co_flags` is an int; -1 with an exception set cannot be a flags value.
        let flags = unsafe { PyLong_AsLong(flags.as_ptr()) } as i64;
        if flags == -1 {
            return Err(Raised);
        }
        Ok(flags & KIND_FLAGS)
    }

    /// `co_version` (3.13+): the version `MAKE_FUNCTION` gives a function made from it.
    #[cfg(Py_3_13)]
    pub fn version(self) -> u32 {
        use crate::abi::layout::headers::PyCodeObject;
        // SAFETY: a live code object, and `PyCodeObject` is bindgen's declaration from this
        // interpreter's headers (field offset checked by `build.rs`); a plain `u32` read.
        unsafe { (*self.0.as_ptr().cast::<PyCodeObject>()).co_version }
    }
}
