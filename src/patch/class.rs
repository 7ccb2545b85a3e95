//! Patching a class in place from a newly built version of it.
//!
//! The old class keeps its identity, so its instances, its subclasses and every reference to
//! it stay valid. Members go through `type.__setattr__` (CPython's `type_setattro`), which
//! stores into the class dict, installs the C slot of a dunder (`__repr__`, `__add__`,
//! `__len__`, ...) in the class and its subclasses, and invalidates the type's version tag,
//! so warm attribute and call sites specialised on the class let go.
//!
//! What the old class had is kept where that keeps references valid: a method present in both
//! versions is patched in place (`patch::function`), so bound methods, registries and
//! decorators holding the old function follow; the same for the function inside a
//! `staticmethod` or `classmethod`, a property's accessors, and nested classes (recursively).
//!
//! Zero-argument `super()` and `__class__` read a cell that the compiler shares among the
//! methods of one class body. The new methods' cell points at the new class; it is re-pointed
//! at the old class before any method is patched in.
//!
//! What cannot change in place raises `NeedsRestart` before anything is changed: a different
//! `__slots__` or instance layout, bases whose layout CPython refuses, a metaclass it cannot
//! switch. Everything is checked and every new value is built first; the commit that follows
//! runs no Python code except a metaclass's `mro()` (when bases change) and `__set_name__` of
//! newly added descriptors, both after the class is consistent again.

use core::ffi::c_int;
use core::ptr;

use pyo3_ffi::{
    Py_EQ, Py_TPFLAGS_HEAPTYPE, Py_TYPE, PyCell_Get, PyCell_Set, PyDict_Check,
    PyDict_GetItemWithError, PyDict_Next, PyErr_Occurred, PyExc_TypeError, PyFunction_Check,
    PyFunctionObject, PyObject, PyObject_CallMethodObjArgs, PyObject_GetAttrString,
    PyObject_RichCompareBool, PyObject_SetAttrString, PySequence_Contains, PyTuple_GET_ITEM,
    PyTuple_GET_SIZE, PyType_Check, PyType_Modified, PyType_Type, PyTypeObject,
    PyUnicode_FromString,
};

use crate::errors::{PyResult, Raised, raise, take_message, text, utf8};
use crate::patch::function::patch_function_unchecked;
use crate::refs::{Borrowed, Owned, new_ref_opt};
use crate::state::State;

/// Class dict entries that belong to the class object itself and are never copied or removed.
const OWN_ENTRIES: &[&str] = &[
    "__dict__",
    "__weakref__",
    "__slots__",
    "__classcell__",
    "__classdictcell__",
    // ABCMeta's registry of virtual subclasses and caches: keep the old class's.
    "_abc_impl",
];

/// Which members to take from the new class and which to remove.
pub struct Filter<'a> {
    /// Only these names are updated (`None`: every name whose value differs).
    pub update: Option<Borrowed<'a>>,
    /// Only these names are removed (`None`: every name the new class lacks).
    pub remove: Option<Borrowed<'a>>,
}

impl<'a> Filter<'a> {
    /// The filter `patch_class(old, new, update=..., remove=...)` asks for: an absent argument
    /// or None means no filter; a `str` is refused (it is a collection of characters, not of
    /// names).
    pub fn from_arguments(
        update: Option<Borrowed<'a>>,
        remove: Option<Borrowed<'a>>,
    ) -> PyResult<Filter<'a>> {
        // SAFETY: Py_None returns the None singleton (borrowed, never freed).
        let none = unsafe { pyo3_ffi::Py_None() };
        let not_none = |obj: Option<Borrowed<'a>>| obj.filter(|o| o.as_ptr() != none);
        let filter = Filter {
            update: not_none(update),
            remove: not_none(remove),
        };
        for f in [filter.update, filter.remove].into_iter().flatten() {
            // SAFETY: `f` is alive; PyUnicode_Check only reads its type.
            if unsafe { pyo3_ffi::PyUnicode_Check(f.as_ptr()) } != 0 {
                return Err(type_error(
                    "patch_class(): update and remove take collections of names, not a str",
                ));
            }
        }
        Ok(filter)
    }
}

