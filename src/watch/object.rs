//! The `Watcher` Python type and the `WatchError` exception; documented for users in
//! `python/mighty_patcher/mighty_patcher.pyi`.
//!
//! An instance owns one [`Handle`], a Rust box: the state shared with the watcher's threads,
//! the engine while open, and the roots. The handle's fields are read and changed only with
//! the GIL held (so `tp_new` refuses when a free-threaded build runs with the GIL forced off:
//! see `abi::require_gil`). `wait` clones the `Arc<Shared>` before it releases the GIL and
//! touches nothing else of the instance until it holds the GIL again, so `stop` and `close`
//! from another thread meanwhile are safe; the caller's reference keeps the instance alive for
//! the whole call.
//! The instance holds no Python object, so the type needs no GC support.

use core::ffi::{c_char, c_int, c_ulong, c_void};
use core::ptr;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3_ffi::{
    METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_VARARGS, Py_False, Py_None, Py_TPFLAGS_DEFAULT,
    Py_TYPE, Py_ssize_t, Py_tp_dealloc, Py_tp_doc, Py_tp_free, Py_tp_getset, Py_tp_methods,
    Py_tp_new, PyArg_ParseTupleAndKeywords, PyBytes_AsStringAndSize, PyBytes_Check,
    PyErr_CheckSignals, PyErr_Clear, PyErr_NewExceptionWithDoc, PyErr_Occurred, PyErr_SetObject,
    PyEval_RestoreThread, PyEval_SaveThread, PyExc_OSError, PyExc_ValueError, PyFloat_AsDouble,
    PyGetSetDef, PyImport_ImportModule, PyIter_Next, PyLong_AsUnsignedLong, PyLong_FromLong,
    PyLong_FromSize_t, PyMethodDef, PyMethodDefPointer, PyOS_FSPath, PyObject, PyObject_Call,
    PyObject_CallNoArgs, PyObject_GetAttrString, PyObject_GetIter, PySet_Add, PySet_New,
    PyThread_get_thread_ident, PyThreadState, PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New,
    PyTuple_SetItem, PyType_GenericAlloc, PyType_GetModule, PyType_GetSlot, PyType_Slot,
    PyType_Spec, PyTypeObject, PyUnicode_Check, PyUnicode_DecodeFSDefaultAndSize,
    PyUnicode_EncodeFSDefault, PyUnicode_InternFromString,
};

use super::engine::{Engine, Options, Shared, Waited};
use super::failure::Failure;
use super::tree;
use crate::convert::{finish, none, type_error, utf8};
use crate::errors::{PyResult, Raised, raise};
use crate::refs::{Borrowed, Owned};
use crate::state::{self, State};

/// The longest the main thread sleeps in `wait` without the GIL before it checks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// The instance layout.
#[repr(C)]
struct WatcherObject {
    ob_base: PyObject,
    /// Owned (`Box::into_raw`), set by `tp_new` before the instance is returned; freed by
    /// `dealloc`.
    handle: *mut Handle,
}

struct Handle {
    shared: Arc<Shared>,
    /// `None` once closed.
    engine: Option<Engine>,
    roots: Vec<PathBuf>,
    /// The process that started the engine. A copy of the instance in a forked child has none
    /// of the engine's threads (and a lock of `shared` may be held by one that is gone): there
    /// it is inert, and its engine is leaked rather than dropped (dropping joins the keeper).
    pid: u32,
}

impl Handle {
    /// Whether this is a forked child's copy of a watcher started by its parent.
    fn forked(&self) -> bool {
        std::process::id() != self.pid
    }

    /// Takes the engine out to be dropped; in a forked child, leaks it (see `pid`) and
    /// returns `None`.
    fn take_engine(&mut self) -> Option<Engine> {
        let engine = self.engine.take();
        if self.forked() {
            core::mem::forget(engine);
            return None;
        }
        engine
    }
}

