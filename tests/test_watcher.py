"""The native file watcher, driven with real saves in a temporary directory."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import sigint_as_in_a_terminal
from mighty_patcher import Watcher, WatchError

#: Generous: every wait returns as soon as something is ready; this only bounds a failure.
TIMEOUT = 5.0
#: How long "nothing more is reported" is checked for.
SETTLE = 0.3


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("VALUE = 1\n")
    return root


@pytest.fixture
def watcher(root: Path) -> Iterator[Watcher]:
    with Watcher([root]) as w:
        yield w


def wait_for(watcher: Watcher, path: Path) -> list[set[str]]:
    """Waits until ``path`` is reported; returns every batch reported until then."""
    batches: list[set[str]] = []
    deadline = time.monotonic() + TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        result = watcher.wait(timeout=left)
        if isinstance(result, str):
            break
        batches.append(result)
        if str(path) in result:
            return batches
    pytest.fail(f"{path} was not reported within {TIMEOUT} s; got {batches}")


def wait_for_all(watcher: Watcher, paths: list[Path]) -> set[str]:
    """Waits until every one of ``paths`` is reported; returns everything reported."""
    reported: set[str] = set()
    for path in paths:
        if str(path) not in reported:
            for batch in wait_for(watcher, path):
                reported |= batch
    return reported


def settle(watcher: Watcher) -> None:
    """Takes what is still being reported until nothing is for ``SETTLE`` seconds. A file
    written into a directory just made can be reported twice: once by the scan of the new
    directory, once by its own close event if that arrives after the first report went out."""
    deadline = time.monotonic() + TIMEOUT
    while watcher.wait(timeout=SETTLE) != "timeout":
        if time.monotonic() > deadline:
            pytest.fail(f"still reporting after {TIMEOUT} s")


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Waits for ``condition``, which the watcher's own thread makes true soon."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {TIMEOUT} s: {what}")
        time.sleep(0.01)


def test_a_file_written_in_place_is_reported_when_closed(watcher: Watcher, root: Path) -> None:
    mod = root / "pkg" / "mod.py"
    mod.write_text("VALUE = 2\n")
    assert watcher.wait(timeout=TIMEOUT) == {str(mod)}
    assert mod.read_text() == "VALUE = 2\n"


def test_reading_a_reported_file_is_not_a_change(watcher: Watcher, root: Path) -> None:
    mod = root / "pkg" / "mod.py"
    mod.write_text("VALUE = 2\n")
    assert watcher.wait(timeout=TIMEOUT) == {str(mod)}
    mod.read_text()
    assert watcher.wait(timeout=SETTLE) == "timeout"


def test_a_slow_truncating_writer_is_reported_only_once_complete(
    watcher: Watcher, root: Path
) -> None:
    mod = root / "pkg" / "mod.py"
    new = "VALUE = 'the whole new content'\n" * 20
    done = threading.Event()

    def slow_writer() -> None:
        with open(mod, "w") as f:  # truncates: the file is open and empty from here
            time.sleep(0.2)
            f.write(new)
        done.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        contents_when_reported = []
        for batch in wait_for(watcher, mod):
            if str(mod) in batch:
                contents_when_reported.append(mod.read_text())
    finally:
        writer.join()
    assert done.is_set()
    assert contents_when_reported == [new]


def test_a_slow_writer_that_pauses_several_times_is_never_reported_half_way(
    watcher: Watcher, root: Path
) -> None:
    mod = root / "pkg" / "mod.py"
    script = textwrap.dedent(
        f"""
        import time
        with open({str(mod)!r}, "w") as f:
            for i in range(3):
                time.sleep(0.1)
                f.write(f"PART_{{i}} = {{i}}\\n")
                f.flush()
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script])
    try:
        batches = wait_for(watcher, mod)
        content = mod.read_text()
    finally:
        writer.wait(timeout=TIMEOUT)
    assert batches == [{str(mod)}]
    assert content == "PART_0 = 0\nPART_1 = 1\nPART_2 = 2\n"