/// What to do to one class, worked out before anything changes.
#[derive(Default)]
struct Plan {
    class: Option<Owned>,
    new_bases: Option<Owned>,
    new_metaclass: Option<Owned>,
    class_cells: Vec<Owned>,
    /// (old function, new function), patched in place.
    functions: Vec<(Owned, Owned)>,
    /// (old wrapper, new wrapper): staticmethod/classmethod whose `__dict__` is refreshed.
    wrappers: Vec<(Owned, Owned)>,
    /// (old property, new doc).
    property_docs: Vec<(Owned, Owned)>,
    nested: Vec<Plan>,
    /// (name, new value, old value kept until the end).
    set: Vec<(Owned, Owned, Option<Owned>)>,
    /// (name, old value kept until the end).
    delete: Vec<(Owned, Owned)>,
}

fn type_error(message: &str) -> Raised {
    // SAFETY: static exception type.
    raise(unsafe { PyExc_TypeError }, message)
}

fn qualname(cls: Borrowed<'_>) -> String {
    // SAFETY: `cls` is a live type; the attribute lookup returns a new reference or NULL.
    match unsafe {
        Owned::from_new(PyObject_GetAttrString(
            cls.as_ptr(),
            c"__qualname__".as_ptr(),
        ))
    } {
        Ok(name) => text(name.borrow()),
        Err(Raised) => {
            take_message();
            "<class>".to_owned()
        }
    }
}

fn as_type(obj: Borrowed<'_>) -> *mut PyTypeObject {
    obj.as_ptr().cast()
}

/// Patches `old` in place so that it behaves like `new`.
///
/// # Safety
/// GIL held; `state` is this module's state.
pub unsafe fn patch_class(
    state: &State,
    old: Borrowed<'_>,
    new: Borrowed<'_>,
    filter: &Filter<'_>,
) -> PyResult<()> {
    crate::abi::require_gil()?;
    // SAFETY: both arguments are alive for the call; the plan holds strong references to all
    // it touches, so nothing it refers to can disappear while it is applied. The GIL check
    // `commit` relies on was just made.
    unsafe {
        let plan = prepare(state, old, new, filter)?;
        commit(state, plan)
    }
}

unsafe fn prepare(
    state: &State,
    old: Borrowed<'_>,
    new: Borrowed<'_>,
    filter: &Filter<'_>,
) -> PyResult<Plan> {
    // SAFETY: PyType_Check and PyDict_Check read the type only.
    let members_only = unsafe { PyDict_Check(new.as_ptr()) != 0 };
    // SAFETY: as above.
    if unsafe {
        PyType_Check(old.as_ptr()) == 0 || !(members_only || PyType_Check(new.as_ptr()) != 0)
    } {
        return Err(type_error(
            "patch_class() takes a class and its new version (a class, or a dict of members)",
        ));
    }
    if members_only {
        // SAFETY: `old` is a live type, `new` a live dict; same contract as ours.
        return unsafe { prepare_members(state, old, new, filter) };
    }
    let (o, n) = (as_type(old), as_type(new));
    // SAFETY: both are live type objects; reading their flags, sizes and tuples is plain
    // field access on layouts checked by `abi::layout`.
    unsafe {
        for t in [o, n] {
            if pyo3_ffi::PyType_GetFlags(t) & Py_TPFLAGS_HEAPTYPE == 0 {
                let name = core::ffi::CStr::from_ptr((*t).tp_name).to_string_lossy();
                return Err(type_error(&format!(
                    "{name} is a built-in or extension type; only classes defined in Python \
                     can be patched"
                )));
            }
        }
        let mut plan = Plan {
            class: Some(old.to_owned()),
            ..Plan::default()
        };
        if old.is(new) {
            return Ok(plan);
        }
        check_layout(state, old, new)?;
        if !same_object_tuple((*o).tp_bases, (*n).tp_bases)? {
            plan.new_bases = new_ref_opt((*n).tp_bases);
        }
        if !ptr::eq(Py_TYPE(old.as_ptr()), Py_TYPE(new.as_ptr())) {
            plan.new_metaclass = new_ref_opt(Py_TYPE(new.as_ptr()).cast());
        }
        let old_dict = Borrowed::from_ptr((*o).tp_dict).expect("heap types have a dict");
        let new_dict = Borrowed::from_ptr((*n).tp_dict).expect("heap types have a dict");
        if plan.new_bases.is_some() {
            check_own_descriptors(state, old, old_dict, new_dict)?;
        }
        plan_members(state, &mut plan, old, new, new_dict, filter, true)?;
        Ok(plan)
    }
}

