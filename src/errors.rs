//! Error convention: a fallible function returns `PyResult<T>`; `Err(Raised)` means a Python
//! exception is set and the caller should return NULL (or -1) to CPython without touching it.

use std::ffi::CString;

use pyo3_ffi::{PyErr_Clear, PyErr_SetString, PyObject, PyObject_Str, PyUnicode_AsUTF8AndSize};

use crate::refs::{Borrowed, Owned};

/// Marker: a Python exception has been set.
#[derive(Debug)]
pub struct Raised;

pub type PyResult<T> = Result<T, Raised>;

/// Sets `exc` with `message`; returns the marker to propagate.
pub fn raise(exc: *mut PyObject, message: &str) -> Raised {
    let message = CString::new(message.replace('\0', "\\0")).expect("NULs were replaced");
    // SAFETY: `exc` is an exception type (a borrowed reference to a static or to a type owned by
    // the module state); `message` is a NUL-terminated copy that outlives the call.
    unsafe { PyErr_SetString(exc, message.as_ptr()) };
    Raised
}

/// `str(obj)` for messages; never fails (an error while formatting gives `<?>`).
pub fn text(obj: Borrowed<'_>) -> String {
    // SAFETY: `obj` is alive for the call; PyObject_Str returns a new reference or NULL.
    let Ok(s) = (unsafe { Owned::from_new(PyObject_Str(obj.as_ptr())) }) else {
        // SAFETY: an exception is set by the failed call; we drop it on purpose.
        unsafe { PyErr_Clear() };
        return "<?>".to_owned();
    };
    utf8(s.borrow()).unwrap_or_else(|| "<?>".to_owned())
}

/// The UTF-8 contents of a `str`, or `None` (with no exception left set) if it has none.
pub fn utf8(s: Borrowed<'_>) -> Option<String> {
    let mut size = 0;
    // SAFETY: `s` is alive; the returned buffer is owned by `s` and copied before `s` can die.
    let data = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        // SAFETY: the failed call set an exception, which we drop on purpose.
        unsafe { PyErr_Clear() };
        return None;
    }
    // SAFETY: CPython guarantees `size` valid bytes at `data`.
    let bytes = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Takes the exception currently set and returns its message (`str(exc)`), leaving no
/// exception set; used to fold a lower-level failure into a clearer one.
pub fn take_message() -> String {
    // PyErr_Fetch is deprecated since 3.12 in favour of PyErr_GetRaisedException, which 3.10
    // and 3.11 lack; every supported version still exports it (see `abi::ffi`).
    let (mut kind, mut value, mut tb) = (
        core::ptr::null_mut(),
        core::ptr::null_mut(),
        core::ptr::null_mut(),
    );
    // SAFETY: PyErr_Fetch moves the three new references (each possibly NULL) to us and
    // clears the indicator; PyErr_NormalizeException keeps them owned by us.
    unsafe {
        #[allow(deprecated, reason = "see above")]
        pyo3_ffi::PyErr_Fetch(&mut kind, &mut value, &mut tb);
        #[allow(deprecated, reason = "see above")]
        pyo3_ffi::PyErr_NormalizeException(&mut kind, &mut value, &mut tb);
    }
    // SAFETY: the three are new references (or NULL) that we now own.
    let (_kind, value, _tb) = unsafe {
        (
            Owned::from_new_opt(kind),
            Owned::from_new_opt(value),
            Owned::from_new_opt(tb),
        )
    };
    value.map(|v| text(v.borrow())).unwrap_or_default()
}
