/*
 * mighty_patcher.h: the C API of mighty_patcher, for other C extensions.
 *
 * The native module publishes a table of functions as the capsule "mighty_patcher._C_API".
 * Include this header (its directory is `mighty_patcher.get_include()`), then import the
 * table once, in your module's init or exec function, before calling any entry:
 *
 *     #include <Python.h>
 *     #include "mighty_patcher.h"
 *
 *     static int
 *     my_exec(PyObject *module)
 *     {
 *         if (MightyPatcher_IMPORT < 0) {
 *             return -1;          // ImportError set: mighty_patcher is missing or too old
 *         }
 *         ...
 *     }
 *
 * Then call the entries through the table, `MightyPatcher_API->patch_function(t, s)`, or the
 * macros below, `MightyPatcher_PatchFunction(t, s)`.
 *
 * Conventions, for every entry:
 * - The GIL must be held (an attached thread state), as for any Python C API call.
 * - Object arguments are BORROWED: the caller keeps its references, and the entry takes its
 *   own if it needs to keep an object. Results are NEW references where noted.
 * - Errors follow CPython's convention: on failure a Python exception is set and the entry
 *   returns -1 (int results) or NULL (object results); on success no exception is set.
 *   Passing NULL where an object is required sets SystemError.
 * - The entries act on the mighty_patcher module of the calling interpreter. If it was never
 *   imported there, or has been deallocated (removed from sys.modules and collected), an
 *   entry sets RuntimeError and returns -1/NULL; it never touches freed memory.
 *
 * The table itself is static data of the mighty_patcher shared library, which CPython never
 * unloads: the pointer stays valid for the life of the process, in every interpreter.
 *
 * Versions: MIGHTY_PATCHER_API_VERSION is the version this header describes. Later versions
 * only append fields to the table, so an extension compiled against this header works with
 * any later mighty_patcher. The import fails with ImportError if the installed mighty_patcher
 * publishes an older table than MIGHTY_PATCHER_API_VERSION_REQUIRED (by default this header's
 * version; define it lower before including the header to accept older tables, and test
 * MightyPatcher_HAS(entry) before using entries added later).
 */

#ifndef MIGHTY_PATCHER_H
#define MIGHTY_PATCHER_H

#include <Python.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The capsule's name: `PyCapsule_Import` imports `mighty_patcher` and reads `_C_API`. */
#define MIGHTY_PATCHER_CAPSULE_NAME "mighty_patcher._C_API"

/* The version of the table this header describes. */
#define MIGHTY_PATCHER_API_VERSION 1

/* The oldest table the import accepts. */
#ifndef MIGHTY_PATCHER_API_VERSION_REQUIRED
#define MIGHTY_PATCHER_API_VERSION_REQUIRED MIGHTY_PATCHER_API_VERSION
#endif

/*
 * A reload callback, called after each reload with the reload's report:
 * - `report` (BORROWED, valid during the call only; do not modify it) is a dict:
 *     "module": str, "file": str, "ok": bool, "patched": list[str], "added": list[str],
 *     "deleted": list[str], "rerun": list[str], "needs_restart": list[str],
 *     "seconds": float, "error": str or None;
 * - `arg` is the pointer given at registration, passed back unchanged.
 * Return 0, or -1 with an exception set. A failure is reported through sys.unraisablehook
 * ("Exception ignored in the mighty_patcher reload callback ...") and does not stop the
 * callbacks registered after it. Callbacks run with the GIL held, in registration order.
 */
typedef int (*MightyPatcher_ReloadCallback)(PyObject *report, void *arg);