/// The members-only form, `patch_class(old, {name: value, ...})`: the new values come from a
/// class body run without its class statement (no metaclass, decorator or
/// `__init_subclass__` ran), so there are no bases, metaclass or layout to compare. The
/// caller has pointed the body's `__class__` cell at `old` already.
///
/// # Safety
/// GIL held; `old` is a live type and `members` a live dict.
unsafe fn prepare_members(
    state: &State,
    old: Borrowed<'_>,
    members: Borrowed<'_>,
    filter: &Filter<'_>,
) -> PyResult<Plan> {
    let o = as_type(old);
    // SAFETY: `old` is a live type; its flags and dict are plain fields (layout checked).
    unsafe {
        if pyo3_ffi::PyType_GetFlags(o) & Py_TPFLAGS_HEAPTYPE == 0 {
            let name = core::ffi::CStr::from_ptr((*o).tp_name).to_string_lossy();
            return Err(type_error(&format!(
                "{name} is a built-in or extension type; only classes defined in Python can be \
                 patched"
            )));
        }
        let mut plan = Plan {
            class: Some(old.to_owned()),
            ..Plan::default()
        };
        // Nested classes are recognised by their qualname under the old class's. Members the
        // dict lacks are removed only when `remove` names them: the dict holds what changed.
        plan_members(state, &mut plan, old, old, members, filter, false)?;
        Ok(plan)
    }
}

/// Records in `plan` what to set, patch in place and delete so that `old`'s members become
/// those of `new_dict` (filtered). `new` is the class `new_dict` belongs to, whose
/// `__class__` cells are re-pointed at `old` (`old` itself in the members-only form).
/// `remove_missing`: without a `remove` filter, members `new_dict` lacks are removed.
///
/// # Safety
/// GIL held; `old` and `new` are live types, `new_dict` a live dict.
unsafe fn plan_members(
    state: &State,
    plan: &mut Plan,
    old: Borrowed<'_>,
    new: Borrowed<'_>,
    new_dict: Borrowed<'_>,
    filter: &Filter<'_>,
    remove_missing: bool,
) -> PyResult<()> {
    let o = as_type(old);
    // SAFETY: live heap types and dicts (caller); lookups take their own references.
    unsafe {
        let old_dict = Borrowed::from_ptr((*o).tp_dict).expect("heap types have a dict");
        let slots = slot_names(o);
        let own = |name: &str| OWN_ENTRIES.contains(&name) || slots.iter().any(|s| s == name);

        for (name, value) in dict_items(new_dict) {
            let key = utf8(name.borrow()).unwrap_or_default();
            if own(&key) || !wanted(filter.update, name.borrow())? {
                continue;
            }
            collect_class_cells(value.borrow(), new, &mut plan.class_cells, 4);
            let current = lookup(old_dict, name.borrow())?;
            match current {
                Some(current) if current.borrow().is(value.borrow()) => {}
                Some(current) => {
                    if !plan_in_place(state, plan, &current, &value, new)? {
                        plan.set.push((name, value, Some(current)));
                    }
                }
                None => plan.set.push((name, value, None)),
            }
        }
        for (name, value) in dict_items(old_dict) {
            let key = utf8(name.borrow()).unwrap_or_default();
            if own(&key) || lookup(new_dict, name.borrow())?.is_some() {
                continue;
            }
            let remove = match filter.remove {
                None => remove_missing,
                Some(_) => wanted(filter.remove, name.borrow())?,
            };
            if remove {
                plan.delete.push((name, value));
            }
        }
    }
    Ok(())
}

/// Whether `name` passes an optional name filter (a set, list or tuple of names).
fn wanted(filter: Option<Borrowed<'_>>, name: Borrowed<'_>) -> PyResult<bool> {
    let Some(filter) = filter else {
        return Ok(true);
    };
    // SAFETY: both alive; PySequence_Contains works for any container and may fail.
    match unsafe { PySequence_Contains(filter.as_ptr(), name.as_ptr()) } {
        -1 => Err(Raised),
        found => Ok(found == 1),
    }
}

