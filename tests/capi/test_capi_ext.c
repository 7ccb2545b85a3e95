/*
 * test_capi_ext: a C extension that uses mighty_patcher's C API, for tests/test_capi.py.
 *
 * Each function calls one entry of the table and checks CPython's error convention on the
 * way back: an int result is returned as a Python int (so -1 never reaches Python without an
 * exception), an object result as is. An entry that breaks the convention (an error result
 * without an exception, or an exception with a success result) raises AssertionError.
 *
 * Object arguments equal to the module's `NULL` attribute are passed to the entry as NULL.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "mighty_patcher.h"

typedef struct {
    PyObject *null; /* the NULL sentinel: a plain object() */
} ext_state;

static ext_state *
state_of(PyObject *module)
{
    return (ext_state *)PyModule_GetState(module);
}

/* `obj`, or NULL if it is the sentinel (borrowed either way). */
static PyObject *
nullable(PyObject *module, PyObject *obj)
{
    return obj == state_of(module)->null ? NULL : obj;
}

static PyObject *
int_result(const char *entry, int status)
{
    if (status == -1) {
        if (!PyErr_Occurred()) {
            return PyErr_Format(PyExc_AssertionError, "%s returned -1 without an exception",
                                entry);
        }
        return NULL;
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return PyErr_Format(PyExc_AssertionError, "%s returned %d with an exception set",
                            entry, status);
    }
    return PyLong_FromLong(status);
}

static PyObject *
object_result(const char *entry, PyObject *result)
{
    if (result == NULL && !PyErr_Occurred()) {
        return PyErr_Format(PyExc_AssertionError, "%s returned NULL without an exception",
                            entry);
    }
    if (result != NULL && PyErr_Occurred()) {
        Py_DECREF(result);
        PyErr_Clear();
        return PyErr_Format(PyExc_AssertionError, "%s returned an object with an exception set",
                            entry);
    }
    return result;
}

/* --- the table ------------------------------------------------------------------------- */

static PyObject *
api_info(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    const MightyPatcher_CAPI *api = MightyPatcher_API;
    return Py_BuildValue("{s:n,s:n,s:i,s:i,s:k,s:k,s:O}",
                         "size", (Py_ssize_t)api->size,
                         "sizeof", (Py_ssize_t)sizeof(MightyPatcher_CAPI),
                         "api_version", api->api_version,
                         "header_api_version", (int)MIGHTY_PATCHER_API_VERSION,
                         "python_version", api->python_version,
                         "compiled_for", (unsigned long)PY_VERSION_HEX,
                         "has_remove_reload_callback",
                         MightyPatcher_HAS(remove_reload_callback) ? Py_True : Py_False);
}

static PyObject *
import_api(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (MightyPatcher_IMPORT < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- patching --------------------------------------------------------------------------- */

static PyObject *
patch_function(PyObject *module, PyObject *args)
{
    PyObject *target, *source;
    if (!PyArg_ParseTuple(args, "OO:patch_function", &target, &source)) {
        return NULL;
    }
    return int_result("patch_function",
                      MightyPatcher_PatchFunction(nullable(module, target),
                                                  nullable(module, source)));
}

static PyObject *
swap_code(PyObject *module, PyObject *args)
{
    PyObject *function, *code;
    if (!PyArg_ParseTuple(args, "OO:swap_code", &function, &code)) {
        return NULL;
    }
    return int_result("swap_code", MightyPatcher_SwapCode(nullable(module, function),
                                                          nullable(module, code)));
}

static PyObject *
patch_class(PyObject *module, PyObject *args)
{
    PyObject *old_class, *new_class, *update, *remove;
    if (!PyArg_ParseTuple(args, "OOOO:patch_class", &old_class, &new_class, &update, &remove)) {
        return NULL;
    }
    return int_result("patch_class",
                      MightyPatcher_PatchClass(nullable(module, old_class),
                                               nullable(module, new_class),
                                               nullable(module, update),
                                               nullable(module, remove)));
}

static PyObject *
functions_using(PyObject *module, PyObject *codes)
{
    return object_result("functions_using",
                         MightyPatcher_FunctionsUsing(nullable(module, codes)));
}

/* --- the reloading mark ----------------------------------------------------------------- */

static PyObject *
currently_reloading(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("currently_reloading", MightyPatcher_CurrentlyReloading());
}

static PyObject *
enter_reloading(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("enter_reloading", MightyPatcher_EnterReloading());
}

static PyObject *
exit_reloading(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("exit_reloading", MightyPatcher_ExitReloading());
}

/* --- reload callbacks ------------------------------------------------------------------- */

/* Appends the report to the list `arg`. */
static int
record(PyObject *report, void *arg)
{
    if (!PyDict_Check(report)) {
        PyErr_SetString(PyExc_TypeError, "the report is not a dict");
        return -1;
    }
    return PyList_Append((PyObject *)arg, report);
}

/* Fails the way the convention asks: an exception and -1. */
static int
fail(PyObject *Py_UNUSED(report), void *Py_UNUSED(arg))
{
    PyErr_SetString(PyExc_RuntimeError, "the failing callback failed on purpose");
    return -1;
}

/* Breaks the convention: -1 without an exception. */
static int
fail_silently(PyObject *Py_UNUSED(report), void *Py_UNUSED(arg))
{
    return -1;
}

/* Unregisters the recorder of the list `arg`, then itself: both while a round runs. */
static int
remove_recorder_and_self(PyObject *Py_UNUSED(report), void *arg)
{
    PyObject *list = (PyObject *)arg;
    if (MightyPatcher_RemoveReloadCallback(record, list) < 0) {
        return -1;
    }
    Py_DECREF(list); /* the recorder's reference */
    if (MightyPatcher_RemoveReloadCallback(remove_recorder_and_self, list) < 0) {
        return -1;
    }
    Py_DECREF(list); /* our own */
    return 0;
}

static PyObject *
add_recorder(PyObject *Py_UNUSED(module), PyObject *list)
{
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "add_recorder() takes a list");
        return NULL;
    }
    int status = MightyPatcher_AddReloadCallback(record, list);
    if (status == 0) {
        Py_INCREF(list); /* held by the registration until it is removed */
    }
    return int_result("add_reload_callback", status);
}

