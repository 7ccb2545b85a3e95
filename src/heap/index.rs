//! The function index (3.12+): for some code objects, the live functions made from them, kept
//! current by a function watcher, so that `functions_using` answers without walking the heap.
//!
//! **The invariant: every function address the index holds is a live function.** The index
//! holds no reference to its functions (it must not keep closures alive), so this rests on the
//! watcher hearing every function die: CPython tells each registered watcher `DESTROY` from
//! `func_dealloc`, before anything is freed, and the watcher takes the function out. Hence:
//!
//! 1. Nothing reads a function address before the watcher is known to be registered *now*:
//!    each use first makes a function (`PyFunction_New`, from a code object the caller keeps
//!    alive) and checks that the watcher heard it (the *probe*). Our watcher is only ever
//!    registered together with a new, empty index, so a watcher heard now has heard every event
//!    since the index was made. A watcher that was cleared (by interpreter finalisation, which
//!    clears watchers without a word, or by someone else's `PyFunction_ClearWatcher`) fails the
//!    probe; the index is then forgotten without reading any of it (its code references are
//!    leaked, not released: they may belong to an interpreter that is gone).
//! 2. The watcher never misses an event: it runs with the GIL held (a free-threaded build runs
//!    with the GIL enabled while this module is loaded; with the GIL forced off no index is
//!    made), and the index is never borrowed across anything that can make or free a function
//!    (Python code, a decref, a Python allocation, which may collect). Should an event find it
//!    borrowed all the same, the slot is marked *lost* and the whole index is dropped before its
//!    next use.
//! 3. The watcher itself runs no Python code, drops no reference, sets no exception and
//!    changes no object: other watchers (issue 13: `patch::events` tells them `MODIFY_CODE`
//!    through CPython's own setter) see exactly what they would without it.
//!
//! **What it answers: for a code object it *covers*, every live function whose `__code__` is
//! that code object.** A code object is covered from the moment all its live functions are in
//! the index, and stays covered because the watcher follows each function from then on:
//! `CREATE` adds a function made from a covered code object; `MODIFY_CODE` moves a function
//! to its new code object if that one is covered, out of the index otherwise, whether CPython
//! tells it before the store (its setter) or after it (`patch::events`' second case), since a
//! function's place is looked up by the function, not by its current code; `DESTROY` takes it
//! out. (There is no `CLONED` function event in any version: 3.12-3.15 have `CREATE`,
//! `DESTROY`, `MODIFY_CODE`, `MODIFY_DEFAULTS`, `MODIFY_KWDEFAULTS` and 3.15 `MODIFY_QUALNAME`.)
//! A code object becomes covered in one of two ways:
//!
//! - *a walk*: asked about code objects it does not cover, the index walks the heap once
//!   (`PyUnstable_GC_VisitObjects`, whose predicate runs nothing that can make or free a
//!   function) for their functions, with the watcher already registered;
//! - *freshness*: a code object that nothing but its parent's constants references (a
//!   refcount of one) has no live function (a function holds a strong reference to its code), so
//!   [`track_new`] covers such nested code objects of newly compiled code before it runs, with
//!   no walk. The reloader does it for each statement it compiles, so that the closures of a
//!   factory it just patched stay covered through the next edit. A code object that is not
//!   fresh is simply left out: covering never trusts the caller.
//!
//! Only covered code objects cost anything when a function is made or freed: any other
//! function pays the check of a filter in the watcher (its code object's bucket on `CREATE`,
//! its own on `DESTROY`, see [`Filters`]); only what a filter lets through is looked up in
//! the index's hash tables.
//!
//! The index holds a strong reference to each covered code object, so that its address is not
//! reused while covered; a code object nothing else references any more (refcount 1) can make
//! no function again and is released ([`sweep`]) at the next use.
//!
//! What it does not see: a function whose `func_code` is written without `MODIFY_CODE` (by C
//! code other than CPython's setters) stays under its old code object, and is filtered out of
//! answers since its code is no longer the one asked about; a function resurrected by another
//! watcher's `DESTROY` callback has left the index. Neither can make it read freed memory.
//!
//! One index per interpreter, shared by every module object of ours in it (a re-import), each
//! counted as a user; the last user's `m_free` clears the watcher and releases the index. The
//! watcher callback has no argument to find its index with, so there are [`SLOTS`] static
//! slots, each with its own callback: an interpreter takes a free one. An interpreter that finds
//! none free, or none of CPython's 8 function watchers, walks the heap instead, as it does
//! when `MIGHTY_PATCHER_FUNCTION_INDEX=0`.