/// Decides whether `current` can become `value` in place; records how if so.
///
/// # Safety
/// GIL held; all arguments alive.
unsafe fn plan_in_place(
    state: &State,
    plan: &mut Plan,
    current: &Owned,
    value: &Owned,
    new_class: Borrowed<'_>,
) -> PyResult<bool> {
    let (c, v) = (current.as_ptr(), value.as_ptr());
    // SAFETY: type checks and attribute reads on live objects.
    unsafe {
        if PyFunction_Check(c) != 0 && PyFunction_Check(v) != 0 {
            plan.functions.push((current.clone(), value.clone()));
            return Ok(true);
        }
        let same_type = ptr::eq(Py_TYPE(c), Py_TYPE(v));
        let is = |t: *mut PyTypeObject| ptr::eq(Py_TYPE(c), t);
        if same_type
            && (is(&raw mut pyo3_ffi::PyStaticMethod_Type)
                || is(&raw mut pyo3_ffi::PyClassMethod_Type))
        {
            let (old_f, new_f) = (attr(c, c"__func__")?, attr(v, c"__func__")?);
            if PyFunction_Check(old_f.as_ptr()) != 0 && PyFunction_Check(new_f.as_ptr()) != 0 {
                plan.functions.push((old_f, new_f));
                plan.wrappers.push((current.clone(), value.clone()));
                return Ok(true);
            }
            return Ok(false);
        }
        if same_type && is(&raw mut pyo3_ffi::PyProperty_Type) {
            let mut pairs = Vec::new();
            for accessor in [c"fget", c"fset", c"fdel"] {
                let (a, b) = (attr(c, accessor)?, attr(v, accessor)?);
                let (fa, fb) = (
                    PyFunction_Check(a.as_ptr()) != 0,
                    PyFunction_Check(b.as_ptr()) != 0,
                );
                if fa && fb {
                    pairs.push((a, b));
                } else if !(a.as_ptr() == pyo3_ffi::Py_None() && b.as_ptr() == pyo3_ffi::Py_None())
                {
                    return Ok(false);
                }
            }
            plan.functions.extend(pairs);
            plan.property_docs
                .push((current.clone(), attr(v, c"__doc__")?));
            return Ok(true);
        }
        if PyType_Check(c) != 0 && PyType_Check(v) != 0 && is_nested(current, value, new_class)? {
            let filter = Filter {
                update: None,
                remove: None,
            };
            plan.nested
                .push(prepare(state, current.borrow(), value.borrow(), &filter)?);
            return Ok(true);
        }
    }
    Ok(false)
}

/// A class defined in the body of `outer` (its qualname is `Outer.Name`), in both versions.
unsafe fn is_nested(current: &Owned, value: &Owned, outer: Borrowed<'_>) -> PyResult<bool> {
    let (a, b) = (qualname(current.borrow()), qualname(value.borrow()));
    Ok(a == b && b.starts_with(&format!("{}.", qualname(outer))))
}

/// `getattr(obj, name)` as a new reference.
unsafe fn attr(obj: *mut PyObject, name: &core::ffi::CStr) -> PyResult<Owned> {
    // SAFETY: `obj` is alive (caller); returns a new reference or NULL with an exception.
    unsafe { Owned::from_new(PyObject_GetAttrString(obj, name.as_ptr())) }
}

/// `dict[key]` as a new reference, `None` if absent.
///
/// # Safety
/// `dict` is a live dict; GIL held.
unsafe fn lookup(dict: Borrowed<'_>, key: Borrowed<'_>) -> PyResult<Option<Owned>> {
    // SAFETY: `dict` is a live dict; the result is borrowed from it, so we take our own
    // reference at once.
    unsafe {
        let found = PyDict_GetItemWithError(dict.as_ptr(), key.as_ptr());
        if found.is_null() && !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
        Ok(new_ref_opt(found))
    }
}

/// The items of a dict, as owned pairs (so the dict may change afterwards).
fn dict_items(dict: Borrowed<'_>) -> Vec<(Owned, Owned)> {
    let mut items = Vec::new();
    let mut pos = 0;
    let (mut key, mut value) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: PyDict_Next yields borrowed references valid while the dict is unchanged; we
    // take our own at once and change nothing during the loop.
    unsafe {
        while PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) != 0 {
            items.push((
                Borrowed::from_ptr(key).expect("key").to_owned(),
                Borrowed::from_ptr(value).expect("value").to_owned(),
            ));
        }
    }
    items
}

