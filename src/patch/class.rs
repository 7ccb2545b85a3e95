//! Patching a class in place from a newly built version of it.
//!
//! The old class keeps its identity, so its instances, its subclasses and every reference to
//! it stay valid. Members go through `type.__setattr__` (CPython's `type_setattro`), which
//! stores into the class dict, installs the C slot of a dunder (`__repr__`, `__add__`,
//! `__len__`, ...) in the class and its subclasses, and invalidates the type's version tag,
//! so warm attribute and call sites specialised on the class let go.
//!
//! What the old class had is kept where that keeps references valid: a member that holds
//! functions in both versions is patched in place, function by function (`patch::members`
//! decides when, `patch::function` does it), so bound methods, registries and decorators
//! holding the old function follow; nested classes are patched in place, recursively.
//!
//! Zero-argument `super()` and `__class__` read a cell that the compiler shares among the
//! methods of one class body. The new methods' cell points at the new class; it is re-pointed
//! at the old class before any method is patched in.
//!
//! All or nothing. What cannot change in place raises `NeedsRestart` while nothing has changed:
//! a different `__slots__` or instance layout. Then:
//! 1. *prepare*: every new value is built and every function patch prepared, which raises its
//!    `__code__` audit event, so a hook refuses before anything changes;
//! 2. the changes that go through CPython's setters, which may still refuse (an audit hook on
//!    `__bases__`, `__class__` or `__doc__`, a layout CPython will not switch, a metaclass's
//!    descriptor), each recorded so that it can be undone: the `__class__` cells, the bases,
//!    the metaclass, the members set and deleted, for the class and its nested classes;
//! 3. the functions, patched in place; if CPython's `__code__` setter refuses now what its audit
//!    event accepted in step 1 (a hook that changed its mind), the functions already patched
//!    are restored;
//! 4. what cannot fail: the wrappers' and properties' attributes, `PyType_Modified`.
//!
//! A failure in 2 or 3 undoes every change made so far, in reverse order, and raises. Then the
//! class is consistent and complete, and `__set_name__` is called on the descriptors newly
//! added, as class creation does; an exception from one propagates, with the patch applied.
//! The old values are released last.

use core::ptr;

use pyo3_ffi::{
    Py_EQ, Py_TYPE, PyCell_Get, PyCell_Set, PyDict_Check, PyDict_GetItemWithError, PyDict_Next,
    PyDict_SetItem, PyErr_Clear, PyErr_Occurred, PyErr_WriteUnraisable, PyObject,
    PyObject_CallMethodObjArgs, PyObject_GetAttrString, PyObject_HasAttrString,
    PyObject_RichCompareBool, PyObject_SetAttrString, PySequence_Contains, PyTuple_GET_ITEM,
    PyTuple_GET_SIZE, PyType_Modified, PyType_Type, PyUnicode_Check,
};

use crate::convert::{is_none, take_message, text, type_error, utf8};
use crate::errors::{Pending, PyResult, Raised, raise};
use crate::objects::{Function, Type};
use crate::refs::{Borrowed, Owned, new_ref_opt};
use crate::state::State;

use super::function::{self, Applied, Prepared};
use super::members;

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
        let not_none = |obj: Option<Borrowed<'a>>| obj.filter(|o| !is_none(*o));
        let filter = Filter {
            update: not_none(update),
            remove: not_none(remove),
        };
        for f in [filter.update, filter.remove].into_iter().flatten() {
            // SAFETY: `f` is alive; PyUnicode_Check only reads its type.
            if unsafe { PyUnicode_Check(f.as_ptr()) } != 0 {
                return Err(type_error(
                    "patch_class(): update and remove take collections of names, not a str",
                ));
            }
        }
        Ok(filter)
    }
}

/// What to do to one class, worked out before anything changes.
struct Plan {
    /// The class patched in place.
    class: Owned,
    /// (old bases, new bases), when they differ.
    bases: Option<(Owned, Owned)>,
    /// (old metaclass, new metaclass), when they differ.
    metaclass: Option<(Owned, Owned)>,
    /// `__class__` cells of the new methods, which point at the new class.
    class_cells: Vec<Owned>,
    /// (old function, new function), patched in place.
    functions: Vec<(Owned, Owned)>,
    /// The attributes of new staticmethod/classmethod wrappers, to copy onto the old ones:
    /// (old wrapper's `__dict__`, key, value).
    wrapper_items: Vec<(Owned, Owned, Owned)>,
    /// (old property, new doc).
    property_docs: Vec<(Owned, Owned)>,
    nested: Vec<Plan>,
    /// (name, new value, old value kept until the end).
    set: Vec<(Owned, Owned, Option<Owned>)>,
    /// (name, old value kept until the end).
    delete: Vec<(Owned, Owned)>,
}