typedef struct MightyPatcher_CAPI {
    /* sizeof(MightyPatcher_CAPI) in the mighty_patcher build that published the table: the
       fields below this one that lie within `size` bytes are present. */
    size_t size;
    /* The table's version (MIGHTY_PATCHER_API_VERSION of that build). */
    int api_version;
    /* PY_VERSION_HEX of the CPython mighty_patcher was built for (informational: it refuses
       to load into any other). */
    unsigned long python_version;

    /* --- version 1 --- */

    /* Makes function `target` behave exactly like function `source`, in place: code,
       closure, globals, builtins, defaults, annotations, name, ... (see the Python function
       patch_function, and docs/native.md for the audit events and the function watcher
       events it raises). Every reference to `target` then runs the new code.
       target, source: BORROWED Python functions (else TypeError).
       Returns 0, or -1 with an exception set. */
    int (*patch_function)(PyObject *target, PyObject *source);

    /* Gives `function` the code object `code`, keeping its closure cells, matched by free
       variable name. If `code` uses a free variable the closure has no cell for, sets
       mighty_patcher.PatchError, returns -1 and changes nothing.
       function: BORROWED Python function; code: BORROWED code object (else TypeError).
       Returns 0, or -1 with an exception set. */
    int (*swap_code)(PyObject *function, PyObject *code);

    /* Patches class `old_class` in place so that it behaves like `new_class` (see the Python
       function patch_class). All or nothing: sets mighty_patcher.NeedsRestart (a PatchError)
       and changes nothing when existing instances could not follow; an audit hook refusing
       any part of the patch also leaves the class unchanged.
       old_class, new_class: BORROWED classes defined in Python (else TypeError).
       update, remove: BORROWED collections of names, or NULL (or Py_None) for "no filter";
       a str is refused with TypeError.
       Returns 0, or -1 with an exception set. */
    int (*patch_class)(PyObject *old_class, PyObject *new_class, PyObject *update,
                       PyObject *remove);

    /* Every live function whose __code__ is one of `codes` (one pass over the heap).
       codes: BORROWED iterable of code objects (else TypeError).
       Returns a NEW reference to a list, or NULL with an exception set. */
    PyObject *(*functions_using)(PyObject *codes);

    /* Whether the calling thread is applying a reload: 1 if it is, 0 if not, -1 with an
       exception set on error. */
    int (*currently_reloading)(void);

    /* Marks the calling thread as reloading, one level deeper (the same nestable per-thread
       depth as the Python `with mighty_patcher.reloading():`). Pair every successful call
       with exit_reloading. Returns 0, or -1 with an exception set. */
    int (*enter_reloading)(void);

    /* Leaves one level; an exit without a matching enter does nothing.
       Returns 0, or -1 with an exception set. */
    int (*exit_reloading)(void);

    /* Registers `callback` to run after each reload, with `arg`. The same pair may be
       registered twice (it then runs twice). `arg` is not read or freed by mighty_patcher.
       Returns 0, or -1 with an exception set (SystemError if `callback` is NULL). */
    int (*add_reload_callback)(MightyPatcher_ReloadCallback callback, void *arg);

    /* Unregisters the earliest registration of the pair (callback, arg); once it returns,
       the callback is not called again with `arg`, not even later in a round that is
       running, so `arg` may be freed. Returns 0, or -1 with ValueError set if the pair is
       not registered. */
    int (*remove_reload_callback)(MightyPatcher_ReloadCallback callback, void *arg);
} MightyPatcher_CAPI;

/* Whether the imported table has `entry` (a field name): for entries added after the
   version an extension requires. */
#define MightyPatcher_HAS(entry)                                                              \
    (MightyPatcher_API != NULL &&                                                             \
     MightyPatcher_API->size >= offsetof(MightyPatcher_CAPI, entry) +                         \
                                    sizeof(MightyPatcher_API->entry))

#if defined(__GNUC__) || defined(__clang__)
#define MIGHTY_PATCHER_MAYBE_UNUSED __attribute__((unused))
#else
#define MIGHTY_PATCHER_MAYBE_UNUSED
#endif

/* The imported table, or NULL before a successful import. Like PyDateTimeAPI it is static:
   each .c file that calls the entries imports it (the import is cheap). */
