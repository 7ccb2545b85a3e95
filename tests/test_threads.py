"""Threads under load: eight threads call patched functions, methods, properties, static and
class methods, closures made before the first edit and bound methods taken before it, in
tight loops, while the main thread saves and reloads the module again and again (a
subprocess: a crash is a failed test).

Each call returns the version of the code that ran twice, from two places one patch swaps
together (the code and its defaults), so a half-patched function shows; what a running call
reads from elsewhere (a global, a class attribute) may be newer than its code, as its frame
finishes on the code it started with. No thread may raise, see a version go backwards, or
end on anything but the last version.

``MIGHTY_PATCHER_STRESS_RELOADS`` sets the number of reloads (CI: 200; ``make stress``:
1000).
"""

from __future__ import annotations

import json
import os

from conftest import require

RELOADS = int(os.environ.get("MIGHTY_PATCHER_STRESS_RELOADS", "200"))

PROGRAM = r'''
import json, sys, threading, time
from pathlib import Path

ROOT = Path.cwd() / "src"
RELOADS, THREADS = {reloads}, 8
TEMPLATE = """
V = {{v}}

def f(x, k={{v}}):
    return ({{v}}, k, x)

def make(n):
    def inner(x):
        return ({{v}}, V, n, x)
    return inner

class Base:
    def who(self):
        return {{v}}

class C(Base):
    scale = {{v}}
    def m(self, x, s=scale):
        return ({{v}}, s, super().who(), x)
    @property
    def p(self, v={{v}}):
        return ({{v}}, v, self.scale)
    @staticmethod
    def s(x, v={{v}}):
        return ({{v}}, v, x)
    @classmethod
    def k(cls, x, v={{v}}):
        return ({{v}}, v, cls.scale, x)
    def __len__(self):
        return {{v}}
"""
(ROOT / "hot").mkdir(parents=True)
(ROOT / "hot/__init__.py").write_text("")
module = ROOT / "hot/mod.py"
module.write_text(TEMPLATE.format(v=0))
sys.path.insert(0, str(ROOT))

from mighty_patcher.watch import AutoReloader
reloader = AutoReloader(str(ROOT), start=False, log_level=40)
# Threads take turns 50 times as often as by default: more interleavings, and the reloading
# thread is not kept waiting for the GIL 5 ms at each of its file reads.
sys.setswitchinterval(0.0001)
from hot import mod

held_f, obj = mod.f, mod.C()
bound, closure = obj.m, mod.make(7)
stop = threading.Event()
errors, last_seen, calls = [], {{}}, [0] * THREADS
start = threading.Barrier(THREADS + 1)


def consistent(name, result, low):
    """The version the call saw, checked: two sources of it agree, it never goes back."""
    a, b = result[0], result[1]
    if name != "closure" and a != b:
        raise AssertionError(f"{{name}} ran a mix of versions: {{result}}")
    if a < low.get(name, 0):
        raise AssertionError(f"{{name}} went back from version {{low[name]}} to {{a}}")
    low[name] = a
    return a


def worker(i):
    low = {{}}
    start.wait()
    try:
        while True:
            final = stop.is_set()  # one last round after the last reload
            seen = {{
                "f": consistent("f", held_f(i), low),
                "mod.f": consistent("mod.f", mod.f(i), low),
                "m": consistent("m", bound(i), low),
                "p": consistent("p", obj.p, low),
                "s": consistent("s", mod.C.s(i), low),
                "k": consistent("k", obj.k(i), low),
                "closure": consistent("closure", closure(i), low),
                "len": len(obj),
            }}
            if closure(i)[2] != 7:
                raise AssertionError(f"the closure lost its cell: {{closure(i)}}")
            calls[i] += 1
            if final:
                last_seen[i] = seen
                return
    except BaseException as exc:
        errors.append(f"thread {{i}}: {{type(exc).__name__}}: {{exc}}")


threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
for t in threads:
    t.start()
start.wait()
began = time.perf_counter()
failed = []
for v in range(1, RELOADS + 1):
    module.write_text(TEMPLATE.format(v=v))
    reports = reloader.reload_now()
    if len(reports) != 1 or not reports[0].ok:
        failed.append([r.as_dict() for r in reports])
stop.set()
for t in threads:
    t.join()
print(json.dumps({{
    "seconds": time.perf_counter() - began,
    "calls": sum(calls),
    "failed": failed[:3],
    "errors": errors[:10],
    "last_seen": last_seen,
}}))
'''


def test_eight_threads_calling_through_reloads_see_whole_versions_and_end_on_the_last(isolated):
    require(RELOADS > 0, "MIGHTY_PATCHER_STRESS_RELOADS=0")
    proc = isolated(PROGRAM.format(reloads=RELOADS), timeout=900)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{RELOADS} reloads in {result['seconds']:.1f} s, {result['calls']} rounds of calls")
    assert result["failed"] == [], result["failed"]
    assert result["errors"] == [], result["errors"]
    assert len(result["last_seen"]) == 8
    for seen in result["last_seen"].values():
        assert set(seen.values()) == {RELOADS}, seen