/// Compares two tuples (or NULLs) element by element, by identity.
unsafe fn same_object_tuple(a: *mut PyObject, b: *mut PyObject) -> PyResult<bool> {
    if a.is_null() || b.is_null() {
        return Ok(a == b);
    }
    // SAFETY: both are live tuples (a type's tp_bases).
    unsafe {
        let n = PyTuple_GET_SIZE(a);
        if n != PyTuple_GET_SIZE(b) {
            return Ok(false);
        }
        Ok((0..n).all(|i| PyTuple_GET_ITEM(a, i) == PyTuple_GET_ITEM(b, i)))
    }
}

/// The names of the member descriptors `__slots__` created (`ht_slots`, mangled).
unsafe fn slot_names(t: *mut PyTypeObject) -> Vec<String> {
    // SAFETY: a heap type is a PyHeapTypeObject; ht_slots is NULL or a tuple of str.
    unsafe {
        let slots = (*t.cast::<pyo3_ffi::PyHeapTypeObject>()).ht_slots;
        if slots.is_null() {
            return Vec::new();
        }
        (0..PyTuple_GET_SIZE(slots))
            .filter_map(|i| Borrowed::from_ptr(PyTuple_GET_ITEM(slots, i)))
            .filter_map(utf8)
            .collect()
    }
}

/// Refuses layouts that existing instances could not follow.
unsafe fn check_layout(state: &State, old: Borrowed<'_>, new: Borrowed<'_>) -> PyResult<()> {
    let (o, n) = (as_type(old), as_type(new));
    // SAFETY: live heap types (checked by the caller).
    unsafe {
        let (os, ns) = (
            (*o.cast::<pyo3_ffi::PyHeapTypeObject>()).ht_slots,
            (*n.cast::<pyo3_ffi::PyHeapTypeObject>()).ht_slots,
        );
        let slots_equal = if os.is_null() || ns.is_null() {
            os.is_null() && ns.is_null()
        } else {
            match PyObject_RichCompareBool(os, ns, Py_EQ) {
                -1 => return Err(Raised),
                equal => equal == 1,
            }
        };
        let show = |s: *mut PyObject| Borrowed::from_ptr(s).map_or("none".to_owned(), text);
        if !slots_equal {
            return Err(raise(
                state.needs_restart,
                &format!(
                    "the __slots__ of {} changed from {} to {}: instances made before the edit \
                     have the old layout; restart to apply this change",
                    qualname(old),
                    show(os),
                    show(ns)
                ),
            ));
        }
        let layout = |t: *mut PyTypeObject| {
            (
                (*t).tp_basicsize,
                (*t).tp_itemsize,
                (*t).tp_dictoffset,
                (*t).tp_weaklistoffset,
            )
        };
        if layout(o) != layout(n) {
            return Err(raise(
                state.needs_restart,
                &format!(
                    "the instance layout of {} changed (its bases or __slots__ add or remove \
                     C-level fields): instances made before the edit cannot follow; restart \
                     to apply this change",
                    qualname(old)
                ),
            ));
        }
    }
    Ok(())
}

/// A class reaches the `__dict__` and `__weakref__` of its instances through descriptors that
/// `type_new` stores in the first class of the hierarchy that added them, and that apply to
/// instances of that class only. When the new bases no longer provide them and the new class
/// carries its own (it is the first in its own hierarchy to add them), the old class, which
/// relied on its old bases, would be left without: `obj.__dict__` and `vars(obj)` would fail
/// on every instance (CPython 3.15 allows such a `__bases__` assignment, earlier versions
/// refuse it). The new class's descriptors cannot be moved over: they check their own type.
fn check_own_descriptors(
    state: &State,
    old: Borrowed<'_>,
    old_dict: Borrowed<'_>,
    new_dict: Borrowed<'_>,
) -> PyResult<()> {
    for name in [c"__dict__", c"__weakref__"] {
        // SAFETY: a static NUL-terminated string; a new reference or NULL with an exception.
        let key = unsafe { Owned::from_new(PyUnicode_FromString(name.as_ptr())) }?;
        // SAFETY: both are the `tp_dict` of live heap types (the caller's), so live dicts;
        // `key` is a live str; `lookup` returns with no exception set unless it fails.
        let (in_old, in_new) = unsafe {
            (
                lookup(old_dict, key.borrow())?.is_some(),
                lookup(new_dict, key.borrow())?.is_some(),
            )
        };
        if in_new && !in_old {
            return Err(raise(
                state.needs_restart,
                &format!(
                    "the bases of {} changed and its instances would lose the {} their old \
                     bases gave them; restart to apply this change",
                    qualname(old),
                    name.to_string_lossy()
                ),
            ));
        }
    }
    Ok(())
}

