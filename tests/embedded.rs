//! The extension inside an interpreter embedded by a Rust program: registered as a built-in
//! module, imported, and exercised through its self-test and one patch.

use pyo3_ffi::{Py_FinalizeEx, Py_InitializeEx, PyImport_AppendInittab, PyRun_SimpleString};

const SCRIPT: &std::ffi::CStr = c"
import mighty_patcher as mp

assert mp.selftest(verbose=False), 'self-test failed'

def greet():
    return 'hello'

held = greet
ns = {}
exec('def greet():\\n    return \"patched\"\\n', globals(), ns)
mp.patch_function(greet, ns['greet'])
assert held() == 'patched', held()
";

#[test]
fn the_module_works_in_an_embedded_interpreter() {
    // SAFETY: the inittab entry is registered before the interpreter starts; the interpreter
    // is started and finalised once, by this test only, on this thread.
    unsafe {
        let status = PyImport_AppendInittab(
            c"mighty_patcher".as_ptr(),
            Some(mighty_patcher::PyInit_mighty_patcher),
        );
        assert_eq!(status, 0);
        Py_InitializeEx(0);
        let result = PyRun_SimpleString(SCRIPT.as_ptr());
        assert_eq!(Py_FinalizeEx(), 0);
        assert_eq!(
            result, 0,
            "the embedded script failed (its traceback is above)"
        );
    }
}
