/* A function watcher (CPython 3.12+) for the tests: records, for the functions it is told to
 * watch, each MODIFY_* event with the new value and whether the function already held it when
 * the watchers were told ("after") or not yet ("before"). Written in C: a watcher sees every
 * function created anywhere, including inside a callback written with ctypes, which recurses. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *watched; /* list of the watched functions (strong references) */
static PyObject *seen;    /* list of (event, new value, "before" | "after") */
static int watcher_id = -1;

static const char *
event_name(PyFunction_WatchEvent event)
{
    switch (event) {
    case PyFunction_EVENT_MODIFY_CODE: return "MODIFY_CODE";
    case PyFunction_EVENT_MODIFY_DEFAULTS: return "MODIFY_DEFAULTS";
    case PyFunction_EVENT_MODIFY_KWDEFAULTS: return "MODIFY_KWDEFAULTS";
#if PY_VERSION_HEX >= 0x030F0000
    case PyFunction_EVENT_MODIFY_QUALNAME: return "MODIFY_QUALNAME";
#endif
    default: return NULL;
    }
}

static PyObject *
current(PyFunction_WatchEvent event, PyFunctionObject *func)
{
    switch (event) {
    case PyFunction_EVENT_MODIFY_CODE: return func->func_code;
    case PyFunction_EVENT_MODIFY_DEFAULTS: return func->func_defaults;
    case PyFunction_EVENT_MODIFY_KWDEFAULTS: return func->func_kwdefaults;
#if PY_VERSION_HEX >= 0x030F0000
    case PyFunction_EVENT_MODIFY_QUALNAME: return func->func_qualname;
#endif
    default: return NULL;
    }
}

static int
callback(PyFunction_WatchEvent event, PyFunctionObject *func, PyObject *new_value)
{
    const char *name = event_name(event);
    if (name == NULL || watched == NULL) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(watched); i++) {
        if (PyList_GET_ITEM(watched, i) != (PyObject *)func) {
            continue;
        }
        PyObject *value = new_value != NULL ? new_value : Py_None;
        const char *when = current(event, func) == new_value ? "after" : "before";
        PyObject *entry = Py_BuildValue("(sOs)", name, value, when);
        if (entry == NULL || PyList_Append(seen, entry) < 0) {
            Py_XDECREF(entry);
            return -1;
        }
        Py_DECREF(entry);
    }
    return 0;
}

static PyObject *
watch(PyObject *self, PyObject *func)
{
    if (watcher_id < 0) {
        watcher_id = PyFunction_AddWatcher(callback);
        if (watcher_id < 0) {
            return NULL;
        }
    }
    if (PyList_Append(watched, func) < 0) {
        return NULL;
    }
    return Py_NewRef(func);
}

static PyObject *
events(PyObject *self, PyObject *unused)
{
    PyObject *out = PyList_GetSlice(seen, 0, PyList_GET_SIZE(seen));
    if (out == NULL || PyList_SetSlice(seen, 0, PyList_GET_SIZE(seen), NULL) < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"watch", watch, METH_O, "Record the MODIFY_* events of this function; returns it."},
    {"events", events, METH_NOARGS, "The events recorded since the last call, in order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "func_watcher", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit_func_watcher(void)
{
    watched = PyList_New(0);
    seen = PyList_New(0);
    if (watched == NULL || seen == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