/// Finds `__class__` cells that point at `new_class` in `value` (a function, a
/// staticmethod/classmethod, a property), also inside functions captured by closures
/// (decorator wrappers), down to `depth` levels.
fn collect_class_cells(
    value: Borrowed<'_>,
    new_class: Borrowed<'_>,
    out: &mut Vec<Owned>,
    depth: u32,
) {
    if depth == 0 {
        return;
    }
    // SAFETY: reads of live objects; attribute errors are cleared, they only mean "none here".
    unsafe {
        let obj = value.as_ptr();
        if PyFunction_Check(obj) == 0 {
            let is = |t: *mut PyTypeObject| ptr::eq(Py_TYPE(obj), t);
            if !(is(&raw mut pyo3_ffi::PyStaticMethod_Type)
                || is(&raw mut pyo3_ffi::PyClassMethod_Type)
                || is(&raw mut pyo3_ffi::PyProperty_Type))
            {
                return;
            }
            for name in [c"__func__", c"fget", c"fset", c"fdel"] {
                match Owned::from_new(PyObject_GetAttrString(obj, name.as_ptr())) {
                    Ok(inner) if PyFunction_Check(inner.as_ptr()) != 0 => {
                        collect_class_cells(inner.borrow(), new_class, out, depth - 1);
                    }
                    Ok(_) => {}
                    Err(Raised) => {
                        pyo3_ffi::PyErr_Clear();
                    }
                }
            }
            return;
        }
        let func = obj.cast::<PyFunctionObject>();
        let closure = (*func).func_closure;
        if closure.is_null() {
            return;
        }
        let Ok(names) = Owned::from_new(PyObject_GetAttrString(
            (*func).func_code,
            c"co_freevars".as_ptr(),
        )) else {
            pyo3_ffi::PyErr_Clear();
            return;
        };
        for i in 0..PyTuple_GET_SIZE(closure) {
            let cell = PyTuple_GET_ITEM(closure, i);
            let content = PyCell_Get(cell);
            let Some(content) = Owned::from_new_opt(content) else {
                pyo3_ffi::PyErr_Clear();
                continue;
            };
            let name = Borrowed::from_ptr(PyTuple_GET_ITEM(names.as_ptr(), i)).and_then(utf8);
            if content.borrow().is(new_class) && name.as_deref() == Some("__class__") {
                if !out.iter().any(|c| c.as_ptr() == cell) {
                    out.push(Borrowed::from_ptr(cell).expect("cell").to_owned());
                }
            } else if PyFunction_Check(content.as_ptr()) != 0 {
                collect_class_cells(content.borrow(), new_class, out, depth - 1);
            }
        }
    }
}

/// `type.__setattr__(cls, name, value)`; `value` NULL deletes.
unsafe fn type_setattr(
    cls: *mut PyObject,
    name: *mut PyObject,
    value: *mut PyObject,
) -> PyResult<()> {
    // SAFETY: PyType_Type's tp_setattro is `type_setattro`, valid for any heap type; it stores
    // into the class dict, updates slots and calls PyType_Modified.
    let status: c_int = unsafe {
        let setattro = PyType_Type.tp_setattro.expect("type has setattro");
        setattro(cls, name, value)
    };
    if status < 0 { Err(Raised) } else { Ok(()) }
}