static PyObject *
remove_recorder(PyObject *Py_UNUSED(module), PyObject *list)
{
    int status = MightyPatcher_RemoveReloadCallback(record, list);
    if (status == 0) {
        Py_DECREF(list);
    }
    return int_result("remove_reload_callback", status);
}

static PyObject *
add_remover(PyObject *Py_UNUSED(module), PyObject *list)
{
    int status = MightyPatcher_AddReloadCallback(remove_recorder_and_self, list);
    if (status == 0) {
        Py_INCREF(list);
    }
    return int_result("add_reload_callback", status);
}

static PyObject *
add_failing(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("add_reload_callback", MightyPatcher_AddReloadCallback(fail, NULL));
}

static PyObject *
remove_failing(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("remove_reload_callback",
                      MightyPatcher_RemoveReloadCallback(fail, NULL));
}

static PyObject *
add_silent_failure(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("add_reload_callback",
                      MightyPatcher_AddReloadCallback(fail_silently, NULL));
}

static PyObject *
remove_silent_failure(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("remove_reload_callback",
                      MightyPatcher_RemoveReloadCallback(fail_silently, NULL));
}

static PyObject *
add_null_callback(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("add_reload_callback", MightyPatcher_AddReloadCallback(NULL, NULL));
}

static PyObject *
remove_null_callback(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return int_result("remove_reload_callback",
                      MightyPatcher_RemoveReloadCallback(NULL, NULL));
}

/* --- interpreters ---------------------------------------------------------------------- */

/* Runs `source` in a new subinterpreter (sharing the GIL, as Py_NewInterpreter makes them),
   then ends it. Returns PyRun_SimpleString's status: 0, or -1 after printing the traceback. */
static PyObject *
run_in_subinterpreter(PyObject *Py_UNUSED(module), PyObject *source)
{
    const char *text = PyUnicode_AsUTF8(source);
    if (text == NULL) {
        return NULL;
    }
    PyThreadState *main_state = PyThreadState_Get();
    PyThreadState *sub = Py_NewInterpreter();
    if (sub == NULL) {
        PyThreadState_Swap(main_state);
        PyErr_SetString(PyExc_RuntimeError, "Py_NewInterpreter failed");
        return NULL;
    }
    int status = PyRun_SimpleString(text);
    Py_EndInterpreter(sub);
    PyThreadState_Swap(main_state);
    return PyLong_FromLong(status);
}

/* --- the module ------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"api_info", api_info, METH_NOARGS, "The imported table's header fields."},
    {"import_api", import_api, METH_NOARGS, "MightyPatcher_IMPORT again."},
    {"patch_function", patch_function, METH_VARARGS, NULL},
    {"swap_code", swap_code, METH_VARARGS, NULL},
    {"patch_class", patch_class, METH_VARARGS, NULL},
    {"functions_using", functions_using, METH_O, NULL},
    {"currently_reloading", currently_reloading, METH_NOARGS, NULL},
    {"enter_reloading", enter_reloading, METH_NOARGS, NULL},
    {"exit_reloading", exit_reloading, METH_NOARGS, NULL},
    {"add_recorder", add_recorder, METH_O, "Register a C callback appending to the list."},
    {"remove_recorder", remove_recorder, METH_O, NULL},
    {"add_remover", add_remover, METH_O,
     "Register a C callback that unregisters the list's recorder, then itself."},
    {"add_failing", add_failing, METH_NOARGS, NULL},
    {"remove_failing", remove_failing, METH_NOARGS, NULL},
    {"add_silent_failure", add_silent_failure, METH_NOARGS, NULL},
    {"remove_silent_failure", remove_silent_failure, METH_NOARGS, NULL},
    {"add_null_callback", add_null_callback, METH_NOARGS, NULL},
    {"remove_null_callback", remove_null_callback, METH_NOARGS, NULL},
    {"run_in_subinterpreter", run_in_subinterpreter, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    /* The import helper, as an extension would call it: ImportError on failure. */
    if (MightyPatcher_IMPORT < 0) {
        return -1;
    }
    ext_state *state = state_of(module);
    state->null = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (state->null == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "NULL", state->null);
}

static int
traverse(PyObject *module, visitproc visit, void *arg)
{
    ext_state *state = state_of(module);
    if (state != NULL) {
        Py_VISIT(state->null);
    }
    return 0;
}

static int
clear(PyObject *module)
{
    ext_state *state = state_of(module);
    if (state != NULL) {
        Py_CLEAR(state->null);
    }
    return 0;
}

static void
free_module(void *module)
{
    clear((PyObject *)module);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "test_capi_ext",
    "Uses mighty_patcher's C API; see tests/test_capi.py.",
    sizeof(ext_state),
    methods,
    slots,
    traverse,
    clear,
    free_module,
};

PyMODINIT_FUNC
PyInit_test_capi_ext(void)
{
    return PyModuleDef_Init(&module_def);
}
