//! Per-version facts: which CPython the extension was built for, the check that the running
//! interpreter is that one, struct layouts, and how each version invalidates specialisation.

pub mod ffi;
pub mod layout;
pub mod version;

use core::ffi::CStr;

use pyo3_ffi::{
    Py_GetVersion, PyExc_ImportError, PyInterpreterState_Get, PyInterpreterState_GetID,
};

use crate::errors::{PyResult, Raised, raise};

/// `sys.version` of the interpreter the extension was built against, e.g. `3.12.1`.
pub const BUILT_VERSION: &str = env!("MP_BUILT_VERSION");
/// Its minor version: 12 for 3.12.
pub const BUILT_MINOR: u32 = parse_u32(env!("MP_BUILT_MINOR"));
/// Its `sys.hexversion` (`PY_VERSION_HEX`), e.g. `0x030C01F0` for 3.12.1.
pub const BUILT_HEXVERSION: u32 = parse_u32(env!("MP_BUILT_HEXVERSION"));
/// Whether it was a free-threaded (`--disable-gil`) build.
pub const BUILT_FREE_THREADED: bool = matches!(env!("MP_BUILT_FREE_THREADED").as_bytes(), b"1");

const fn parse_u32(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

/// What `Py_GetVersion()` says about the running interpreter.
#[derive(Debug, PartialEq, Eq)]
pub struct Running {
    pub version: String,
    pub major: u32,
    pub minor: u32,
    pub free_threaded: bool,
}

impl Running {
    /// Parses a `Py_GetVersion()` string such as
    /// `3.13.0 experimental free-threading build (main, ...) [GCC 12.2.0]`.
    pub fn parse(text: &str) -> Running {
        let version = text.split_whitespace().next().unwrap_or("").to_owned();
        let mut numbers = version.split('.').map(|part| {
            part.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        });
        let major = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let minor = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let free_threaded = text
            .split('(')
            .next()
            .unwrap_or("")
            .contains("free-threading");
        Running {
            version,
            major,
            minor,
            free_threaded,
        }
    }

    pub fn get() -> Running {
        // SAFETY: Py_GetVersion has the same signature in every CPython 3 and returns a static
        // NUL-terminated string.
        let raw = unsafe { CStr::from_ptr(Py_GetVersion()) };
        Running::parse(&raw.to_string_lossy())
    }

    /// Why this interpreter cannot load the extension, if it cannot.
    pub fn mismatch(&self) -> Option<String> {
        let built = || {
            let kind = if BUILT_FREE_THREADED {
                " (free-threaded)"
            } else {
                ""
            };
            format!("CPython {BUILT_VERSION}{kind}")
        };
        if self.major != 3 || self.minor != BUILT_MINOR {
            return Some(format!(
                "mighty_patcher was built for {} but this is CPython {}; build it for this \
                 interpreter (pip install --force-reinstall --no-binary mighty-patcher, or \
                 maturin develop with it)",
                built(),
                self.version
            ));
        }
        if self.free_threaded != BUILT_FREE_THREADED {
            let running = if self.free_threaded {
                "a free-threaded"
            } else {
                "a GIL"
            };
            return Some(format!(
                "mighty_patcher was built for {} but this is {running} build of CPython {}; \
                 object layouts differ between the two, so it must be built for this one",
                built(),
                self.version
            ));
        }
        None
    }
}

/// On a free-threaded build, patching and watching need the GIL to be enabled: CPython
/// enables it while this module is loaded, because the module does not declare `Py_mod_gil`
/// (its raw writes to function fields must not race with other threads running those
/// functions, and a `Watcher`'s methods rely on the GIL to serialise them), unless the user
/// forced it off with `PYTHON_GIL=0` / `-X gil=0`. Then every patch, and every new `Watcher`,
/// is refused. Called once per call from Python, by its entry point.
pub fn require_gil() -> Result<(), Raised> {
    #[cfg(Py_GIL_DISABLED)]
    {
        use crate::refs::Owned;
        // SAFETY: GIL-or-attached thread state held by our caller; PySys_GetObject returns a
        // borrowed reference (or NULL), the call a new reference.
        unsafe {
            let probe = pyo3_ffi::PySys_GetObject(c"_is_gil_enabled".as_ptr());
            if !probe.is_null() {
                let enabled = Owned::from_new(pyo3_ffi::PyObject_CallNoArgs(probe))?;
                if pyo3_ffi::PyObject_IsTrue(enabled.as_ptr()) == 1 {
                    return Ok(());
                }
            }
            Err(raise(
                pyo3_ffi::PyExc_RuntimeError,
                "the GIL is disabled (PYTHON_GIL=0 or -X gil=0): mighty_patcher relies on it \
                 to keep other threads out while it patches functions and classes or runs a \
                 Watcher; run with the GIL enabled, as CPython does by default when \
                 mighty_patcher is imported",
            ))
        }
    }
    #[cfg(not(Py_GIL_DISABLED))]
    Ok(())
}

/// ID of the calling thread's interpreter (CPython never gives an ID twice in a process).
///
/// # Safety
/// GIL held (an attached thread state).
pub unsafe fn interpreter_id() -> PyResult<i64> {
    // SAFETY: with an attached thread state, PyInterpreterState_Get returns its interpreter;
    // GetID returns -1 with an exception set if the interpreter has no ID.
    let id = unsafe { PyInterpreterState_GetID(PyInterpreterState_Get()) };
    if id < 0 { Err(Raised) } else { Ok(id) }
}

/// The first thing `PyInit_mighty_patcher` does: refuse, with an ImportError, an interpreter
/// other than the one the extension was built for. It touches nothing whose layout depends on
/// the version, so it is safe to run under any CPython 3.
pub fn check_interpreter() -> Result<(), Raised> {
    match Running::get().mismatch() {
        // SAFETY: PyExc_ImportError is a static exception type in every CPython 3.
        Some(message) => Err(raise(unsafe { PyExc_ImportError }, &message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::Running;

    #[test]
    fn parses_release_and_prerelease_versions() {
        let r = Running::parse("3.12.1 (main, Jan  8 2024, 05:01:02) [GCC 12.2.0]");
        assert_eq!((r.major, r.minor, r.free_threaded), (3, 12, false));
        assert_eq!(r.version, "3.12.1");
        let r = Running::parse("3.15.0rc1 (main, Nov 25 2026) [GCC 12.2.0]");
        assert_eq!((r.major, r.minor), (3, 15));
    }

    #[test]
    fn recognises_free_threaded_builds() {
        let r = Running::parse("3.13.0 experimental free-threading build (main) [GCC 12.2.0]");
        assert!(r.free_threaded);
        let r = Running::parse("3.14.7 free-threading build (main, Nov 25 2026) [GCC]");
        assert!(r.free_threaded);
    }

    #[test]
    fn names_both_versions_when_they_differ() {
        let running = Running {
            version: "3.99.0".into(),
            major: 3,
            minor: 99,
            free_threaded: false,
        };
        let message = running.mismatch().expect("3.99 is not the build");
        assert!(message.contains("built for CPython"), "{message}");
        assert!(message.contains("this is CPython 3.99.0"), "{message}");
    }
}