use core::cell::{Cell, RefCell};
use core::ffi::c_int;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use pyo3_ffi::{
    Py_REFCNT, PyCode_Check, PyDict_New, PyErr_Clear, PyFunction_New, PyFunctionObject, PyObject,
    PyTuple_GET_ITEM, PyTuple_GET_SIZE,
};

use super::walk::{AddressHasher, Addresses, collect};
use crate::abi::{self, ffi, layout::headers::PyCodeObject};
use crate::errors::{Pending, PyResult};
use crate::objects::Function;
use crate::refs::{Borrowed, Owned};
use crate::state::State;

type Map<V> = HashMap<usize, V, BuildHasherDefault<AddressHasher>>;
type Set = HashSet<usize, BuildHasherDefault<AddressHasher>>;

/// `PyFunction_WatchEvent` values (the same in 3.12-3.15).
const CREATE: c_int = 0;
const DESTROY: c_int = 1;
const MODIFY_CODE: c_int = 2;

/// `co_flags`: the code of a function defined inside another function.
const CO_NESTED: c_int = 0x10;

/// How many interpreters can have an index at once.
pub const SLOTS: usize = 4;

/// One interpreter's index.
struct Index {
    /// `PyInterpreterState_GetID` of its interpreter.
    interpreter: i64,
    /// Tells this index from an earlier one in the same slot (module states record it).
    serial: u64,
    /// CPython's ID of our watcher in that interpreter.
    watcher: c_int,
    /// Module objects that use it.
    users: usize,
    /// Covered code objects, by address: the strong reference keeps the address from being
    /// reused while it is covered.
    codes: Map<Owned>,
    /// Each indexed function (address; no reference), with the covered code object it was
    /// last known to run.
    functions: Map<usize>,
    /// How many heap walks it made.
    walks: u64,
    /// Its slot's filters, kept in step with `codes` and `functions`.
    filters: &'static Filters,
}

impl Index {
    /// What the watcher does with one event the filters let through. Reads the function's
    /// `func_code` on `CREATE` only; never dereferences anything else.
    fn hear(&mut self, event: c_int, func: *mut PyFunctionObject, new_value: *mut PyObject) {
        let address = func as usize;
        match event {
            CREATE => {
                // SAFETY: CPython passes the function it just made, alive for the call; a
                // plain read of a field checked by `build.rs`.
                let code = unsafe { (*func).func_code } as usize;
                self.add(address, code);
            }
            DESTROY => self.remove(address),
            MODIFY_CODE => {
                self.remove(address);
                self.add(address, new_value as usize);
            }
            _ => {}
        }
    }

    /// Indexes `function` under `code` if `code` is covered.
    fn add(&mut self, function: usize, code: usize) {
        if self.codes.contains_key(&code) && self.functions.insert(function, code).is_none() {
            self.filters.function_added(function);
        }
    }

    fn remove(&mut self, function: usize) {
        if self.functions.remove(&function).is_some() {
            self.filters.function_removed(function);
        }
    }

    /// Covers `code` (no change if it is covered already).
    ///
    /// # Safety
    /// GIL held; `code` is a live code object.
    unsafe fn cover(&mut self, code: *mut PyObject) {
        let filters = self.filters;
        self.codes.entry(code as usize).or_insert_with(|| {
            filters.code_added(code as usize);
            // SAFETY: a live object (this function's contract); an incref only.
            unsafe { Borrowed::from_ptr(code) }
                .expect("code")
                .to_owned()
        });
    }
}