/// Applies a plan made by [`prepare`], nested plans last.
///
/// # Safety
/// GIL held; `state` is this module's state; [`crate::abi::require_gil`] succeeded during
/// this call from Python (`patch_class` checks it once, for every function patched here).
unsafe fn commit(state: &State, plan: Plan) -> PyResult<()> {
    let cls = plan.class.as_ref().expect("plan has a class").as_ptr();
    // SAFETY: every object used below is held by `plan`; the GIL is held.
    unsafe {
        if let Some(bases) = &plan.new_bases {
            let name = Owned::from_new(PyUnicode_FromString(c"__bases__".as_ptr()))?;
            if type_setattr(cls, name.as_ptr(), bases.as_ptr()).is_err() {
                let why = take_message();
                return Err(raise(
                    state.needs_restart,
                    &format!(
                        "the bases of {} changed and CPython cannot switch existing instances \
                         to them ({why}); restart to apply this change",
                        qualname(Borrowed::from_ptr(cls).expect("class"))
                    ),
                ));
            }
        }
        if let Some(metaclass) = &plan.new_metaclass {
            if PyObject_SetAttrString(cls, c"__class__".as_ptr(), metaclass.as_ptr()) < 0 {
                let why = take_message();
                return Err(raise(
                    state.needs_restart,
                    &format!(
                        "the metaclass of {} changed and the class cannot switch to it \
                         ({why}); restart to apply this change",
                        qualname(Borrowed::from_ptr(cls).expect("class"))
                    ),
                ));
            }
        }
        for cell in &plan.class_cells {
            if PyCell_Set(cell.as_ptr(), cls) < 0 {
                return Err(Raised);
            }
        }
        for (old, new) in &plan.functions {
            patch_function_unchecked(state, old.borrow(), new.borrow())?;
        }
        for (old, new) in &plan.wrappers {
            refresh_wrapper_dict(old, new)?;
        }
        for (prop, doc) in &plan.property_docs {
            if PyObject_SetAttrString(prop.as_ptr(), c"__doc__".as_ptr(), doc.as_ptr()) < 0 {
                pyo3_ffi::PyErr_Clear();
            }
        }
        for (name, value, _old) in &plan.set {
            type_setattr(cls, name.as_ptr(), value.as_ptr())?;
        }
        for (name, _old) in &plan.delete {
            type_setattr(cls, name.as_ptr(), ptr::null_mut())?;
        }
        PyType_Modified(cls.cast());
        for sub in plan.nested {
            commit(state, sub)?;
        }
        for (name, value, _old) in &plan.set {
            tell_owner(cls, name, value)?;
        }
    }
    Ok(())
}

/// Copies a new staticmethod/classmethod wrapper's attributes (name, doc, ...) onto the old
/// wrapper, whose function was just patched in place; `__wrapped__` stays the old function.
unsafe fn refresh_wrapper_dict(old: &Owned, new: &Owned) -> PyResult<()> {
    // SAFETY: both are live wrappers; their `__dict__` are dicts (new references).
    unsafe {
        let (Ok(od), Ok(nd)) = (
            attr(old.as_ptr(), c"__dict__"),
            attr(new.as_ptr(), c"__dict__"),
        ) else {
            pyo3_ffi::PyErr_Clear();
            return Ok(());
        };
        for (key, value) in dict_items(nd.borrow()) {
            if utf8(key.borrow()).as_deref() == Some("__wrapped__") {
                continue;
            }
            if pyo3_ffi::PyDict_SetItem(od.as_ptr(), key.as_ptr(), value.as_ptr()) < 0 {
                return Err(Raised);
            }
        }
    }
    Ok(())
}

/// `value.__set_name__(cls, name)` for a descriptor newly stored in `cls`, as class creation
/// would have done; it was told the new class when that was built.
unsafe fn tell_owner(cls: *mut PyObject, name: &Owned, value: &Owned) -> PyResult<()> {
    // SAFETY: live objects; the lookup is on the value's type, like type_new_set_names.
    unsafe {
        let set_name = c"__set_name__";
        let tp = Py_TYPE(value.as_ptr()).cast::<PyObject>();
        if pyo3_ffi::PyObject_HasAttrString(tp, set_name.as_ptr()) == 0 {
            return Ok(());
        }
        let method = Owned::from_new(PyUnicode_FromString(set_name.as_ptr()))?;
        let result = PyObject_CallMethodObjArgs(
            value.as_ptr(),
            method.as_ptr(),
            cls,
            name.as_ptr(),
            ptr::null_mut::<PyObject>(),
        );
        Owned::from_new(result).map(drop)
    }
}
