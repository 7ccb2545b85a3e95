"""The two sides of the comparison, as scripts (never imported by the fuzzer itself).

``python driver.py live ROOT`` is the program being reloaded: on ``start`` it imports the
package (starting a real :class:`~mighty_patcher.watch.AutoReloader` on ``ROOT`` before or
after, as asked) and captures references; then it answers requests, one JSON line each, on
stdin/stdout (its own output and the reloader's log go to stderr): ``wait`` until the
watcher has applied given files, ``probe``, ``exit``.

``python -I -B driver.py restart ROOT PACKAGE MODULE...`` is the restart: a fresh interpreter
that imports the current files, captures the same references and prints the probe.
"""

import importlib
import importlib.util
import json
import os
import sys
import threading
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def load_probe():
    spec = importlib.util.spec_from_file_location("_fuzz_probe", os.path.join(HERE, "probe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def restart(root, package, shorts):
    sys.dont_write_bytecode = True
    probe = load_probe()
    sys.path.insert(0, root)
    try:
        modules = {s: importlib.import_module(f"{package}.{s}") for s in shorts}
    except BaseException:
        print(json.dumps({"import_error": traceback.format_exc(limit=-3)}))
        return
    refs = probe.capture(modules)
    print(json.dumps({"results": probe.run(modules, refs, root)}))


def live(root):
    answers, sys.stdout = sys.stdout, sys.stderr
    sys.dont_write_bytecode = True
    probe = load_probe()
    sys.path.insert(0, root)
    reports, cond, state = [], threading.Condition(), {}

    def after(report):
        with cond:
            reports.append(report.as_dict())
            cond.notify_all()

    def start(command):
        from mighty_patcher.watch import AutoReloader

        if command["reloader_first"]:
            state["reloader"] = AutoReloader(root, after_reload=after)
        package = command["package"]
        state["modules"] = {
            s: importlib.import_module(f"{package}.{s}") for s in command["modules"]
        }
        if not command["reloader_first"]:
            state["reloader"] = AutoReloader(root, after_reload=after)
        state["refs"] = probe.capture(state["modules"])
        return {"captured": len(state["refs"])}

    def wait(command):
        files, since = set(command["files"]), command["since"]

        def applied():
            # (reports that follow an import elsewhere name their own module's file)
            return files <= {r["file"] for r in reports[since:]}

        with cond:
            complete = cond.wait_for(applied, timeout=command["timeout"])
        with state["reloader"].engine.lock:  # the rebinding that follows a report is done too
            pass
        with cond:
            return {"complete": complete, "reports": reports[since:], "count": len(reports)}

    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "exit":
            break
        try:
            if op == "start":
                answer = start(command)
            elif op == "count":
                with cond:
                    answer = {"count": len(reports)}
            elif op == "wait":
                answer = wait(command)
            elif op == "probe":
                answer = {"results": probe.run(state["modules"], state["refs"], root)}
            else:
                answer = {"error": f"unknown op {op}"}
        except BaseException:
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), file=answers, flush=True)
    if "reloader" in state:
        state["reloader"].stop()


if __name__ == "__main__":
    if sys.argv[1] == "live":
        live(sys.argv[2])
    else:
        restart(sys.argv[2], sys.argv[3], sys.argv[4:])