/// The handle of `slf`.
///
/// # Safety
/// `slf` is a borrowed reference to a `Watcher` instance made by `watcher_new`; the GIL is
/// held, and the reference is not kept past the GIL being released.
unsafe fn handle<'a>(slf: *mut PyObject) -> &'a mut Handle {
    // SAFETY: `tp_new` sets `handle` before anyone else sees the instance, and only
    // `dealloc` frees it, after the last reference is gone.
    unsafe { &mut *(*slf.cast::<WatcherObject>()).handle }
}

/// The module state of the module that made `tp` (our type).
///
/// # Safety
/// `tp` is the `Watcher` type, made by `create_type` with its module (which it keeps alive).
unsafe fn state_of<'a>(tp: *mut PyTypeObject) -> &'a State {
    // SAFETY: PyType_GetModule returns a borrowed reference to that module, which the type
    // keeps alive as long as the type lives.
    unsafe { state::get(PyType_GetModule(tp)) }
}

/// Runs `f` with the GIL released (`Py_BEGIN_ALLOW_THREADS` / `Py_END_ALLOW_THREADS`); `f`
/// must not touch any Python object. The caller holds the GIL, as every method does.
fn without_gil<T>(f: impl FnOnce() -> T) -> T {
    struct Reattach(*mut PyThreadState);
    impl Drop for Reattach {
        fn drop(&mut self) {
            // SAFETY: the thread state saved below, restored once, on this same thread.
            unsafe { PyEval_RestoreThread(self.0) };
        }
    }
    // SAFETY: this thread holds the GIL (we are inside a method); it is re-taken by the guard
    // before anything else of Python is touched, even if `f` unwinds.
    let _reattach = Reattach(unsafe { PyEval_SaveThread() });
    f()
}

fn interned(text: &core::ffi::CStr) -> PyResult<Owned> {
    // SAFETY: a static NUL-terminated string; returns a new reference or NULL with an error.
    unsafe { Owned::from_new(PyUnicode_InternFromString(text.as_ptr())) }
}

fn value_error(message: &str) -> Raised {
    // SAFETY: static exception type.
    raise(unsafe { PyExc_ValueError }, message)
}

/// A path as Python sees it: `str`, decoded like `os.fsdecode` (undecodable bytes become
/// surrogate escapes, so the string names the same file).
fn path_to_str(path: &Path) -> PyResult<Owned> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: CPython copies `len` bytes from the buffer; returns a new reference or NULL.
    unsafe {
        Owned::from_new(PyUnicode_DecodeFSDefaultAndSize(
            bytes.as_ptr().cast::<c_char>(),
            bytes.len() as Py_ssize_t,
        ))
    }
}

/// `str` (or `bytes`) to an `OsString`, encoded like `os.fsencode`.
fn str_to_os(text: Borrowed<'_>) -> PyResult<OsString> {
    // SAFETY: `text` is alive for the call; the encoded bytes object is a new reference
    // (Owned) whose buffer is copied before it is dropped.
    unsafe {
        let encoded;
        let bytes = if PyBytes_Check(text.as_ptr()) != 0 {
            text
        } else {
            encoded = Owned::from_new(PyUnicode_EncodeFSDefault(text.as_ptr()))?;
            encoded.borrow()
        };
        let mut data: *mut c_char = ptr::null_mut();
        let mut size: Py_ssize_t = 0;
        if PyBytes_AsStringAndSize(bytes.as_ptr(), &mut data, &mut size) < 0 {
            return Err(Raised);
        }
        let bytes = core::slice::from_raw_parts(data.cast::<u8>(), size as usize);
        if bytes.contains(&0) {
            return Err(value_error("embedded null byte in a path"));
        }
        Ok(OsString::from_vec(bytes.to_vec()))
    }
}