/// What the watcher checks before it borrows the index: most functions are of code objects
/// the index does not cover, and must cost it as little as possible (a dozen instructions,
/// each event). Both filters may say "maybe" for an address the index does not hold, never
/// "no" for one it holds:
/// - a flag per bucket of code object addresses, set for each covered code object (and
///   cleared only when the covered set is rebuilt, see [`sweep`]);
/// - a count per bucket of function addresses, of the indexed functions in it (one that
///   reaches 255 stays there: "maybe" for good).
struct Filters {
    codes: [Cell<u8>; BUCKETS],
    functions: [Cell<u8>; BUCKETS],
}

/// Buckets of each filter.
const BUCKETS: usize = 4096;

impl Filters {
    const fn new() -> Filters {
        Filters {
            codes: [const { Cell::new(0) }; BUCKETS],
            functions: [const { Cell::new(0) }; BUCKETS],
        }
    }

    /// Objects are 16-byte aligned: the next 12 bits of the address (objects of one kind are
    /// spread over many pages, so these are about uniform; a clash only costs a lookup).
    #[inline(always)]
    fn bucket(address: usize) -> usize {
        (address >> 4) & (BUCKETS - 1)
    }

    #[inline(always)]
    fn code_may_be_covered(&self, code: usize) -> bool {
        self.codes[Filters::bucket(code)].get() != 0
    }

    fn code_added(&self, code: usize) {
        self.codes[Filters::bucket(code)].set(1);
    }

    fn codes_reset<'a>(&self, codes: impl Iterator<Item = &'a usize>) {
        for flag in &self.codes {
            flag.set(0);
        }
        for &code in codes {
            self.code_added(code);
        }
    }

    #[inline(always)]
    fn function_may_be_indexed(&self, function: usize) -> bool {
        self.functions[Filters::bucket(function)].get() != 0
    }

    fn function_added(&self, function: usize) {
        let count = &self.functions[Filters::bucket(function)];
        count.set(count.get().saturating_add(1));
    }

    fn function_removed(&self, function: usize) {
        let count = &self.functions[Filters::bucket(function)];
        if count.get() != u8::MAX {
            count.set(count.get().saturating_sub(1));
        }
    }

    fn clear(&self) {
        self.codes_reset([].iter());
        for count in &self.functions {
            count.set(0);
        }
    }
}

/// One slot: an index and what its watcher callback needs besides.
struct Slot {
    /// How many events the slot's watcher heard (the probe compares it).
    heard: Cell<u64>,
    /// An event found the index borrowed: it may have missed a death, drop it.
    lost: Cell<bool>,
    /// The index's filters, read without borrowing it.
    filters: Filters,
    index: RefCell<Option<Index>>,
}

/// The slots, reached by the watcher callbacks and by the module's functions, always with the
/// GIL held.
struct Slots([Slot; SLOTS]);

// SAFETY: every access happens with the GIL held (the watcher is called by CPython with it;
// the module's functions are called with it, and it is required on a free-threaded build
// before an index is made), and every interpreter that imports this module shares the main
// GIL (the module does not declare a per-interpreter GIL), so no two threads touch a slot at
// once. The `Owned` references inside are likewise only dropped with the GIL.
unsafe impl Sync for Slots {}

static TABLE: Slots = Slots(
    [const {
        Slot {
            heard: Cell::new(0),
            lost: Cell::new(false),
            filters: Filters::new(),
            index: RefCell::new(None),
        }
    }; SLOTS],
);

/// Serial numbers of indexes (0 is never given: a module state's 0 means "none").
static SERIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The watcher callback of slot `K`. See invariant 3. The filters first, inline; the index
/// only for what they let through, in a call that takes the callback's own arguments (so the
/// fast path moves no register and the slow one is a jump).
unsafe extern "C" fn on_event<const K: usize>(
    event: c_int,
    func: *mut PyFunctionObject,
    new_value: *mut PyObject,
) -> c_int {
    let slot = &TABLE.0[K];
    slot.heard.set(slot.heard.get().wrapping_add(1));
    let concerned = match event {
        // SAFETY: CPython passes the function it just made, alive for the call; a plain read
        // of a field checked by `build.rs`.
        CREATE => slot
            .filters
            .code_may_be_covered(unsafe { (*func).func_code } as usize),
        DESTROY => slot.filters.function_may_be_indexed(func as usize),
        _ => true,
    };
    if concerned {
        return hear::<K>(event, func, new_value);
    }
    0
}

