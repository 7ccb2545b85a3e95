"""On a free-threaded build (3.14t) the module runs with the GIL enabled, and refuses to patch
when the user forces the GIL off. (Run by `make matrix FREE_THREADED=1`.)"""

from __future__ import annotations

import sysconfig

import pytest

pytestmark = pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="a free-threaded build only"
)

SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore", RuntimeWarning)
import mighty_patcher as mp
def f():
    return 1
ns = {}
exec("def f():\\n    return 2\\n", globals(), ns)
try:
    mp.patch_function(f, ns["f"])
except RuntimeError as exc:
    print("refused:", exc)
print("gil enabled:", sys._is_gil_enabled(), "f() =", f())
"""


def test_importing_it_enables_the_gil_and_patching_works(isolated):
    proc = isolated(SCRIPT)
    assert proc.stdout.strip() == "gil enabled: True f() = 2"


def test_with_the_gil_forced_off_patches_are_refused_and_change_nothing(isolated):
    proc = isolated(SCRIPT, env={"PYTHON_GIL": "0"})
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("refused: the GIL is disabled (PYTHON_GIL=0")
    assert lines[1] == "gil enabled: False f() = 1"