static const MightyPatcher_CAPI *MightyPatcher_API MIGHTY_PATCHER_MAYBE_UNUSED = NULL;

/* Replaces the exception set with ImportError(message), chained from it (__cause__). */
static inline void
MightyPatcher__ImportErrorFrom(const char *message)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *cause = PyErr_GetRaisedException();
    PyObject *error;
    PyErr_SetString(PyExc_ImportError, message);
    error = PyErr_GetRaisedException();
    if (cause != NULL && error != NULL) {
        Py_INCREF(cause);
        PyException_SetCause(error, cause);  /* steals one reference */
        PyException_SetContext(error, cause); /* steals the other */
    }
    else {
        Py_XDECREF(cause);
    }
    PyErr_SetRaisedException(error);
#else
    PyObject *type, *value, *traceback, *error_type, *error, *error_traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    PyErr_SetString(PyExc_ImportError, message);
    PyErr_Fetch(&error_type, &error, &error_traceback);
    PyErr_NormalizeException(&error_type, &error, &error_traceback);
    if (value != NULL && error != NULL) {
        Py_INCREF(value);
        PyException_SetCause(error, value);  /* steals one reference */
        PyException_SetContext(error, value); /* steals the other */
    }
    else {
        Py_XDECREF(value);
    }
    PyErr_Restore(error_type, error, error_traceback);
#endif
}

/* Imports the table into MightyPatcher_API. Returns 0, or -1 with ImportError set (and
   MightyPatcher_API unchanged) when mighty_patcher cannot be imported, has no `_C_API`
   capsule, or publishes a table older than MIGHTY_PATCHER_API_VERSION_REQUIRED. */
static inline int
MightyPatcher_Import(void)
{
    const MightyPatcher_CAPI *api =
        (const MightyPatcher_CAPI *)PyCapsule_Import(MIGHTY_PATCHER_CAPSULE_NAME, 0);
    if (api == NULL) {
        MightyPatcher__ImportErrorFrom("cannot import the mighty_patcher C API (the capsule "
                                       MIGHTY_PATCHER_CAPSULE_NAME ")");
        return -1;
    }
    if (api->api_version < MIGHTY_PATCHER_API_VERSION_REQUIRED) {
        PyErr_Format(PyExc_ImportError,
                     "the installed mighty_patcher has C API version %d, older than version %d "
                     "which this extension requires; upgrade mighty_patcher",
                     api->api_version, (int)MIGHTY_PATCHER_API_VERSION_REQUIRED);
        return -1;
    }
    MightyPatcher_API = api;
    return 0;
}

/* In the style of PyDateTime_IMPORT: an int expression, 0 or -1 with ImportError set. */
#define MightyPatcher_IMPORT MightyPatcher_Import()

/* Shorthands for the entries; each needs a successful import first. */
#define MightyPatcher_PatchFunction(target, source)                                           \
    (MightyPatcher_API->patch_function((target), (source)))
#define MightyPatcher_SwapCode(function, code) (MightyPatcher_API->swap_code((function), (code)))
#define MightyPatcher_PatchClass(old_class, new_class, update, remove)                        \
    (MightyPatcher_API->patch_class((old_class), (new_class), (update), (remove)))
#define MightyPatcher_FunctionsUsing(codes) (MightyPatcher_API->functions_using((codes)))
#define MightyPatcher_CurrentlyReloading() (MightyPatcher_API->currently_reloading())
#define MightyPatcher_EnterReloading() (MightyPatcher_API->enter_reloading())
#define MightyPatcher_ExitReloading() (MightyPatcher_API->exit_reloading())
#define MightyPatcher_AddReloadCallback(callback, arg)                                        \
    (MightyPatcher_API->add_reload_callback((callback), (arg)))
#define MightyPatcher_RemoveReloadCallback(callback, arg)                                     \
    (MightyPatcher_API->remove_reload_callback((callback), (arg)))

#ifdef __cplusplus
}
#endif

#endif /* MIGHTY_PATCHER_H */
