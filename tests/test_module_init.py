"""Module initialisation: the extension can be imported again and again (each import runs its
exec slot on a new module object) without using up an interpreter-wide resource, and a
resource that is exhausted by others is a clear error, not a SystemError."""

from __future__ import annotations

import sys

REIMPORT = """
import importlib, sys
for i in range(300):
    sys.modules.pop("mighty_patcher.mighty_patcher", None)
    native = importlib.import_module("mighty_patcher.mighty_patcher")
def f():
    return 1
ns = {}
exec("def f():\\n    return 2\\n", ns)
native.patch_function(f, ns["f"])
print(f())
"""


def test_three_hundred_imports_in_one_interpreter(isolated):
    """CPython has 255 code-extra indices per interpreter; each one used to be taken by an
    import (the 254th failed with "execution of module ... failed without setting an
    exception")."""
    assert isolated(REIMPORT).stdout.split() == ["2"]


EXHAUSTED = """
import ctypes, sys
request = getattr(ctypes.pythonapi, "PyUnstable_Eval_RequestCodeExtraIndex" if {modern}
                  else "_PyEval_RequestCodeExtraIndex")
request.argtypes = [ctypes.c_void_p]
request.restype = ctypes.c_ssize_t
taken = 0
while request(None) >= 0:
    taken += 1
try:
    import mighty_patcher
except Exception as exc:
    print(type(exc).__name__, "|", exc)
else:
    print("imported")
"""


def test_an_interpreter_without_a_free_code_extra_index_gets_a_clear_error(isolated):
    proc = isolated(EXHAUSTED.format(modern=sys.version_info >= (3, 12)))
    kind, _, message = proc.stdout.strip().partition(" | ")
    assert kind == "RuntimeError", proc.stdout
    assert "code-extra" in message and "255" in message, message
