"""1,000 reloads of a module leave the live functions, classes and code objects, the resident
memory and (on a debug build of CPython) the total reference count flat: ``leak_check.py`` in
a subprocess. ``make leaks`` runs the same check on a debug build of CPython 3.13."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).with_name("leak_check.py")


def test_a_thousand_reloads_leave_objects_and_memory_flat(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(CHECK), "--reloads", "1000"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode in (0, 1), proc.stderr
    figures = json.loads(proc.stdout)
    before, after = figures["before"], figures["after"]
    print({key: (before[key], after[key]) for key in before})
    assert figures["problems"] == [], figures