impl Plan {
    /// A plan for `old` that changes nothing yet.
    fn empty(old: Type<'_>) -> Plan {
        Plan {
            class: old.object().to_owned(),
            bases: None,
            metaclass: None,
            class_cells: Vec::new(),
            functions: Vec::new(),
            wrapper_items: Vec::new(),
            property_docs: Vec::new(),
            nested: Vec::new(),
            set: Vec::new(),
            delete: Vec::new(),
        }
    }

    fn class(&self) -> Type<'_> {
        Type::cast(self.class.borrow()).expect("plans are made for classes")
    }

    /// This plan and its nested plans, outermost first.
    fn all(&self) -> Vec<&Plan> {
        let mut out = vec![self];
        for nested in &self.nested {
            out.extend(nested.all());
        }
        out
    }
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
    const USAGE: &str =
        "patch_class() takes a class and its new version (a class, or a dict of members)";
    let Some(old) = Type::cast(old) else {
        return Err(type_error(USAGE));
    };
    // SAFETY: `new` is alive; PyDict_Check reads its type only.
    let members_only = unsafe { PyDict_Check(new.as_ptr()) != 0 };
    let new_class = if members_only {
        Some(old)
    } else {
        Type::cast(new)
    };
    let Some(new_class) = new_class else {
        return Err(type_error(USAGE));
    };
    for t in [old, new_class] {
        if !t.is_heap_type() {
            return Err(type_error(&format!(
                "{} is a built-in or extension type; only classes defined in Python can be \
                 patched",
                t.name()
            )));
        }
    }
    if old.is(new_class) && !members_only {
        return Ok(());
    }
    let plan = if members_only {
        plan_members_only(state, old, new, filter)?
    } else {
        plan(state, old, new_class, filter)?
    };
    let plans = plan.all();
    // Step 1: every function patch prepared (reads, audit events, frame search).
    let mut prepared = Vec::new();
    for p in &plans {
        for (old_f, new_f) in &p.functions {
            let (o, n) = (function_of(old_f), function_of(new_f));
            // SAFETY: GIL held (forwarded); the GIL check was made above.
            prepared.push(unsafe { function::prepare(state, o, n)? });
        }
    }
    // SAFETY: GIL held; everything used is held by `plan`; the GIL check was made above.
    unsafe { commit(state, &plans, prepared) }
}

fn function_of(obj: &Owned) -> Function<'_> {
    Function::cast(obj.borrow()).expect("members::in_place_pairs pairs functions")
}

/// Steps 2 to 4 and `__set_name__`, with the undoing described in the module documentation.
///
/// # Safety
/// GIL held; [`crate::abi::require_gil`] succeeded during this call from Python.
unsafe fn commit(state: &State, plans: &[&Plan], prepared: Vec<Prepared<'_>>) -> PyResult<()> {
    let mut undo = Vec::new();
    // SAFETY: GIL held (forwarded); every object is held by the plans.
    if let Err(Raised) = unsafe { change_classes(state, plans, &mut undo) } {
        // SAFETY: an exception is set; GIL held.
        return Err(unsafe { undo_all(undo, Vec::new()) });
    }
    let mut applied: Vec<Applied<'_>> = Vec::with_capacity(prepared.len());
    for patch in prepared {
        // SAFETY: the GIL is held and `require_gil` passed (`patch_class` checked it before
        // anything was prepared).
        match unsafe { patch.commit() } {
            Ok(done) => applied.push(done),
            // SAFETY: an exception is set; GIL held.
            Err(Raised) => return Err(unsafe { undo_all(undo, applied) }),
        }
    }
    // SAFETY: GIL held; the wrappers' dicts and the properties are held by the plans.
    unsafe {
        for plan in plans {
            for (dict, key, value) in &plan.wrapper_items {
                if PyDict_SetItem(dict.as_ptr(), key.as_ptr(), value.as_ptr()) < 0 {
                    // Only out of memory: the wrapper keeps its old name or doc.
                    PyErr_Clear();
                }
            }
            for (prop, doc) in &plan.property_docs {
                if PyObject_SetAttrString(prop.as_ptr(), c"__doc__".as_ptr(), doc.as_ptr()) < 0 {
                    PyErr_Clear();
                }
            }
            PyType_Modified(plan.class.as_ptr().cast());
        }
    }
    let mut result = Ok(());
    for plan in plans {
        for (name, value, _old) in &plan.set {
            // SAFETY: GIL held; live objects held by the plan.
            result = unsafe { tell_owner(plan.class.as_ptr(), name, value) };
            if result.is_err() {
                break;
            }
        }
        if result.is_err() {
            break;
        }
    }
    // The old values: function fields, then (with the plans, dropped by the caller) members.
    drop(applied);
    drop(undo);
    result
}

