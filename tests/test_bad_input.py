"""Bad input, through the real watcher into a running program (a subprocess): each leaves the
program running its old code with one clear message, and the next good save applies."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from live import LiveProgram, write

#: Installed before the reloader starts: the program keeps what the reloader logs.
KEEP_LOG = """
import logging
messages = []
class _Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger("mighty_patcher").addHandler(_Keep())
"""

MOD = "X = 1\ndef f():\n    return X\n"


@pytest.fixture
def program(program):
    """conftest's ``program``, each one keeping what the reloader logs in ``messages``."""

    def start(setup: str = "", **options):
        return program(KEEP_LOG + setup, **options)

    return start


def messages_about(p: LiveProgram, text: str) -> list[str]:
    messages = p.eval("messages")
    assert isinstance(messages, list)
    return [m for m in messages if text in m]


def then_a_good_save_applies(p: LiveProgram, path: Path) -> None:
    write(path, "X = 1\ndef f():\n    return X * 100\n")
    (report,) = p.wait_reload(timeout=30)
    assert report["ok"], report
    assert p.eval("mod.f()") == 100


def refused(p: LiveProgram, path: Path, source: str | bytes, timeout: float = 30) -> str:
    """Saves ``source``; returns the error of the one report it gives, after checking that the
    program still runs its old code."""
    if isinstance(source, bytes):
        path.write_bytes(source)
    else:
        write(path, source)
    (report,) = p.wait_reload(timeout=timeout)
    assert not report["ok"] and report["error"], report
    assert p.eval("(mod.X, mod.f())") == (1, 1)
    (line,) = messages_about(p, "failed; it keeps running its previous version")
    assert report["error"] in line
    return str(report["error"])


@pytest.fixture
def mod(tmp_path) -> Path:
    write(tmp_path / "app/__init__.py", "")
    write(tmp_path / "app/mod.py", MOD)
    return tmp_path / "app/mod.py"


def test_a_syntax_error(program, mod):
    p = program("from app import mod\n")
    error = refused(p, mod, "X = 2\ndef f(:\n    return X\n")
    assert error.startswith("SyntaxError") and "app/mod.py:2" in error and "def f(:" in error
    then_a_good_save_applies(p, mod)


def test_an_exception_in_the_module_body(program, mod):
    p = program("from app import mod\n")
    error = refused(p, mod, "X = 2\ndef f():\n    return X\nraise RuntimeError('no')\n")
    assert error.startswith("RuntimeError: no") and "app/mod.py:4" in error
    then_a_good_save_applies(p, mod)


def test_an_empty_file(program, mod):
    p = program("from app import mod\n")
    error = refused(p, mod, "")
    assert error.startswith("app/mod.py is empty: not applied")
    then_a_good_save_applies(p, mod)


def test_a_half_written_file_is_applied_once_its_writer_closes_it(program, mod):
    p = program("from app import mod\n")
    new = "X = 1\ndef f():\n    return X * 100\n"
    with open(mod, "w") as f:
        f.write(new[:15])  # "X = 1\ndef f():\n": does not compile on its own
        f.flush()
        time.sleep(0.5)  # the editor pauses with the file open
        f.write(new[15:])
    (report,) = p.wait_reload(timeout=30)
    assert report["ok"] and report["patched"] == ["f"], report
    assert p.eval("mod.f()") == 100


def test_a_half_written_file_that_is_closed_is_a_syntax_error(program, mod):
    p = program("from app import mod\n")
    error = refused(p, mod, "X = 2\ndef f():\n")
    assert error.startswith("SyntaxError") and "app/mod.py" in error
    then_a_good_save_applies(p, mod)


def test_bytes_that_are_not_utf8(program, mod):
    p = program("from app import mod\n")
    error = refused(p, mod, b"X = 2\nNAME = 'caf\xe9'\ndef f():\n    return X\n")
    assert "app/mod.py: line 2, column 12 is not valid utf-8" in error


def test_a_50_mb_file_is_refused_without_reading_it(program, mod):
    p = program("from app import mod\nimport resource\n")
    peak = "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"  # KiB
    before = p.eval(peak)
    big = "".join(f"X{i} = {i}\n" for i in range(3_000_000))  # 54 MB of statements
    assert len(big) > 50_000_000
    error = refused(p, mod, big)
    assert "app/mod.py is 52.2 MiB, more than the 10.0 MiB a reload reads" in error
    grown = (p.eval(peak) - before) / 1024
    assert grown < 20, f"the program's peak memory grew by {grown:.0f} MiB"
    then_a_good_save_applies(p, mod)