/// The index's part of an event (see [`Index::hear`]), for slot `K`.
#[cold]
#[inline(never)]
extern "C" fn hear<const K: usize>(
    event: c_int,
    func: *mut PyFunctionObject,
    new_value: *mut PyObject,
) -> c_int {
    let slot = &TABLE.0[K];
    match slot.index.try_borrow_mut() {
        Ok(mut index) => {
            if let Some(index) = index.as_mut() {
                index.hear(event, func, new_value);
            }
        }
        Err(_) => slot.lost.set(true),
    }
    0
}

const CALLBACKS: [ffi::FunctionWatcher; SLOTS] =
    [on_event::<0>, on_event::<1>, on_event::<2>, on_event::<3>];

/// What a module state records of the index it uses: slot and serial, 0 for none.
fn encode(slot: usize, serial: u64) -> u64 {
    serial << 8 | slot as u64
}

fn decode(claim: u64) -> Option<(usize, u64)> {
    (claim != 0).then_some(((claim & 0xff) as usize, claim >> 8))
}

fn index_here(slot: usize, interpreter: i64) -> Option<u64> {
    TABLE.0[slot]
        .index
        .borrow()
        .as_ref()
        .filter(|index| index.interpreter == interpreter)
        .map(|index| index.serial)
}

/// Whether the index may be used in this process at all.
fn enabled() -> bool {
    std::env::var_os("MIGHTY_PATCHER_FUNCTION_INDEX").is_none_or(|v| v != "0")
}

/// Whether the GIL is enabled (always, but on a free-threaded build run with `PYTHON_GIL=0`).
fn gil_enabled() -> bool {
    if abi::require_gil().is_ok() {
        return true;
    }
    // SAFETY: `require_gil` set the exception it returned; dropped, the caller walks instead.
    unsafe { PyErr_Clear() };
    false
}

/// The slot of this interpreter's index, which this module then uses; a new index (and
/// watcher) if there is none. `None`: no index (the caller walks the heap).
///
/// # Safety
/// GIL held; `probe_code` is a live code object.
unsafe fn claim(state: &State, probe_code: Borrowed<'_>) -> PyResult<Option<usize>> {
    if !enabled() || !gil_enabled() {
        return Ok(None);
    }
    // SAFETY: GIL held (forwarded).
    let interpreter = unsafe { abi::interpreter_id()? };
    if let Some(slot) = (0..SLOTS).find(|&k| index_here(k, interpreter).is_some()) {
        // SAFETY: GIL held; the caller's code object is alive.
        if unsafe { probe(slot, probe_code)? } {
            // The probe made and freed a function, which may have run a collection and
            // finalizers: the index is looked up again.
            let mut guard = TABLE.0[slot].index.borrow_mut();
            if let Some(index) = guard.as_mut().filter(|i| i.interpreter == interpreter) {
                if decode(state.index_claim()) != Some((slot, index.serial)) {
                    index.users += 1;
                    state.set_index_claim(encode(slot, index.serial));
                }
                return Ok(Some(slot));
            }
        } else {
            // SAFETY: the probe failed: the watcher is gone, and nothing of the index may be
            // read.
            unsafe { discard(slot, false) };
        }
    }
    let Some(slot) = (0..SLOTS).find(|&k| TABLE.0[k].index.borrow().is_none()) else {
        return Ok(None);
    };
    let add = ffi::api().function_add_watcher.expect("resolved on 3.12+");
    // SAFETY: GIL held; the callback matches `PyFunction_WatchCallback`. -1 with an exception
    // when the interpreter's 8 watchers are taken: dropped, the caller walks the heap instead.
    let watcher = unsafe { add(CALLBACKS[slot]) };
    if watcher < 0 {
        // SAFETY: the failed call set an exception.
        unsafe { PyErr_Clear() };
        return Ok(None);
    }
    let serial = SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TABLE.0[slot].lost.set(false);
    *TABLE.0[slot].index.borrow_mut() = Some(Index {
        interpreter,
        serial,
        watcher,
        users: 1,
        codes: Map::default(),
        functions: Map::default(),
        walks: 0,
        filters: &TABLE.0[slot].filters,
    });
    state.set_index_claim(encode(slot, serial));
    Ok(Some(slot))
}