/// Each item of the iterable `items`, refusing a lone `str` or `bytes` (iterating over one
/// would give its characters).
fn each_item(
    what: &str,
    items: Borrowed<'_>,
    mut f: impl FnMut(Borrowed<'_>) -> PyResult<()>,
) -> PyResult<()> {
    // SAFETY: type checks on a live object; PyObject_GetIter and PyIter_Next return new
    // references (NULL with or without an error at the end, told apart by PyErr_Occurred).
    unsafe {
        if PyUnicode_Check(items.as_ptr()) != 0 || PyBytes_Check(items.as_ptr()) != 0 {
            return Err(type_error(&format!(
                "Watcher(): {what} must be a sequence, not a single string; wrap it in a list"
            )));
        }
        let iterator = Owned::from_new(PyObject_GetIter(items.as_ptr()))?;
        loop {
            match Owned::from_new_opt(PyIter_Next(iterator.as_ptr())) {
                Some(item) => f(item.borrow())?,
                None if !PyErr_Occurred().is_null() => return Err(Raised),
                None => return Ok(()),
            }
        }
    }
}

/// The roots: each `str` or `os.PathLike`, made absolute, duplicates dropped.
fn roots_arg(roots: Borrowed<'_>) -> PyResult<Vec<PathBuf>> {
    let mut cwd: Option<PathBuf> = None;
    let mut out: Vec<PathBuf> = Vec::new();
    each_item("roots", roots, |item| {
        // SAFETY: PyOS_FSPath returns a new reference to a str or bytes, or NULL with a
        // TypeError.
        let fspath = unsafe { Owned::from_new(PyOS_FSPath(item.as_ptr())) }?;
        let path = PathBuf::from(str_to_os(fspath.borrow())?);
        if cwd.is_none() && path.is_relative() {
            cwd = Some(std::env::current_dir().map_err(|e| {
                let failure = Failure::Other {
                    path: None,
                    errno: e.raw_os_error(),
                    message: format!("cannot resolve a relative root: {e}"),
                };
                // SAFETY: static exception type.
                raise_os(unsafe { PyExc_OSError }, &failure)
            })?);
        }
        let path = tree::absolute(&path, cwd.as_deref().unwrap_or(Path::new("/")));
        if !out.contains(&path) {
            out.push(path);
        }
        Ok(())
    })?;
    Ok(out)
}

/// `ignore=`: directory names, each a `str`.
fn names_arg(names: Option<Borrowed<'_>>) -> PyResult<Vec<OsString>> {
    let mut out = Vec::new();
    if let Some(names) = names {
        each_item("ignore", names, |item| {
            // SAFETY: a type check on a live object.
            if unsafe { PyUnicode_Check(item.as_ptr()) } == 0 {
                return Err(type_error("Watcher(): ignore takes directory names (str)"));
            }
            out.push(str_to_os(item)?);
            Ok(())
        })?;
    }
    Ok(out)
}

/// A number of seconds given as a float: finite and not negative (and positive if `positive`).
fn seconds(name: &str, value: f64, positive: bool) -> PyResult<Duration> {
    let valid = value.is_finite() && (value > 0.0 || (!positive && value == 0.0));
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if valid => Ok(duration),
        _ => Err(value_error(&format!(
            "Watcher(): {name} must be a {} number of seconds, not {value}",
            if positive { "positive" } else { "non-negative" }
        ))),
    }
}

