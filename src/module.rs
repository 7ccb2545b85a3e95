//! The module object: its definition and slots, `exec` (which fills the state and wires up
//! every part), and `m_traverse`, `m_clear`, `m_free`. The top rung of the crate: it depends on
//! everything, and only `lib.rs` depends on it.

use core::cell::RefCell;
use core::ffi::{CStr, c_int, c_void};
use core::ptr;

use pyo3_ffi::{
    Py_XDECREF, Py_mod_exec, PyErr_NewExceptionWithDoc, PyExc_Exception, PyModule_AddObjectRef,
    PyModuleDef, PyModuleDef_HEAD_INIT, PyModuleDef_Slot, PyObject, PyType_FromModuleAndSpec,
    PyType_Spec, visitproc,
};

use crate::convert::string;
use crate::errors::{PyResult, Raised};
use crate::patch::keepalive;
use crate::refs::Owned;
use crate::state::{self, Slot, State};
use crate::{abi, callbacks, capi, methods, reloading, watch};

#[cfg(Py_3_12)]
const SLOT_COUNT: usize = 3;
#[cfg(not(Py_3_12))]
const SLOT_COUNT: usize = 2;

static mut SLOTS: [PyModuleDef_Slot; SLOT_COUNT] = [
    PyModuleDef_Slot {
        slot: Py_mod_exec,
        value: exec as *mut _,
    },
    // Several interpreters may import the module; they share one GIL (our statics are
    // read-only after initialisation, or keyed by interpreter ID, but the code has not been
    // audited for a per-interpreter GIL).
    #[cfg(Py_3_12)]
    PyModuleDef_Slot {
        slot: pyo3_ffi::Py_mod_multiple_interpreters,
        value: pyo3_ffi::Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED,
    },
    // Sentinel: slot 0 ends the table.
    PyModuleDef_Slot {
        slot: 0,
        value: ptr::null_mut(),
    },
];

static mut DEFINITION: PyModuleDef = PyModuleDef {
    m_base: PyModuleDef_HEAD_INIT,
    m_name: c"mighty_patcher".as_ptr(),
    m_doc: c"Native core of mighty_patcher: in-place patching of live functions and classes."
        .as_ptr(),
    m_size: core::mem::size_of::<State>() as isize,
    m_methods: ptr::null_mut(),
    m_slots: (&raw mut SLOTS).cast(),
    m_traverse: Some(traverse),
    m_clear: Some(clear),
    m_free: Some(free),
};

/// The module definition, for `PyModuleDef_Init`. A static that lives for the whole process.
///
/// # Safety
/// GIL held (CPython's import machinery calls `PyInit` with it); called before the definition
/// is handed to CPython, which then owns its header.
pub unsafe fn definition() -> *mut PyModuleDef {
    let def = &raw mut DEFINITION;
    // SAFETY: the GIL serialises imports; the method table is a static too. Writing the same
    // pointer again on a later import changes nothing CPython reads.
    unsafe { (*def).m_methods = methods::table() };
    def
}

/// `Py_mod_exec`: fills the state and the module's attributes.
unsafe extern "C" fn exec(module: *mut PyObject) -> c_int {
    // SAFETY: CPython calls exec with the GIL held on a fresh module made from our definition.
    match unsafe { try_exec(module) } {
        Ok(()) => 0,
        Err(Raised) => -1,
    }
}

/// # Safety
/// As `exec`.
unsafe fn try_exec(module: *mut PyObject) -> PyResult<()> {
    abi::ffi::resolve()?;
    abi::version::init()?;
    // SAFETY: the module is ours, alive for the call.
    let state = unsafe { state::get(module) };
    state.set_code_extra_index(-1);
    state.install_parts(vec![reloading::new_part(), callbacks::new_part()]);

    // SAFETY: static NUL-terminated strings and a live base type; each call returns a new
    // reference or NULL with an exception set.
    let patch_error = unsafe {
        Owned::from_new(PyErr_NewExceptionWithDoc(
            c"mighty_patcher.PatchError".as_ptr(),
            c"A patch could not be applied; the objects involved were not changed.".as_ptr(),
            PyExc_Exception,
            ptr::null_mut(),
        ))?
    };
    // SAFETY: as above.
    let needs_restart = unsafe {
        Owned::from_new(PyErr_NewExceptionWithDoc(
            c"mighty_patcher.NeedsRestart".as_ptr(),
            c"The change cannot be made in place (a __slots__ layout, for example); restart \
              the program to apply it. Nothing was changed."
                .as_ptr(),
            patch_error.as_ptr(),
            ptr::null_mut(),
        ))?
    };
    // SAFETY: GIL held; the module is being executed; the specs are statics.
    let (reloading_type, watcher_type) = unsafe {
        (
            new_type(module, reloading::spec())?,
            new_type(module, watch::spec())?,
        )
    };
    // SAFETY: GIL held, during module exec.
    let watch_error = unsafe { watch::create_error()? };
    for (name, value) in [
        (c"PatchError", &patch_error),
        (c"NeedsRestart", &needs_restart),
        (c"Reloading", &reloading_type),
        (c"WatchError", &watch_error),
        (c"Watcher", &watcher_type),
        (c"__version__", &string("0.1.0")?),
        (c"BUILT_FOR", &string(abi::BUILT_VERSION)?),
    ] {
        // SAFETY: GIL held; the module is alive.
        unsafe { add(module, name, value)? };
    }
    fill(&state.patch_error, patch_error);
    fill(&state.needs_restart, needs_restart);
    fill(&state.reloading_type, reloading_type);
    fill(&state.watch_error, watch_error);

    // SAFETY: GIL held (module exec).
    state.set_code_extra_index(unsafe { keepalive::index()? });
    // Last: from here on the C API's entries may use this module's state.
    // SAFETY: GIL held; the module is executed but for this.
    unsafe { capi::publish(module) }
}

