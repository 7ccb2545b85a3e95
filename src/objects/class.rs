//! `Type<'py>`: a class (a type object), with what `patch_class` reads of it. Fields are read
//! through `pyo3-ffi`'s `PyTypeObject` and `PyHeapTypeObject`, whose offsets `build.rs` checks
//! against the interpreter's headers; `tp_flags` through `PyType_GetFlags` (atomic on
//! free-threaded builds).

use core::ffi::CStr;

use pyo3_ffi::{
    Py_TPFLAGS_HEAPTYPE, PyHeapTypeObject, PyObject_GetAttrString, PyTuple_GET_ITEM,
    PyTuple_GET_SIZE, PyType_Check, PyType_GetFlags, PyTypeObject,
};

use crate::convert::{take_message, text, utf8};
use crate::refs::{Borrowed, Owned};

/// A live class (an instance of `type` or of a metaclass), borrowed for `'py`.
#[derive(Clone, Copy)]
pub struct Type<'py>(Borrowed<'py>);

/// What instances of a class look like in memory: two classes with the same layout can swap
/// instances (`__class__` assignment), two with different ones cannot.
#[derive(PartialEq, Eq, Debug)]
pub struct Layout {
    pub basic_size: isize,
    pub item_size: isize,
    pub dict_offset: isize,
    pub weaklist_offset: isize,
}

impl<'py> Type<'py> {
    /// `obj` as a class, if it is one.
    pub fn cast(obj: Borrowed<'py>) -> Option<Type<'py>> {
        // SAFETY: `obj` is alive; PyType_Check reads its type only.
        (unsafe { PyType_Check(obj.as_ptr()) } != 0).then_some(Type(obj))
    }

    pub fn object(self) -> Borrowed<'py> {
        self.0
    }

    fn raw(self) -> *mut PyTypeObject {
        self.0.as_ptr().cast()
    }

    pub fn is(self, other: Type<'_>) -> bool {
        self.0.is(other.0)
    }

    /// Whether it was made at run time (a class statement, `type(...)`), as opposed to a static
    /// built-in or extension type; only such classes have a `PyHeapTypeObject` layout.
    pub fn is_heap_type(self) -> bool {
        // SAFETY: a live type; PyType_GetFlags reads the flags atomically where needed.
        unsafe { PyType_GetFlags(self.raw()) & Py_TPFLAGS_HEAPTYPE != 0 }
    }

    /// `tp_name`, for messages.
    pub fn name(self) -> String {
        // SAFETY: a live type's `tp_name` is a NUL-terminated string it owns.
        unsafe { CStr::from_ptr((*self.raw()).tp_name) }
            .to_string_lossy()
            .into_owned()
    }

    /// `__qualname__`, for messages and nesting checks (`<class>` if it cannot be read).
    pub fn qualname(self) -> String {
        // SAFETY: a live object; returns a new reference or NULL with an exception set.
        match unsafe {
            Owned::from_new(PyObject_GetAttrString(
                self.0.as_ptr(),
                c"__qualname__".as_ptr(),
            ))
        } {
            Ok(name) => text(name.borrow()),
            Err(_) => {
                take_message();
                "<class>".to_owned()
            }
        }
    }

    /// The class dict (`tp_dict`). A class keeps the same dict object for its whole life, so
    /// it is borrowed for as long as the class is.
    pub fn dict(self) -> Borrowed<'py> {
        // SAFETY: a live type with a dict (every class has one once ready); CPython never
        // replaces `tp_dict` of a ready type, so the dict lives as long as the type does.
        unsafe { Borrowed::from_ptr((*self.raw()).tp_dict) }.expect("a ready class has a dict")
    }

    /// `__bases__` (`tp_bases`) as a new reference.
    pub fn bases(self) -> Option<Owned> {
        // SAFETY: a live type; `tp_bases` is NULL or a tuple it owns, referenced at once.
        unsafe { Borrowed::from_ptr((*self.raw()).tp_bases) }.map(Borrowed::to_owned)
    }

    /// Its instance layout.
    pub fn layout(self) -> Layout {
        // SAFETY: a live type; plain reads of fields checked by `build.rs`.
        unsafe {
            let t = &*self.raw();
            Layout {
                basic_size: t.tp_basicsize,
                item_size: t.tp_itemsize,
                dict_offset: t.tp_dictoffset,
                weaklist_offset: t.tp_weaklistoffset,
            }
        }
    }

    /// `__slots__` as CPython recorded it (`ht_slots`: the mangled names, a tuple), or `None`.
    /// A heap type only.
    pub fn slots(self) -> Option<Owned> {
        debug_assert!(self.is_heap_type());
        // SAFETY: a heap type is a `PyHeapTypeObject`; `ht_slots` is NULL or a tuple of str it
        // owns, referenced at once.
        unsafe { Borrowed::from_ptr((*self.raw().cast::<PyHeapTypeObject>()).ht_slots) }
            .map(Borrowed::to_owned)
    }

    /// The names in [`Type::slots`], as Rust strings.
    pub fn slot_names(self) -> Vec<String> {
        let Some(slots) = self.slots() else {
            return Vec::new();
        };
        // SAFETY: `ht_slots` is a tuple of str, kept alive by `slots`.
        unsafe {
            (0..PyTuple_GET_SIZE(slots.as_ptr()))
                .filter_map(|i| Borrowed::from_ptr(PyTuple_GET_ITEM(slots.as_ptr(), i)))
                .filter_map(utf8)
                .collect()
        }
    }
}