def test_a_temp_file_renamed_over_the_original_is_reported(watcher: Watcher, root: Path) -> None:
    # JetBrains IDEs, and most "atomic save" helpers.
    mod = root / "pkg" / "mod.py"
    temp = root / "pkg" / "mod.py___jb_tmp___"
    temp.write_text("VALUE = 3\n")
    os.replace(temp, mod)
    assert watcher.wait(timeout=TIMEOUT) == {str(mod)}
    assert mod.read_text() == "VALUE = 3\n"


def test_renaming_the_original_away_and_writing_anew_is_one_change(
    watcher: Watcher, root: Path
) -> None:
    # vim with `backupcopy=no`: mod.py -> mod.py~, write a new mod.py, delete the backup.
    mod = root / "pkg" / "mod.py"
    backup = root / "pkg" / "mod.py~"
    os.rename(mod, backup)
    mod.write_text("VALUE = 4\n")
    backup.unlink()
    assert watcher.wait(timeout=TIMEOUT) == {str(mod)}
    assert mod.read_text() == "VALUE = 4\n"
    assert watcher.wait(timeout=SETTLE) == "timeout"


def test_sed_in_place_is_reported(watcher: Watcher, root: Path) -> None:
    mod = root / "pkg" / "mod.py"
    subprocess.run(["sed", "-i", "s/VALUE = 1/VALUE = 5/", str(mod)], check=True)
    assert watcher.wait(timeout=TIMEOUT) == {str(mod)}
    assert mod.read_text() == "VALUE = 5\n"


def test_delete_then_recreate_is_one_change(watcher: Watcher, root: Path) -> None:
    mod = root / "pkg" / "mod.py"
    mod.unlink()
    mod.write_text("VALUE = 6\n")
    assert watcher.wait(timeout=TIMEOUT) == {str(mod)}
    assert mod.read_text() == "VALUE = 6\n"
    assert watcher.wait(timeout=SETTLE) == "timeout"


def test_a_deleted_file_is_reported_and_is_missing_then(watcher: Watcher, root: Path) -> None:
    mod = root / "pkg" / "mod.py"
    mod.unlink()
    assert watcher.wait(timeout=TIMEOUT) == {str(mod)}
    assert not mod.exists()


def test_a_new_file_is_reported(watcher: Watcher, root: Path) -> None:
    new = root / "pkg" / "new.py"
    new.write_text("NEW = True\n")
    assert watcher.wait(timeout=TIMEOUT) == {str(new)}


def test_files_other_than_python_sources_are_not_reported(watcher: Watcher, root: Path) -> None:
    pkg = root / "pkg"
    for name in ["data.json", "mod.pyc", "mod.py~", "notes.txt", ".mod.py.swp", "4913"]:
        (pkg / name).write_text("x")
    sentinel = pkg / "sentinel.py"
    sentinel.write_text("")
    assert wait_for(watcher, sentinel) == [{str(sentinel)}]