/// Raises `exc_type` like `OSError(errno, strerror[, filename])`, so that `errno`,
/// `strerror` and `filename` are set; without an errno, `exc_type(message)`.
fn raise_os(exc_type: *mut PyObject, failure: &Failure) -> Raised {
    let build = || -> PyResult<()> {
        let message = failure.message();
        let message = std::ffi::CString::new(message.replace('\0', "\\0")).expect("no NUL");
        // SAFETY: each call returns a new reference or NULL with an error; PyTuple_SetItem
        // steals the item (given away with `into_raw`) even when it fails. `exc_type` is an
        // exception type kept alive by the module state (or a static one).
        unsafe {
            let message = Owned::from_new(pyo3_ffi::PyUnicode_FromString(message.as_ptr()))?;
            let mut items = Vec::new();
            if let Some(errno) = failure.errno() {
                items.push(Owned::from_new(PyLong_FromLong(errno.into()))?);
            }
            items.push(message);
            if let (Some(_), Some(path)) = (failure.errno(), failure.filename()) {
                items.push(path_to_str(path)?);
            }
            let args = Owned::from_new(PyTuple_New(items.len() as Py_ssize_t))?;
            for (i, item) in items.into_iter().enumerate() {
                if PyTuple_SetItem(args.as_ptr(), i as Py_ssize_t, item.into_raw()) < 0 {
                    return Err(Raised);
                }
            }
            let exc = Owned::from_new(PyObject_Call(exc_type, args.as_ptr(), ptr::null_mut()))?;
            PyErr_SetObject(exc_type, exc.as_ptr());
        }
        Ok(())
    };
    // Building the exception can only fail on memory; that error is then the one set.
    let _ = build();
    Raised
}

/// Raises what `failure` says: `WatchError`, or `ValueError` for a root of the wrong kind.
fn raise_failure(state: &State, failure: &Failure) -> Raised {
    match failure {
        Failure::NotPython(path) => {
            value_error(&format!("{}: '{}'", failure.message(), path.display()))
        }
        _ => raise_os(state.watch_error.get(), failure),
    }
}

static mut NEW_KEYWORDS: [*const c_char; 6] = [
    c"roots".as_ptr(),
    c"poll".as_ptr(),
    c"poll_interval".as_ptr(),
    c"quiet".as_ptr(),
    c"ignore".as_ptr(),
    // Sentinel: NULL ends the list.
    ptr::null(),
];

/// `tp_new`: `Watcher(roots, *, poll=False, poll_interval=0.05, quiet=0.005, ignore=())`.
/// Everything is set up here (there is no `__init__`): the roots are watched before the
/// instance exists, with the GIL released.
unsafe extern "C" fn watcher_new(
    subtype: *mut PyTypeObject,
    args: *mut PyObject,
    kwds: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: CPython calls tp_new with the GIL held, `args` a tuple and `kwds` a dict or
    // NULL, both borrowed for the call.
    finish(unsafe { new(subtype, args, kwds) })
}

unsafe fn new(
    subtype: *mut PyTypeObject,
    args: *mut PyObject,
    kwds: *mut PyObject,
) -> PyResult<Owned> {
    // The handle is used through `&mut` on the assumption that the GIL serialises methods.
    crate::abi::require_gil()?;
    let mut roots: *mut PyObject = ptr::null_mut();
    let mut poll: c_int = 0;
    let mut poll_interval: f64 = 0.05;
    let mut quiet: f64 = 0.005;
    let mut ignore: *mut PyObject = ptr::null_mut();
    #[cfg(Py_3_13)]
    let keywords = (&raw const NEW_KEYWORDS).cast::<*const c_char>();
    #[cfg(not(Py_3_13))]
    let keywords = (&raw mut NEW_KEYWORDS).cast::<*mut c_char>();
    // SAFETY: the format matches the out-pointers ("O": borrowed object, "p": int, "d":
    // double); the keyword list is a static NULL-terminated array of static strings. The
    // objects stored are borrowed from `args`/`kwds`, which outlive this call.
    let parsed = unsafe {
        PyArg_ParseTupleAndKeywords(
            args,
            kwds,
            c"O|$pddO:Watcher".as_ptr(),
            keywords,
            &mut roots,
            &mut poll,
            &mut poll_interval,
            &mut quiet,
            &mut ignore,
        )
    };
    if parsed == 0 {
        return Err(Raised);
    }
    // SAFETY: borrowed from the arguments (see above); `roots` is set when parsing succeeds.
    let (roots, ignore) = unsafe { (Borrowed::from_ptr(roots), Borrowed::from_ptr(ignore)) };
    let roots = roots_arg(roots.expect("required argument"))?;
    let options = Options {
        roots: roots.clone(),
        poll_interval: match poll {
            0 => None,
            _ => Some(seconds("poll_interval", poll_interval, true)?),
        },
        quiet: seconds("quiet", quiet, false)?,
        ignore: names_arg(ignore)?,
    };
    // SAFETY: `subtype` is our type (it allows no subclasses).
    let state = unsafe { state_of(subtype) };
    let engine = without_gil(|| Engine::start(options)).map_err(|f| raise_failure(state, &f))?;
    // SAFETY: GenericAlloc returns a new, zero-filled instance (holding a reference to its
    // type) or NULL with an error; the handle is stored before anyone else can see it.
    unsafe {
        let obj = Owned::from_new(PyType_GenericAlloc(subtype, 0))?;
        let handle = Box::new(Handle {
            shared: Arc::clone(engine.shared()),
            engine: Some(engine),
            roots,
            pid: std::process::id(),
        });
        (*obj.as_ptr().cast::<WatcherObject>()).handle = Box::into_raw(handle);
        Ok(obj)
    }
}