def test_a_deleted_file(program, mod):
    p = program("from app import mod\n")
    mod.unlink()
    p.wait_for("any('was deleted' in m for m in messages)")
    (line,) = messages_about(p, "app/mod.py")
    assert line.endswith("app/mod.py was deleted; app.mod keeps running its last version")
    assert p.eval("mod.f()") == 1
    then_a_good_save_applies(p, mod)


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_a_directory_renamed_or_deleted(program, tmp_path, how):
    write(tmp_path / "app/__init__.py", "")
    write(tmp_path / "app/sub/__init__.py", "")
    write(tmp_path / "app/sub/mod.py", MOD)
    p = program("from app.sub import mod\n")
    sub = tmp_path / "app/sub"
    if how == "renamed":
        os.rename(sub, tmp_path / "app/renamed")
    else:
        shutil.rmtree(sub)
    p.wait_for("any('renamed away' in m for m in messages)")
    (line,) = messages_about(p, "app/sub")
    assert line == (
        "app/sub was deleted or renamed away; app.sub, app.sub.mod keep running their last version"
    )
    assert p.eval("mod.f()") == 1
    if how == "renamed":
        os.rename(tmp_path / "app/renamed", sub)
    else:
        write(sub / "__init__.py", "")
    then_a_good_save_applies(p, sub / "mod.py")


def test_a_symbolic_link_out_of_the_root_is_never_followed(program, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root / "app/__init__.py", "")
    write(root / "app/mod.py", MOD)
    write(outside / "ext/__init__.py", "")
    write(outside / "ext/inner.py", "X = 1\n")
    write(outside / "linked.py", "X = 1\n")
    (root / "ext").symlink_to(outside / "ext", target_is_directory=True)
    (root / "app/linked.py").symlink_to(outside / "linked.py")
    p = program("from app import mod, linked\nfrom ext import inner\n", root=root)
    assert p.eval("(inner.__file__, linked.__file__)") == (
        str(root / "ext/inner.py"),
        str(root / "app/linked.py"),
    )
    marker = tmp_path / "ran"
    for target in (outside / "ext/inner.py", outside / "linked.py"):
        write(target, f"X = 2\nopen({str(marker)!r}, 'w').close()\n")
    p.exec("forced = reloader.reload_now()")  # looks at every file it follows, now
    assert p.eval("forced") == []
    (root / "app/linked.py").unlink()  # the link itself made again: the watcher sees that
    (root / "app/linked.py").symlink_to(outside / "linked.py")
    then_a_good_save_applies(p, root / "app/mod.py")  # the only reload the saves gave
    assert p.eval("(inner.X, linked.X)") == (1, 1) and not marker.exists()
    assert not messages_about(p, "outside")


def test_a_file_the_program_never_imported_is_never_executed(program, mod, tmp_path):
    p = program("from app import mod\n")
    marker = tmp_path / "ran"
    write(tmp_path / "app/unused.py", f"open({str(marker)!r}, 'w').close()\n")
    p.exec("forced = reloader.reload_now()")
    assert p.eval("forced") == []
    then_a_good_save_applies(p, mod)
    assert not marker.exists()


#: Root reads any file whatever its mode: the program drops CAP_DAC_OVERRIDE and
#: CAP_DAC_READ_SEARCH before the reloader's threads start (they inherit the thread's
#: capabilities), so that a file with mode 000 is as unreadable to it as to anyone else.
DROP_READ_OVERRIDE = """
import ctypes, os
if os.geteuid() == 0:
    class _Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class _Data(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]
    _libc = ctypes.CDLL(None, use_errno=True)
    _header, _data = _Header(0x20080522, 0), (_Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    assert _libc.capget(ctypes.byref(_header), _data) == 0, ctypes.get_errno()
    for _field in ("effective", "permitted"):
        setattr(_data[0], _field, getattr(_data[0], _field) & ~0b110)  # bits 1 and 2
    assert _libc.capset(ctypes.byref(_header), _data) == 0, ctypes.get_errno()
"""


def test_a_file_that_cannot_be_read(program, mod):
    p = program(DROP_READ_OVERRIDE + "from app import mod\n")
    mod.chmod(0)
    try:
        with pytest.raises(AssertionError, match="PermissionError"):
            p.eval(f"open({str(mod)!r}).read()")  # the program really cannot read it
        error = refused(p, mod, "X = 2\ndef f():\n    return X\n")
        assert error.startswith("cannot read app/mod.py: [Errno 13] Permission denied")
    finally:
        mod.chmod(0o644)
    then_a_good_save_applies(p, mod)