def test_ignored_directories_are_not_watched(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    skipped = [
        root / "__pycache__",
        root / ".hidden",
        root / "venv",
        root / ".venv",
        root / "env",  # a virtualenv by its pyvenv.cfg
        root / "lib" / "site-packages",
        root / "node_modules",
        root / "build",  # ignore=
        root / "env" / "lib" / "deep",
    ]
    for directory in skipped:
        directory.mkdir(parents=True)
    (root / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with Watcher([root], ignore=["build"]) as w:
        assert w.watched_directories == 2  # proj and proj/lib
        (root / "lib" / "later" / "__pycache__").mkdir(parents=True)
        for directory in [*skipped, root / "lib" / "later" / "__pycache__"]:
            (directory / "x.py").write_text("x = 1\n")
        sentinel = root / "lib" / "sentinel.py"
        sentinel.write_text("")
        assert wait_for(w, sentinel) == [{str(sentinel)}]
        eventually(lambda: w.watched_directories == 3, "proj/lib/later is watched")


def test_a_symlinked_directory_is_not_followed_out_of_the_root(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    with Watcher([root]) as w:
        (outside / "x.py").write_text("x = 1\n")
        sentinel = root / "pkg" / "sentinel.py"
        sentinel.write_text("")
        assert wait_for(w, sentinel) == [{str(sentinel)}]


def test_a_directory_created_after_the_start_is_watched(watcher: Watcher, root: Path) -> None:
    before = watcher.watched_directories
    deep = root / "pkg" / "sub" / "deeper"
    deep.mkdir(parents=True)
    new = deep / "new.py"
    new.write_text("A = 1\n")
    wait_for(watcher, new)
    eventually(lambda: watcher.watched_directories == before + 2, "both are watched")
    new.write_text("A = 2\n")
    assert watcher.wait(timeout=TIMEOUT) == {str(new)}


def test_a_package_moved_into_the_tree_is_reported_and_watched(
    tmp_path: Path, watcher: Watcher, root: Path
) -> None:
    before = watcher.watched_directories
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "__init__.py").write_text("")
    (elsewhere / "sub" / "leaf.py").write_text("LEAF = 1\n")
    moved = root / "moved"
    os.rename(elsewhere, moved)
    leaf = moved / "sub" / "leaf.py"
    assert wait_for_all(watcher, [moved / "__init__.py", leaf]) == {
        str(moved / "__init__.py"),
        str(leaf),
    }
    eventually(lambda: watcher.watched_directories == before + 2, "both are watched")
    leaf.write_text("LEAF = 2\n")
    assert watcher.wait(timeout=TIMEOUT) == {str(leaf)}


def test_a_removed_directory_is_no_longer_counted(watcher: Watcher, root: Path) -> None:
    before = watcher.watched_directories
    sub = root / "pkg" / "sub"
    sub.mkdir()
    (sub / "a.py").write_text("")
    wait_for(watcher, sub / "a.py")
    eventually(lambda: watcher.watched_directories == before + 1, "sub is watched")
    (sub / "a.py").unlink()
    sub.rmdir()
    assert wait_for_all(watcher, [sub / "a.py", sub]) == {str(sub / "a.py"), str(sub)}
    eventually(lambda: watcher.watched_directories == before, "sub is forgotten")


def test_a_directory_renamed_away_is_reported_for_the_files_it_took_along(
    watcher: Watcher, root: Path
) -> None:
    sub = root / "pkg" / "sub"
    sub.mkdir()
    (sub / "a.py").write_text("")
    wait_for(watcher, sub / "a.py")
    settle(watcher)
    os.rename(sub, root / "pkg" / "renamed")
    reported = wait_for_all(watcher, [sub, root / "pkg" / "renamed" / "a.py"])
    assert str(sub / "a.py") not in reported, "no event of its own"
    os.rename(root / "pkg" / "renamed", sub)  # back in time: watched again, its files reported
    assert str(sub / "a.py") in wait_for_all(watcher, [sub / "a.py"])


def test_a_single_file_root_is_watched_alone(root: Path) -> None:
    mod = root / "pkg" / "mod.py"
    sibling = root / "pkg" / "sibling.py"
    with Watcher([mod]) as w:
        assert w.roots == (str(mod),)
        assert w.watched_directories == 1
        sibling.write_text("")
        mod.write_text("VALUE = 7\n")
        assert wait_for(w, mod) == [{str(mod)}]
        # Saved by rename twice: the watch is on the directory, so it survives replacement.
        for value in (8, 9):
            temp = root / "pkg" / "mod.py.tmp"
            temp.write_text(f"VALUE = {value}\n")
            os.replace(temp, mod)
            assert w.wait(timeout=TIMEOUT) == {str(mod)}
            assert mod.read_text() == f"VALUE = {value}\n"


def test_roots_are_absolute_and_without_duplicates(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root.parent)
    with Watcher(["proj", Path("proj/pkg/../pkg/"), root, "./proj"]) as w:
        assert w.roots == (str(root), str(root / "pkg"))
        assert w.watched_directories == 2


def test_stop_from_another_thread_wakes_a_waiting_wait(watcher: Watcher) -> None:
    stopper = threading.Timer(0.1, watcher.stop)
    stopper.start()
    # Not woken by stop(), wait() would sit out its timeout and return "timeout".
    assert watcher.wait(timeout=TIMEOUT) == "stop"
    stopper.join()
    assert watcher.wait(timeout=TIMEOUT) == "stop"  # and every time after


def test_a_stopped_watcher_reports_stop_even_with_changes_pending(
    watcher: Watcher, root: Path
) -> None:
    (root / "pkg" / "mod.py").write_text("VALUE = 10\n")
    watcher.stop()
    assert watcher.wait(timeout=TIMEOUT) == "stop"


def test_wait_returns_timeout_when_nothing_changes(watcher: Watcher) -> None:
    assert watcher.wait(timeout=0.05) == "timeout"
    assert watcher.wait(0) == "timeout"
    assert watcher.wait(timeout=-1) == "timeout"


def test_poll_mode_detects_changes(root: Path) -> None:
    mod = root / "pkg" / "mod.py"
    with Watcher([root], poll=True, poll_interval=0.02) as w:
        assert w.watched_directories == 2
        # Likely within the same second as the file's creation above: PollWatcher alone would
        # miss it (it compares whole seconds).
        mod.write_text("VALUE = 11\n")
        assert w.wait(timeout=TIMEOUT) == {str(mod)}
        assert mod.read_text() == "VALUE = 11\n"
        mod.write_text("VALUE = 12\n")  # a second change, again within the same second
        assert w.wait(timeout=TIMEOUT) == {str(mod)}
        new = root / "pkg" / "sub" / "new.py"
        new.parent.mkdir()
        new.write_text("")
        wait_for(w, new)
        mod.unlink()
        assert wait_for(w, mod)[-1] == {str(mod)}


def test_a_missing_root_raises_watch_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(WatchError) as raised:
        Watcher([tmp_path, missing])
    assert isinstance(raised.value, OSError)
    assert raised.value.errno == errno.ENOENT
    assert raised.value.filename == str(missing)
    assert "does not exist" in str(raised.value)


def test_arguments_are_checked(root: Path) -> None:
    with pytest.raises(TypeError, match="single string"):
        Watcher(str(root))  # a str is a Sequence[str] to a type checker
    with pytest.raises(TypeError, match="single string"):
        Watcher([root], ignore="build")
    with pytest.raises(ValueError, match="quiet"):
        Watcher([root], quiet=-1)
    with pytest.raises(ValueError, match="poll_interval"):
        Watcher([root], poll=True, poll_interval=0)
    (root / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=r"must be a \.py file"):
        Watcher([root / "notes.txt"])
    with pytest.raises(TypeError):
        Watcher([root], True)  # type: ignore[call-arg]  # poll is keyword-only


def test_close_releases_the_watches_and_wait_then_returns_stop(root: Path) -> None:
    w = Watcher([root])
    assert w.watched_directories == 2
    w.close()
    assert w.watched_directories == 0
    assert w.wait(timeout=TIMEOUT) == "stop"
    w.close()  # again: nothing to do
    assert w.roots == (str(root),)


def inotify_descriptors() -> int:
    """How many inotify instances this process holds."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += "inotify" in os.readlink(fd)
        except OSError:  # the descriptor listing the directory, closed by now
            pass
    return count


def test_closed_and_collected_watchers_give_their_inotify_instance_back(root: Path) -> None:
    before = inotify_descriptors()
    w = Watcher([root])
    assert inotify_descriptors() == before + 1
    w.close()
    assert inotify_descriptors() == before
    w = Watcher([root])
    del w
    assert inotify_descriptors() == before


def test_keyboard_interrupt_reaches_a_main_thread_blocked_in_wait(root: Path) -> None:
    script = textwrap.dedent(
        f"""
        from mighty_patcher import Watcher
        w = Watcher([{str(root)!r}])
        print("waiting", flush=True)
        w.wait(timeout=None)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "waiting\n"
        time.sleep(0.1)  # let it enter wait(); a signal before that interrupts just the same
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in stderr