/// One change made through CPython's setters, and how to take it back.
enum Undo {
    /// A `__class__` cell, and what it held.
    Cell(Owned, Option<Owned>),
    /// `cls.<name> = value` (delete when `None`).
    Attribute(Owned, Owned, Option<Owned>),
    /// `type.__setattr__(cls, name, value)` (delete when `None`).
    Member(Owned, Owned, Option<Owned>),
}

/// Step 2: cells, bases, metaclass, members, for every class of the patch.
///
/// # Safety
/// GIL held.
unsafe fn change_classes(state: &State, plans: &[&Plan], undo: &mut Vec<Undo>) -> PyResult<()> {
    for plan in plans {
        let cls = plan.class.as_ptr();
        // SAFETY: every object is held by the plan; GIL held.
        unsafe {
            for cell in &plan.class_cells {
                let previous = Owned::from_new_opt(PyCell_Get(cell.as_ptr()));
                if PyCell_Set(cell.as_ptr(), cls) < 0 {
                    return Err(Raised);
                }
                undo.push(Undo::Cell(cell.clone(), previous));
            }
            if let Some((old_bases, new_bases)) = &plan.bases {
                let name = crate::convert::string("__bases__")?;
                if set_member(cls, &name, Some(new_bases)).is_err() {
                    let why = take_message();
                    return Err(raise(
                        state.needs_restart.get(),
                        &format!(
                            "the bases of {} changed and CPython cannot switch existing \
                             instances to them ({why}); restart to apply this change",
                            plan.class().qualname()
                        ),
                    ));
                }
                undo.push(Undo::Member(
                    plan.class.clone(),
                    name,
                    Some(old_bases.clone()),
                ));
            }
            if let Some((old_meta, new_meta)) = &plan.metaclass {
                let name = crate::convert::string("__class__")?;
                if PyObject_SetAttrString(cls, c"__class__".as_ptr(), new_meta.as_ptr()) < 0 {
                    let why = take_message();
                    return Err(raise(
                        state.needs_restart.get(),
                        &format!(
                            "the metaclass of {} changed and the class cannot switch to it \
                             ({why}); restart to apply this change",
                            plan.class().qualname()
                        ),
                    ));
                }
                undo.push(Undo::Attribute(
                    plan.class.clone(),
                    name,
                    Some(old_meta.clone()),
                ));
            }
            for (name, value, old) in &plan.set {
                set_member(cls, name, Some(value))?;
                undo.push(Undo::Member(plan.class.clone(), name.clone(), old.clone()));
            }
            for (name, old) in &plan.delete {
                set_member(cls, name, None)?;
                undo.push(Undo::Member(
                    plan.class.clone(),
                    name.clone(),
                    Some(old.clone()),
                ));
            }
        }
    }
    Ok(())
}