/// `tp_dealloc`: closes the watcher (as `close`, joining its keeper thread without the GIL),
/// then frees the instance and drops its reference to the type.
unsafe extern "C" fn dealloc(obj: *mut PyObject) {
    // SAFETY: called once, with the GIL held, when the last reference went away; the handle
    // is a Rust box that holds no Python object, so it is dropped without the GIL. A heap
    // type's instance owns a strong reference to its type (taken by PyType_GenericAlloc): it
    // is taken over by an `Owned` and released after the memory is freed.
    unsafe {
        let tp = Py_TYPE(obj);
        let handle = (*obj.cast::<WatcherObject>()).handle;
        if !handle.is_null() {
            (*obj.cast::<WatcherObject>()).handle = ptr::null_mut();
            let mut handle = Box::from_raw(handle);
            let engine = handle.take_engine();
            without_gil(move || drop((engine, handle)));
        }
        let type_ref = Owned::from_new_opt(tp.cast::<PyObject>());
        // Through PyType_GetSlot rather than the `tp_free` field: no struct layout involved.
        let free = PyType_GetSlot(tp, Py_tp_free);
        if !free.is_null() {
            let free: pyo3_ffi::freefunc = core::mem::transmute(free);
            free(obj.cast::<c_void>());
        }
        drop(type_ref);
    }
}

/// The `timeout` argument of `wait(timeout=None)`, positional or by keyword.
///
/// # Safety
/// `args`, `nargs` and `kwnames` are what CPython passed to a FASTCALL method.
unsafe fn timeout_arg(
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> PyResult<Option<Duration>> {
    if nargs > 1 {
        return Err(type_error(&format!(
            "wait() takes at most 1 argument ({nargs} given)"
        )));
    }
    // SAFETY: `nargs` positional values then one per keyword name, borrowed for the call.
    let value: Option<Borrowed<'_>> = unsafe {
        let mut value = if nargs == 1 {
            Borrowed::from_ptr(*args)
        } else {
            None
        };
        let nkw = if kwnames.is_null() {
            0
        } else {
            PyTuple_GET_SIZE(kwnames)
        };
        for k in 0..nkw {
            let key = Borrowed::from_ptr(PyTuple_GET_ITEM(kwnames, k)).expect("keyword");
            let key = utf8(key).unwrap_or_default();
            if key != "timeout" {
                return Err(type_error(&format!(
                    "wait() got an unexpected keyword argument '{key}'"
                )));
            }
            if value.is_some() {
                return Err(type_error(
                    "wait() got multiple values for argument 'timeout'",
                ));
            }
            value = Borrowed::from_ptr(*args.add((nargs + k) as usize));
        }
        value
    };
    // SAFETY: comparing with the None singleton; PyFloat_AsDouble accepts any real number and
    // returns -1.0 with an error set on failure.
    unsafe {
        let Some(value) = value.filter(|v| v.as_ptr() != Py_None()) else {
            return Ok(None);
        };
        let seconds = PyFloat_AsDouble(value.as_ptr());
        if seconds == -1.0 && !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
        if seconds.is_nan() {
            return Err(value_error(
                "wait(): timeout must be a number of seconds, not nan",
            ));
        }
        // Negative: do not wait; too large to represent (inf): wait forever.
        Ok(Duration::try_from_secs_f64(seconds.max(0.0)).ok())
    }
}

