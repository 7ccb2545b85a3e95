/* A function watcher that does nothing: what CPython's own dispatch to any watcher costs a
 * program, the floor under the function index's watcher (bench/overhead.py builds it with the
 * C compiler for each interpreter it measures). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int
nothing(PyFunction_WatchEvent event, PyFunctionObject *func, PyObject *new_value)
{
    (void)event;
    (void)func;
    (void)new_value;
    return 0;
}

static PyObject *
add(PyObject *module, PyObject *unused)
{
    int id = PyFunction_AddWatcher(nothing);
    return id < 0 ? NULL : PyLong_FromLong(id);
}

static PyObject *
clear(PyObject *module, PyObject *id)
{
    long n = PyLong_AsLong(id);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyFunction_ClearWatcher((int)n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add", add, METH_NOARGS, "Registers the watcher; returns its id."},
    {"clear", clear, METH_O, "Clears the watcher of that id."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "noop_watcher", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_noop_watcher(void)
{
    return PyModule_Create(&module);
}