/// Takes back the function patches in `applied` and the changes in `undo`, last first, keeping
/// the exception that made the patch fail. A step that cannot be taken back (a hook refusing
/// the restore too) is reported through `sys.unraisablehook`.
///
/// # Safety
/// GIL held; an exception is set.
unsafe fn undo_all(undo: Vec<Undo>, applied: Vec<Applied<'_>>) -> Raised {
    // SAFETY: GIL held; the exception is put back at the end.
    unsafe {
        let pending = Pending::take();
        for done in applied.into_iter().rev() {
            done.undo();
        }
        for step in undo.into_iter().rev() {
            let (status, what) = match &step {
                Undo::Cell(cell, previous) => {
                    let previous = previous.as_ref().map_or(ptr::null_mut(), Owned::as_ptr);
                    (PyCell_Set(cell.as_ptr(), previous), cell.as_ptr())
                }
                Undo::Attribute(cls, name, value) => {
                    let value = value.as_ref().map_or(ptr::null_mut(), Owned::as_ptr);
                    let status = pyo3_ffi::PyObject_SetAttr(cls.as_ptr(), name.as_ptr(), value);
                    (status, cls.as_ptr())
                }
                Undo::Member(cls, name, value) => {
                    let status = set_member(cls.as_ptr(), name, value.as_ref()).map_or(-1, |()| 0);
                    (status, cls.as_ptr())
                }
            };
            if status < 0 {
                PyErr_WriteUnraisable(what);
            }
        }
        pending.restore()
    }
}

/// `type.__setattr__(cls, name, value)`; `None` deletes.
///
/// # Safety
/// GIL held; `cls` is a live class.
unsafe fn set_member(cls: *mut PyObject, name: &Owned, value: Option<&Owned>) -> PyResult<()> {
    let value = value.map_or(ptr::null_mut(), Owned::as_ptr);
    // SAFETY: PyType_Type's tp_setattro is `type_setattro`, valid for any heap type; it stores
    // into the class dict, updates slots and calls PyType_Modified.
    let status = unsafe {
        let setattro = PyType_Type.tp_setattro.expect("type has setattro");
        setattro(cls, name.as_ptr(), value)
    };
    if status < 0 { Err(Raised) } else { Ok(()) }
}

/// Works out the plan for `old` (and its nested classes) without changing anything.
fn plan(state: &State, old: Type<'_>, new: Type<'_>, filter: &Filter<'_>) -> PyResult<Plan> {
    check_layout(state, old, new)?;
    let mut plan = Plan::empty(old);
    let (old_bases, new_bases) = (old.bases(), new.bases());
    if !same_object_tuple(old_bases.as_ref(), new_bases.as_ref()) {
        if let (Some(o), Some(n)) = (old_bases, new_bases) {
            plan.bases = Some((o, n));
        }
    }
    // SAFETY: both are alive, so are their types (borrowed, referenced at once).
    let (old_meta, new_meta) = unsafe {
        (
            Borrowed::from_ptr(Py_TYPE(old.object().as_ptr()).cast()).expect("a type"),
            Borrowed::from_ptr(Py_TYPE(new.object().as_ptr()).cast()).expect("a type"),
        )
    };
    if !old_meta.is(new_meta) {
        plan.metaclass = Some((old_meta.to_owned(), new_meta.to_owned()));
    }
    let (old_dict, new_dict) = (old.dict(), new.dict());
    if plan.bases.is_some() {
        check_own_descriptors(state, old, old_dict, new_dict)?;
    }
    plan_members(state, &mut plan, old, new, new_dict, filter, true)?;
    Ok(plan)
}

/// The members-only form, `patch_class(old, {name: value, ...})`: the values come from a
/// class body run without its class statement (no metaclass, decorator or
/// `__init_subclass__` ran), so there are no bases, metaclass or layout to compare; the
/// caller pointed the body's `__class__` cell at `old` already. Nothing is removed but what
/// `remove` names: the dict holds what changed.
fn plan_members_only(
    state: &State,
    old: Type<'_>,
    members: Borrowed<'_>,
    filter: &Filter<'_>,
) -> PyResult<Plan> {
    let mut plan = Plan::empty(old);
    // Nested classes are recognised by their qualname under the old class's own.
    plan_members(state, &mut plan, old, old, members, filter, false)?;
    Ok(plan)
}