/// Whether slot `slot`'s watcher is registered in this interpreter now (invariant 1): makes a
/// function from `code` and checks that the watcher heard it.
///
/// # Safety
/// GIL held; `code` is a live code object.
unsafe fn probe(slot: usize, code: Borrowed<'_>) -> PyResult<bool> {
    let before = TABLE.0[slot].heard.get();
    // SAFETY: GIL held; new references or NULL with an exception. A function made from any
    // code object with a fresh dict as globals is never called; creating and dropping it tells
    // the watchers CREATE and DESTROY, which the index follows like any other function's.
    unsafe {
        let globals = Owned::from_new(PyDict_New())?;
        let function = Owned::from_new(PyFunction_New(code.as_ptr(), globals.as_ptr()))?;
        let heard = TABLE.0[slot].heard.get() != before;
        drop(function);
        Ok(heard)
    }
}

/// Empties slot `slot`. `live`: the watcher is ours and registered in this interpreter: it is
/// cleared, and the code objects released. Otherwise the index is forgotten unread, its
/// references leaked (they may belong to an interpreter that is gone).
///
/// # Safety
/// GIL held.
unsafe fn discard(slot: usize, live: bool) {
    let taken = TABLE.0[slot].index.borrow_mut().take();
    TABLE.0[slot].lost.set(false);
    TABLE.0[slot].filters.clear();
    let Some(index) = taken else {
        return;
    };
    if !live {
        core::mem::forget(index);
        return;
    }
    let clear = ffi::api()
        .function_clear_watcher
        .expect("resolved on 3.12+");
    // SAFETY: GIL held. ClearWatcher fails, with an exception, if finalisation cleared the
    // watcher already: that one is dropped, and any exception being handled kept.
    unsafe {
        let pending = Pending::take();
        if clear(index.watcher) < 0 {
            PyErr_Clear();
        }
        let _ = pending.restore();
    }
    // Out of the slot and unwatched: the decrefs may run any code.
    drop(index);
}

/// `m_free`: `state`'s module no longer uses its interpreter's index; the last user clears the
/// watcher and releases it.
///
/// # Safety
/// GIL held.
pub unsafe fn release(state: &State) {
    let Some((slot, serial)) = decode(state.index_claim()) else {
        return;
    };
    state.set_index_claim(0);
    // SAFETY: GIL held (forwarded).
    let Ok(interpreter) = (unsafe { abi::interpreter_id() }) else {
        // SAFETY: the failed call set an exception.
        unsafe { PyErr_Clear() };
        return;
    };
    if slot >= SLOTS || index_here(slot, interpreter) != Some(serial) {
        return;
    }
    let last = {
        let mut guard = TABLE.0[slot].index.borrow_mut();
        let index = guard.as_mut().expect("checked above");
        index.users -= 1;
        index.users == 0
    };
    if last {
        // SAFETY: GIL held; the index of this interpreter, with the watcher that serves it.
        unsafe { discard(slot, true) };
    }
}

/// `func.__code__`'s `PyCodeObject`.
fn code_struct(code: *mut PyObject) -> *mut PyCodeObject {
    code.cast()
}

/// `co_flags & CO_NESTED`.
///
/// # Safety
/// `code` is a live code object.
unsafe fn nested(code: *mut PyObject) -> bool {
    // SAFETY: a plain read of a field of bindgen's declaration of this interpreter's struct.
    unsafe { (*code_struct(code)).co_flags & CO_NESTED != 0 }
}