/// Stores a strong reference in an empty slot of the state.
fn fill(slot: &Slot, value: Owned) {
    let previous = slot.replace(value.into_raw());
    debug_assert!(previous.is_null(), "exec fills each slot once");
}

/// Creates a heap type from a static `spec` for `module` (the type keeps the module alive, and
/// its methods find the module's state through it).
///
/// # Safety
/// GIL held, during module exec; `spec` and its tables are statics, which CPython may read
/// after this returns.
unsafe fn new_type(module: *mut PyObject, spec: *mut PyType_Spec) -> PyResult<Owned> {
    // SAFETY: per this function's contract; returns a new reference.
    unsafe { Owned::from_new(PyType_FromModuleAndSpec(module, spec, ptr::null_mut())) }
}

/// `module.<name> = value`.
///
/// # Safety
/// `module` is a module object; the GIL is held.
unsafe fn add(module: *mut PyObject, name: &CStr, value: &Owned) -> PyResult<()> {
    // SAFETY: PyModule_AddObjectRef does not steal; `value` stays owned by the caller.
    if unsafe { PyModule_AddObjectRef(module, name.as_ptr(), value.as_ptr()) } < 0 {
        return Err(Raised);
    }
    Ok(())
}

/// The state's object slots, for traverse and clear.
fn slots(state: &State) -> [&Slot; 4] {
    [
        &state.patch_error,
        &state.needs_restart,
        &state.reloading_type,
        &state.watch_error,
    ]
}

/// `m_traverse`: the state's strong references to GC-tracked objects.
unsafe extern "C" fn traverse(module: *mut PyObject, visit: visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: called by the GC with the module alive; the state may be absent if the module was
    // never executed.
    let Some(state) = (unsafe { state::of(module) }) else {
        return 0;
    };
    for slot in slots(state) {
        let object = slot.get();
        if !object.is_null() {
            // SAFETY: a strong reference the state owns; `visit` and `arg` as the GC gave them.
            let status = unsafe { visit(object, arg) };
            if status != 0 {
                return status;
            }
        }
    }
    // A registry borrowed right now (it is never borrowed across Python code, so only a
    // collection triggered by an allocation inside a borrow could see that) is not traversed:
    // its references then count as external, and nothing is collected by mistake.
    if let Some(Ok(registry)) = callbacks::of_state(state).map(RefCell::try_borrow) {
        // SAFETY: `visit` and `arg` are the collector's, passed on unchanged during its
        // traversal of the module.
        return unsafe { registry.traverse(visit, arg) };
    }
    0
}

/// `m_clear`: drops the state's references (breaks cycles through the module).
unsafe extern "C" fn clear(module: *mut PyObject) -> c_int {
    // The C API's entries must not reach a state being torn down.
    capi::withdraw(module);
    // SAFETY: called by the GC (or `free`) with the module alive.
    let Some(state) = (unsafe { state::of(module) }) else {
        return 0;
    };
    // Everything leaves the state first; the decrefs, which may run Python code, come last.
    let callables = callbacks::of_state(state)
        .map(|r| r.borrow_mut().take_python())
        .unwrap_or_default();
    let objects = slots(state).map(|slot| slot.replace(ptr::null_mut()));
    drop(callables);
    for object in objects {
        // SAFETY: each was a strong reference the state owned, now taken out of it.
        unsafe { Py_XDECREF(object) };
    }
    0
}

/// `m_free`: everything `clear` drops, plus the parts' Rust data.
unsafe extern "C" fn free(module: *mut c_void) {
    let module = module.cast::<PyObject>();
    // SAFETY: called once when the module is deallocated, with the GIL held.
    unsafe {
        clear(module);
        if let Some(state) = state::of(module) {
            #[cfg(Py_3_12)]
            crate::heap::index::release(state);
            drop(state.take_parts());
        }
    }
}