/// Records in `plan` what to set, patch in place and delete so that `old`'s members become
/// those of `new_dict` (filtered). `new` is the class `new_dict` came from, whose `__class__`
/// cells are re-pointed at `old` (`old` itself in the members-only form).
/// `remove_missing`: without a `remove` filter, the members `new_dict` lacks are removed.
fn plan_members(
    state: &State,
    plan: &mut Plan,
    old: Type<'_>,
    new: Type<'_>,
    new_dict: Borrowed<'_>,
    filter: &Filter<'_>,
    remove_missing: bool,
) -> PyResult<()> {
    let old_dict = old.dict();
    let slots = old.slot_names();
    let own = |name: &str| OWN_ENTRIES.contains(&name) || slots.iter().any(|s| s == name);

    for (name, value) in dict_items(new_dict) {
        let key = utf8(name.borrow()).unwrap_or_default();
        if own(&key) || !wanted(filter.update, name.borrow())? {
            continue;
        }
        collect_class_cells(value.borrow(), new.object(), &mut plan.class_cells, 4);
        match lookup(old_dict, name.borrow())? {
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
fn plan_in_place(
    state: &State,
    plan: &mut Plan,
    current: &Owned,
    value: &Owned,
    new_class: Type<'_>,
) -> PyResult<bool> {
    if let Some(pairs) = members::in_place_pairs(current.borrow(), value.borrow())? {
        match members::kind(current.borrow()) {
            members::Kind::Wrapper => {
                plan.wrapper_items
                    .extend(wrapper_items(current.borrow(), value.borrow())?);
            }
            members::Kind::Property => {
                plan.property_docs
                    .push((current.clone(), attribute(value.borrow(), c"__doc__")?));
            }
            members::Kind::Function | members::Kind::Other => {}
        }
        plan.functions.extend(pairs);
        return Ok(true);
    }
    if let (Some(c), Some(v)) = (Type::cast(current.borrow()), Type::cast(value.borrow())) {
        if is_nested(c, v, new_class) && c.is_heap_type() && v.is_heap_type() {
            let filter = Filter {
                update: None,
                remove: None,
            };
            plan.nested.push(self::plan(state, c, v, &filter)?);
            return Ok(true);
        }
    }
    Ok(false)
}

/// A class defined in the body of `outer` (its qualname is `Outer.Name`), in both versions.
fn is_nested(current: Type<'_>, value: Type<'_>, outer: Type<'_>) -> bool {
    let (a, b) = (current.qualname(), value.qualname());
    a == b && b.starts_with(&format!("{}.", outer.qualname()))
}

/// `getattr(obj, name)` as a new reference.
fn attribute(obj: Borrowed<'_>, name: &core::ffi::CStr) -> PyResult<Owned> {
    // SAFETY: `obj` is alive; returns a new reference or NULL with an exception.
    unsafe { Owned::from_new(PyObject_GetAttrString(obj.as_ptr(), name.as_ptr())) }
}

/// The attributes (name, doc, ...) of a new staticmethod/classmethod wrapper to copy onto the
/// old one, whose function is patched in place; `__wrapped__` stays the old function.
fn wrapper_items(old: Borrowed<'_>, new: Borrowed<'_>) -> PyResult<Vec<(Owned, Owned, Owned)>> {
    let (Ok(od), Ok(nd)) = (attribute(old, c"__dict__"), attribute(new, c"__dict__")) else {
        // SAFETY: the failed lookup set an exception: a wrapper without a `__dict__` has
        // nothing to copy.
        unsafe { PyErr_Clear() };
        return Ok(Vec::new());
    };
    Ok(dict_items(nd.borrow())
        .into_iter()
        .filter(|(key, _)| utf8(key.borrow()).as_deref() != Some("__wrapped__"))
        .map(|(key, value)| (od.clone(), key, value))
        .collect())
}

/// `dict[key]` as a new reference, `None` if absent.
fn lookup(dict: Borrowed<'_>, key: Borrowed<'_>) -> PyResult<Option<Owned>> {
    // SAFETY: `dict` is a live dict (a class dict); the result is borrowed from it, so we take
    // our own reference at once.
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

/// Compares two tuples (or absences) element by element, by identity.
fn same_object_tuple(a: Option<&Owned>, b: Option<&Owned>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return a.is_none() && b.is_none();
    };
    // SAFETY: both are live tuples (a type's `tp_bases`), kept alive by the caller.
    unsafe {
        let n = PyTuple_GET_SIZE(a.as_ptr());
        n == PyTuple_GET_SIZE(b.as_ptr())
            && (0..n).all(|i| PyTuple_GET_ITEM(a.as_ptr(), i) == PyTuple_GET_ITEM(b.as_ptr(), i))
    }
}

/// Refuses layouts that existing instances could not follow.
fn check_layout(state: &State, old: Type<'_>, new: Type<'_>) -> PyResult<()> {
    let (os, ns) = (old.slots(), new.slots());
    let slots_equal = match (&os, &ns) {
        (Some(os), Some(ns)) => {
            // SAFETY: two live tuples; the comparison returns -1 with an exception set.
            match unsafe { PyObject_RichCompareBool(os.as_ptr(), ns.as_ptr(), Py_EQ) } {
                -1 => return Err(Raised),
                equal => equal == 1,
            }
        }
        (None, None) => true,
        _ => false,
    };
    let show = |s: &Option<Owned>| s.as_ref().map_or("none".to_owned(), |s| text(s.borrow()));
    if !slots_equal {
        return Err(raise(
            state.needs_restart.get(),
            &format!(
                "the __slots__ of {} changed from {} to {}: instances made before the edit \
                 have the old layout; restart to apply this change",
                old.qualname(),
                show(&os),
                show(&ns)
            ),
        ));
    }
    if old.layout() != new.layout() {
        return Err(raise(
            state.needs_restart.get(),
            &format!(
                "the instance layout of {} changed (its bases or __slots__ add or remove \
                 C-level fields): instances made before the edit cannot follow; restart to \
                 apply this change",
                old.qualname()
            ),
        ));
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
    old: Type<'_>,
    old_dict: Borrowed<'_>,
    new_dict: Borrowed<'_>,
) -> PyResult<()> {
    for name in ["__dict__", "__weakref__"] {
        let key = crate::convert::string(name)?;
        let in_old = lookup(old_dict, key.borrow())?.is_some();
        let in_new = lookup(new_dict, key.borrow())?.is_some();
        if in_new && !in_old {
            return Err(raise(
                state.needs_restart.get(),
                &format!(
                    "the bases of {} changed and its instances would lose the {name} their \
                     old bases gave them; restart to apply this change",
                    old.qualname()
                ),
            ));
        }
    }
    Ok(())
}

/// Finds `__class__` cells that point at `new_class` in `value` (the functions a member holds),
/// also inside functions captured by closures (decorator wrappers), down to `depth` levels.
fn collect_class_cells(
    value: Borrowed<'_>,
    new_class: Borrowed<'_>,
    out: &mut Vec<Owned>,
    depth: u32,
) {
    if depth == 0 {
        return;
    }
    let Some(func) = Function::cast(value) else {
        match members::functions(value) {
            Ok(held) => {
                for inner in held {
                    collect_class_cells(inner.borrow(), new_class, out, depth - 1);
                }
            }
            // SAFETY: the failed lookup set an exception; it only means "none here".
            Err(Raised) => unsafe { PyErr_Clear() },
        }
        return;
    };
    let Some(closure) = func.closure() else {
        return;
    };
    let code = func.code();
    let names = match crate::objects::Code::cast(code.borrow()).map(|c| c.free_vars()) {
        Some(Ok(names)) => names,
        _ => {
            // SAFETY: a failed read set an exception; it only means "none here".
            unsafe { PyErr_Clear() };
            return;
        }
    };
    // SAFETY: the closure is a tuple of cells (the invariant), kept alive by `closure`.
    unsafe {
        for i in 0..PyTuple_GET_SIZE(closure.as_ptr()) {
            let cell = PyTuple_GET_ITEM(closure.as_ptr(), i);
            let Some(content) = Owned::from_new_opt(PyCell_Get(cell)) else {
                PyErr_Clear();
                continue;
            };
            let name = names.get(i as usize).map(String::as_str);
            if content.borrow().is(new_class) && name == Some("__class__") {
                if !out.iter().any(|c| c.as_ptr() == cell) {
                    out.push(Borrowed::from_ptr(cell).expect("cell").to_owned());
                }
            } else if Function::cast(content.borrow()).is_some() {
                collect_class_cells(content.borrow(), new_class, out, depth - 1);
            }
        }
    }
}

/// `value.__set_name__(cls, name)` for a descriptor newly stored in `cls`, as class creation
/// would have done; it was told the new class when that was built.
///
/// # Safety
/// GIL held; live objects.
unsafe fn tell_owner(cls: *mut PyObject, name: &Owned, value: &Owned) -> PyResult<()> {
    // SAFETY: live objects; the lookup is on the value's type, like type_new_set_names.
    unsafe {
        let tp = Py_TYPE(value.as_ptr()).cast::<PyObject>();
        if PyObject_HasAttrString(tp, c"__set_name__".as_ptr()) == 0 {
            return Ok(());
        }
        let method = crate::convert::string("__set_name__")?;
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