/// The code objects among `code`'s constants (borrowed from it).
///
/// # Safety
/// GIL held; `code` is a live code object.
unsafe fn children(code: *mut PyObject) -> Vec<*mut PyObject> {
    // SAFETY: `co_consts` is a tuple the code object owns; its items are borrowed from it.
    unsafe {
        let consts: *mut PyObject = (*code_struct(code)).co_consts.cast();
        (0..PyTuple_GET_SIZE(consts))
            .map(|i| PyTuple_GET_ITEM(consts, i))
            .filter(|&c| PyCode_Check(c) != 0)
            .collect()
    }
}

/// Code objects nothing else references any more: released (returned, for the caller to drop
/// once the index is no longer borrowed), with whatever the index still filed under them.
///
/// On a free-threaded build code objects have deferred reference counts, which never read 1:
/// there a code object no indexed function runs is released instead. That is always safe (a
/// code object no longer covered is walked for when asked about again), only slower.
fn sweep(index: &mut Index) -> Vec<Owned> {
    #[cfg(Py_GIL_DISABLED)]
    let running: Set = index.functions.values().copied().collect();
    let unused = |address: usize, code: &Owned| {
        // SAFETY: the index's own strong reference keeps the object alive; reading its count.
        let alone = unsafe { Py_REFCNT(code.as_ptr()) } == 1;
        #[cfg(Py_GIL_DISABLED)]
        let alone = alone || !running.contains(&address);
        #[cfg(not(Py_GIL_DISABLED))]
        let _ = address;
        alone
    };
    let dead: Set = index
        .codes
        .iter()
        .filter(|&(&address, code)| unused(address, code))
        .map(|(&address, _)| address)
        .collect();
    if dead.is_empty() {
        return Vec::new();
    }
    let filters = index.filters;
    index.functions.retain(|&function, code| {
        let keep = !dead.contains(code);
        if !keep {
            filters.function_removed(function);
        }
        keep
    });
    let released = dead
        .iter()
        .map(|address| index.codes.remove(address).expect("listed above"))
        .collect();
    filters.codes_reset(index.codes.keys());
    released
}

/// Every live function whose code is one of `codes`, from this interpreter's index (made on
/// first use, with one heap walk for whatever it does not cover yet); `None` when there is no
/// index (the caller walks the heap).
///
/// # Safety
/// GIL held; `codes` are code objects.
pub unsafe fn functions_using(state: &State, codes: &[Owned]) -> PyResult<Option<Vec<Owned>>> {
    // SAFETY: GIL held (forwarded); the caller's code objects are alive.
    let Some(slot) = (unsafe { claim(state, codes[0].borrow())? }) else {
        return Ok(None);
    };
    let table = &TABLE.0[slot];
    // Released at the very end: a decref may run any code, which must not find the index
    // half-used (or free the last module object, and the index with it, under our feet).
    let released = {
        let mut guard = table.index.borrow_mut();
        sweep(guard.as_mut().expect("claimed"))
    };
    let uncovered: Vec<&Owned> = {
        let guard = table.index.borrow();
        let index = guard.as_ref().expect("claimed");
        codes
            .iter()
            .filter(|c| !index.codes.contains_key(&(c.as_ptr() as usize)))
            .collect()
    };
    if !uncovered.is_empty() {
        // SAFETY: GIL held; the watcher is registered (claimed and probed just now).
        unsafe { walk(slot, &uncovered)? };
    }
    if table.lost.get() {
        // SAFETY: GIL held; the watcher is ours and live (probed), the index unreliable.
        unsafe { discard(slot, true) };
        drop(released);
        return Ok(None);
    }
    let guard = table.index.borrow();
    let index = guard.as_ref().expect("claimed");
    let asked = Addresses::new(codes.iter().map(|c| c.as_ptr() as usize).collect());
    let mut found = Vec::new();
    for (&function, &code) in &index.functions {
        if !asked.contains(code) {
            continue;
        }
        // SAFETY: the invariant: an indexed function is alive. Its code is checked (one written
        // without an event is filed under its old code), then a reference taken: an incref,
        // which runs nothing.
        unsafe {
            let function = function as *mut PyFunctionObject;
            if (*function).func_code as usize == code {
                found.push(
                    Borrowed::from_ptr(function.cast())
                        .expect("indexed")
                        .to_owned(),
                );
            }
        }
    }
    drop(guard);
    drop(released);
    Ok(Some(found))
}

