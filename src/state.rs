//! The module's state (multi-phase init, `m_size`): what one module object holds, and the one
//! way to reach it. It depends on nothing of ours: `module` fills and empties it, and each part
//! of the crate finds its own data in it.
//!
//! CPython zero-fills the state when it creates the module and frees it with the module; in
//! between, a function of the module may run while another one is still running (a reload
//! callback, a `__set_name__` or a finalizer calling back into the module), so the state is
//! only ever reached through a shared reference: every field is a `Cell`, and the Rust data of
//! the parts (`callbacks`, `reloading`) sits behind `RefCell`s that are never borrowed across a
//! call into Python.

use core::any::Any;
use core::cell::Cell;
use core::ptr;

use pyo3_ffi::{PyModule_GetState, PyObject};

/// A strong reference the state owns, or NULL (before `exec`, after `m_clear`). Zero-filled
/// memory is a valid empty slot.
#[repr(transparent)]
pub struct Slot(Cell<*mut PyObject>);

impl Slot {
    /// The object, borrowed from the state (NULL when empty).
    pub fn get(&self) -> *mut PyObject {
        self.0.get()
    }

    /// Stores `new` and returns what the slot held: the slot takes over `new` (a strong
    /// reference or NULL) and the caller the previous value (the same), to release once the
    /// state is consistent (a decref may run Python code, which may read the state).
    pub fn replace(&self, new: *mut PyObject) -> *mut PyObject {
        self.0.replace(new)
    }
}

/// The Rust data of the module's parts, one value per type.
pub type Parts = Vec<Box<dyn Any>>;

/// Lives in the module object (`m_size`).
#[repr(C)]
pub struct State {
    /// `PatchError`: a patch could not be applied; nothing was changed.
    pub patch_error: Slot,
    /// `NeedsRestart(PatchError)`: the change cannot be made in place.
    pub needs_restart: Slot,
    /// The `Reloading` context manager type.
    pub reloading_type: Slot,
    /// `WatchError(OSError)`: watching files failed.
    pub watch_error: Slot,
    /// This interpreter's index in code objects' extra data (`patch::keepalive`); -1 if none.
    code_extra_index: Cell<isize>,
    /// The function index (3.12+) this module uses: slot and serial (`heap::index`), 0 for
    /// none.
    index_claim: Cell<u64>,
    /// `Box::into_raw` of the parts' data, or NULL (before `exec`, after `m_free`).
    parts: Cell<*mut Parts>,
}

impl State {
    pub fn code_extra_index(&self) -> isize {
        self.code_extra_index.get()
    }

    pub fn set_code_extra_index(&self, index: isize) {
        self.code_extra_index.set(index);
    }

    #[cfg_attr(not(Py_3_12), allow(dead_code, reason = "the function index is 3.12+"))]
    pub fn index_claim(&self) -> u64 {
        self.index_claim.get()
    }

    #[cfg_attr(not(Py_3_12), allow(dead_code, reason = "the function index is 3.12+"))]
    pub fn set_index_claim(&self, claim: u64) {
        self.index_claim.set(claim);
    }

    /// The part of type `T`, if `exec` installed one.
    pub fn part<T: Any>(&self) -> Option<&T> {
        let parts = self.parts.get();
        if parts.is_null() {
            return None;
        }
        // SAFETY: a non-NULL `parts` is a live box made by `install_parts`, freed only by
        // `take_parts`, whose contract excludes any reference handed out here from outliving
        // it; the vector is never changed in between, so shared references into it are sound.
        unsafe { &*parts }
            .iter()
            .find_map(|part| part.downcast_ref::<T>())
    }

    /// Installs the parts' data (once, during `exec`).
    pub fn install_parts(&self, parts: Parts) {
        let old = self.parts.replace(Box::into_raw(Box::new(parts)));
        assert!(old.is_null(), "the parts are installed once");
    }

    /// Takes the parts' data out, for `m_free` to drop.
    ///
    /// # Safety
    /// No reference returned by [`State::part`] is alive (the module is being deallocated).
    pub unsafe fn take_parts(&self) -> Option<Box<Parts>> {
        let parts = self.parts.replace(ptr::null_mut());
        // SAFETY: non-NULL means a box made by `install_parts`, taken out once (the field is
        // NULL from now on); the caller guarantees nobody borrows from it.
        (!parts.is_null()).then(|| unsafe { Box::from_raw(parts) })
    }
}

/// The state of `module`, or `None` if it has none.
///
/// # Safety
/// `module` is a module object made from this extension's module definition (whose `m_size` is
/// `size_of::<State>()`), alive for `'m`; the GIL is held.
pub unsafe fn of<'m>(module: *mut PyObject) -> Option<&'m State> {
    // SAFETY: such a module's state is `m_size` bytes that CPython zero-filled (a valid `State`:
    // every field is a `Cell` of a pointer or an integer) and keeps until the module dies; only
    // shared references are ever made to it.
    unsafe { PyModule_GetState(module).cast::<State>().as_ref() }
}

/// The state of `module`, which has one.
///
/// # Safety
/// As [`of`]. (A module made from our definition always has a state: `m_size` is not 0.)
pub unsafe fn get<'m>(module: *mut PyObject) -> &'m State {
    // SAFETY: the caller passes a live module made from our definition, which is all `of`
    // needs.
    unsafe { of(module) }.expect("a module made from our definition has a state")
}