unsafe extern "C" fn wait(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: a method of our type, called with the GIL held and `slf` borrowed for the call.
    finish(unsafe { wait_impl(slf, args, nargs, kwnames) })
}

/// Waits with the GIL released. On the main thread, in slices of at most [`SLICE`], running
/// the signal handlers with the GIL between them (a KeyboardInterrupt propagates from here).
/// Signal handlers run on the main thread only, so elsewhere (an `AutoReloader`'s daemon
/// thread) it sleeps until something happens or the deadline (`stop` and `close` wake it),
/// without asking for the GIL meanwhile.
unsafe fn wait_impl(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> PyResult<Owned> {
    // SAFETY: forwarded from `wait`.
    let timeout = unsafe { timeout_arg(args, nargs, kwnames) }?;
    // SAFETY: `slf` is a Watcher instance; the handle is used only before the GIL is released.
    let handle = unsafe { handle(slf) };
    if handle.forked() {
        // Nothing would ever wake a wait in a forked child: it is over at once.
        return interned(c"stop");
    }
    let shared = Arc::clone(&handle.shared);
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let main = on_main_thread();
    loop {
        let until = if main {
            let slice_end = Instant::now() + SLICE;
            Some(deadline.map_or(slice_end, |d| d.min(slice_end)))
        } else {
            deadline
        };
        let waited = without_gil(|| shared.wait_until(until));
        // SAFETY: the GIL is held again; PyErr_CheckSignals runs the Python-level handlers
        // (main thread only) and returns -1 with their exception set.
        if unsafe { PyErr_CheckSignals() } < 0 {
            return Err(Raised);
        }
        match waited {
            Waited::Stopped => return interned(c"stop"),
            Waited::Failed => {
                if let Some(failure) = shared.take_failure() {
                    // SAFETY: `slf` is an instance of our type.
                    return Err(raise_failure(unsafe { state_of(Py_TYPE(slf)) }, &failure));
                }
            }
            Waited::Due => {
                let paths = shared.take_due();
                if !paths.is_empty() {
                    return path_set(&paths);
                }
            }
            Waited::SliceOver => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return interned(c"timeout");
        }
    }
}

/// Whether the calling thread is the main thread, the only one on which `PyErr_CheckSignals`
/// runs signal handlers: `threading.main_thread().ident == threading.get_ident()`. If that
/// cannot be found out, assumes it is (and so keeps checking for signals). The GIL is held.
fn on_main_thread() -> bool {
    // SAFETY: the GIL is held (called from a method); each call returns a new reference or
    // NULL with an exception set, and PyLong_AsUnsignedLong returns `c_ulong::MAX` with an
    // exception set on failure. PyThread_get_thread_ident is what `threading.get_ident` returns.
    let ask = || unsafe {
        let threading = Owned::from_new(PyImport_ImportModule(c"threading".as_ptr()))?;
        let main_thread = Owned::from_new(PyObject_GetAttrString(
            threading.as_ptr(),
            c"main_thread".as_ptr(),
        ))?;
        let main = Owned::from_new(PyObject_CallNoArgs(main_thread.as_ptr()))?;
        let ident = Owned::from_new(PyObject_GetAttrString(main.as_ptr(), c"ident".as_ptr()))?;
        let ident = PyLong_AsUnsignedLong(ident.as_ptr());
        if ident == c_ulong::MAX && !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
        Ok(ident == PyThread_get_thread_ident())
    };
    ask().unwrap_or_else(|Raised| {
        // SAFETY: the failed call above left an exception set, dropped on purpose.
        unsafe { PyErr_Clear() };
        true
    })
}

fn path_set(paths: &[PathBuf]) -> PyResult<Owned> {
    // SAFETY: PySet_New returns a new reference; PySet_Add does not steal the item, which is
    // dropped (decref) after being added.
    unsafe {
        let set = Owned::from_new(PySet_New(ptr::null_mut()))?;
        for path in paths {
            let item = path_to_str(path)?;
            if PySet_Add(set.as_ptr(), item.as_ptr()) < 0 {
                return Err(Raised);
            }
        }
        Ok(set)
    }
}

unsafe extern "C" fn stop(slf: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: a method of our type, GIL held, `slf` borrowed. `Shared::stop` only sets a flag
    // and wakes the waiters (it never waits for a sleeping one); not in a forked child.
    let handle = unsafe { handle(slf) };
    if !handle.forked() {
        handle.shared.stop();
    }
    finish(none())
}

/// Stops (every wait returns "stop") and releases the OS watches.
///
/// # Safety
/// `slf` is a borrowed reference to a `Watcher` instance; the GIL is held.
unsafe fn close_now(slf: *mut PyObject) {
    // SAFETY: forwarded; the engine is taken out of the handle, and the reference to the
    // handle ends, before the GIL is released: a concurrent `close` then finds `None`.
    let engine = unsafe {
        let handle = handle(slf);
        if !handle.forked() {
            handle.shared.stop();
        }
        handle.take_engine()
    };
    if let Some(engine) = engine {
        // Joining the keeper thread may wait for a directory walk it is doing.
        without_gil(move || drop(engine));
    }
}

unsafe extern "C" fn close(slf: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: a method of our type, GIL held, `slf` borrowed.
    unsafe { close_now(slf) };
    finish(none())
}

unsafe extern "C" fn enter(slf: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
    // SAFETY: `__enter__` returns the watcher itself: a new reference to borrowed `slf`.
    unsafe { Borrowed::from_ptr(slf) }.map_or(ptr::null_mut(), |s| s.to_owned().into_raw())
}

unsafe extern "C" fn exit(slf: *mut PyObject, _args: *mut PyObject) -> *mut PyObject {
    // SAFETY: as `close`; Py_False is a singleton, returned as a new reference (exceptions
    // propagate).
    unsafe {
        close_now(slf);
        Borrowed::from_ptr(Py_False()).map_or(ptr::null_mut(), |f| f.to_owned().into_raw())
    }
}

unsafe extern "C" fn get_roots(slf: *mut PyObject, _: *mut c_void) -> *mut PyObject {
    // SAFETY: a getter of our type, GIL held; PyTuple_New returns a new reference, and
    // PyTuple_SetItem steals each item (given away with `into_raw`).
    finish(unsafe {
        let roots = &handle(slf).roots;
        Owned::from_new(PyTuple_New(roots.len() as Py_ssize_t)).and_then(|tuple| {
            for (i, root) in roots.iter().enumerate() {
                let item = path_to_str(root)?;
                if PyTuple_SetItem(tuple.as_ptr(), i as Py_ssize_t, item.into_raw()) < 0 {
                    return Err(Raised);
                }
            }
            Ok(tuple)
        })
    })
}

unsafe extern "C" fn get_watched_directories(slf: *mut PyObject, _: *mut c_void) -> *mut PyObject {
    // SAFETY: a getter of our type, GIL held; PyLong_FromSize_t returns a new reference.
    finish(unsafe {
        let handle = handle(slf);
        let count = if handle.engine.is_some() && !handle.forked() {
            handle.shared.watched()
        } else {
            0
        };
        Owned::from_new(PyLong_FromSize_t(count))
    })
}

static mut METHODS: [PyMethodDef; 6] = [
    PyMethodDef {
        ml_name: c"wait".as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionFastWithKeywords: wait,
        },
        ml_flags: METH_FASTCALL | METH_KEYWORDS,
        ml_doc: c"wait($self, /, timeout=None)\n--\n\n\
            The set of changed .py paths, as soon as one is ready; \"stop\" or \"timeout\"."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"stop".as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunction: stop },
        ml_flags: METH_NOARGS,
        ml_doc: c"stop($self, /)\n--\n\n\
            Make every current and later wait() return \"stop\"; callable from any thread."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"close".as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunction: close },
        ml_flags: METH_NOARGS,
        ml_doc: c"close($self, /)\n--\n\n\
            Stop, and release the OS watches; wait() then returns \"stop\"."
            .as_ptr(),
    },
    PyMethodDef {
        ml_name: c"__enter__".as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunction: enter },
        ml_flags: METH_NOARGS,
        ml_doc: c"Return the watcher.".as_ptr(),
    },
    PyMethodDef {
        ml_name: c"__exit__".as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunction: exit },
        ml_flags: METH_VARARGS,
        ml_doc: c"Close the watcher; exceptions propagate.".as_ptr(),
    },
    // Sentinel: a zeroed entry ends the table.
    PyMethodDef::zeroed(),
];