/// Covers `uncovered` with one heap walk for their functions.
///
/// # Safety
/// GIL held; slot `slot` holds this interpreter's index, whose watcher is registered.
unsafe fn walk(slot: usize, uncovered: &[&Owned]) -> PyResult<()> {
    let table = &TABLE.0[slot];
    let wanted = Addresses::new(uncovered.iter().map(|c| c.as_ptr() as usize).collect());
    let mut found: Vec<(usize, usize)> = Vec::new();
    let mut pick = |obj: *mut PyObject| {
        // SAFETY: `obj` is alive while the collector shows it to us.
        let object = unsafe { Borrowed::from_ptr(obj) }.expect("live");
        if let Some(function) = Function::cast(object)
            && wanted.contains(function.code_address())
        {
            found.push((obj as usize, function.code_address()));
        }
        false
    };
    // SAFETY: GIL held; the predicate reads a type and a field, allocates no Python object and
    // keeps nothing (it answers false): no reference is taken or dropped, so no function is
    // made or freed during the walk, and the watcher hears nothing the walk should have seen.
    unsafe { collect(&mut pick)? };
    // Nothing ran since the walk: every function and code object seen is still alive.
    let mut guard = table.index.borrow_mut();
    let index = guard.as_mut().expect("claimed");
    for code in uncovered {
        // SAFETY: the caller's code object, alive.
        unsafe { index.cover(code.as_ptr()) };
    }
    for (function, code) in found {
        index.add(function, code);
    }
    index.walks += 1;
    Ok(())
}

/// Covers the nested code objects of `code`, recursively, that nothing but their parent's
/// constants references (no function made from them is alive); never walks. Makes this
/// interpreter's index (registers the watcher, covering nothing yet) if there is none, so
/// that the code of the very first reload is followed from the start: the first closure edit
/// walks for the closures made before it, and the next one finds those and the ones made
/// since in the index. The reloader calls it on each statement it compiles, before it runs.
///
/// # Safety
/// GIL held; `code` is a live code object.
pub unsafe fn track_new(state: &State, code: Borrowed<'_>) -> PyResult<()> {
    // SAFETY: GIL held (forwarded); `code` is alive.
    let Some(slot) = (unsafe { claim(state, code)? }) else {
        return Ok(());
    };
    let mut guard = TABLE.0[slot].index.borrow_mut();
    let index = guard.as_mut().expect("claimed");
    let mut stack = vec![code.as_ptr()];
    // SAFETY: GIL held; each code object is alive, held by its parent's constants; reading
    // counts and fields, increfs only (`cover`).
    unsafe {
        while let Some(parent) = stack.pop() {
            for child in children(parent) {
                if Py_REFCNT(child) == 1 && nested(child) {
                    index.cover(child);
                }
                stack.push(child);
            }
        }
    }
    Ok(())
}

/// What the index of this interpreter holds: (covered code objects, indexed functions, heap
/// walks, watcher ID), or `None` without one. Does not make one.
///
/// # Safety
/// GIL held.
pub unsafe fn stats() -> PyResult<Option<(usize, usize, u64, c_int)>> {
    // SAFETY: GIL held (forwarded).
    let interpreter = unsafe { abi::interpreter_id()? };
    Ok((0..SLOTS).find_map(|k| {
        let guard = TABLE.0[k].index.borrow();
        guard
            .as_ref()
            .filter(|index| index.interpreter == interpreter)
            .map(|index| {
                (
                    index.codes.len(),
                    index.functions.len(),
                    index.walks,
                    index.watcher,
                )
            })
    }))
}
