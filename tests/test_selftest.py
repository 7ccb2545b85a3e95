"""The self-test, as a user runs it: `python -m mighty_patcher --selftest`."""

from __future__ import annotations

import subprocess
import sys
import sysconfig

CHECKS = [
    "interpreter",
    "struct sizes",
    "function fields",
    "function watchers",
    "positional call",
    "keyword call",
    "defaults",
    "*args",
    "bound method",
    "property getter",
    "__getitem__",
    "closure keeps cells",
    "old code released",
]


def test_selftest_command_passes_and_reports_every_check():
    proc = subprocess.run(
        [sys.executable, "-m", "mighty_patcher", "--selftest"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"mighty_patcher self-test: CPython {sys.version.split()[0]}")
    for name in CHECKS:
        assert any(line.startswith(f"  ok    {name}") for line in lines), (name, proc.stdout)
    assert lines[-1] == f"all {len(CHECKS)} checks passed"


def test_selftest_function_is_quiet_on_request(mp, capsys):
    assert mp.selftest(verbose=False) is True
    assert capsys.readouterr().out == ""


def test_info_names_the_build(mp):
    info = mp.build_info()
    assert info["built_for"] == sys.version.split()[0]
    assert info["running"] == sys.version.split()[0]
    assert info["free_threaded"] is bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def test_cli_without_arguments_prints_help():
    from mighty_patcher.cli import main

    assert main([]) == 2