static mut GETSET: [PyGetSetDef; 3] = [
    PyGetSetDef {
        name: c"roots".as_ptr(),
        get: Some(get_roots),
        set: None,
        doc: c"The watched roots, absolute (tuple of str).".as_ptr(),
        closure: ptr::null_mut(),
    },
    PyGetSetDef {
        name: c"watched_directories".as_ptr(),
        get: Some(get_watched_directories),
        set: None,
        doc: c"How many directories are watched now (0 once closed).".as_ptr(),
        closure: ptr::null_mut(),
    },
    // Sentinel: a zeroed entry ends the table.
    PyGetSetDef {
        name: ptr::null(),
        get: None,
        set: None,
        doc: ptr::null(),
        closure: ptr::null_mut(),
    },
];

static mut SLOTS: [PyType_Slot; 6] = [
    PyType_Slot {
        slot: Py_tp_new,
        pfunc: watcher_new as *mut c_void,
    },
    PyType_Slot {
        slot: Py_tp_dealloc,
        pfunc: dealloc as *mut c_void,
    },
    PyType_Slot {
        slot: Py_tp_methods,
        pfunc: (&raw mut METHODS).cast(),
    },
    PyType_Slot {
        slot: Py_tp_getset,
        pfunc: (&raw mut GETSET).cast(),
    },
    PyType_Slot {
        slot: Py_tp_doc,
        pfunc: c"Watcher(roots, *, poll=False, poll_interval=0.05, quiet=0.005, ignore=())\n\
            --\n\n\
            Watch .py files under `roots` (directories, recursively, or single .py files); \
            wait() returns the files that changed once they are complete."
            .as_ptr()
            .cast_mut()
            .cast(),
    },
    // Sentinel: slot 0 ends the table.
    PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    },
];

static mut SPEC: PyType_Spec = PyType_Spec {
    name: c"mighty_patcher.Watcher".as_ptr(),
    basicsize: core::mem::size_of::<WatcherObject>() as c_int,
    itemsize: 0,
    flags: Py_TPFLAGS_DEFAULT as _,
    slots: (&raw mut SLOTS).cast(),
};

/// The spec of the `Watcher` type, which `state` creates for the module.
pub fn spec() -> *mut PyType_Spec {
    &raw mut SPEC
}

/// Creates the `WatchError(OSError)` exception type.
///
/// # Safety
/// GIL held, during module exec.
pub unsafe fn create_error() -> PyResult<Owned> {
    // SAFETY: static strings and base type; returns a new reference or NULL with an error.
    unsafe {
        Owned::from_new(PyErr_NewExceptionWithDoc(
            c"mighty_patcher.WatchError".as_ptr(),
            c"Watching files failed: a root does not exist, or the OS watch limit is reached \
              (the message says how to raise it)."
                .as_ptr(),
            PyExc_OSError,
            ptr::null_mut(),
        ))
    }
}
