"""The live demo: a program runs under the reloader while a scripted editor saves edits to
its source. Watch the program's output change, with no restart.

    python demo/live_demo.py

It is also a test of what a user sees: the program's output is read as it comes, and at the
end the demo checks it (every tick printed once and in order, the one cart never opened a
second time, each edit visible after its save and in order, the syntax error reported with
file and line, the program ending by itself). It exits 1, saying what went wrong, if any
check fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICKS = 30


def replace(path: Path, old: str, new: str, *, atomic: bool = False) -> None:
    """Saves ``path`` with ``old`` replaced by ``new``: in place, or like vim and JetBrains do
    (a temporary file renamed over the original) when ``atomic``."""
    text = path.read_text()
    assert old in text, (path, old)
    text = text.replace(old, new)
    if atomic:
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(text)
        os.replace(temp, path)
    else:
        path.write_text(text)


@dataclass
class Edit:
    what: str  # what the editor says it does
    save: Callable[[], None]
    shows: str  # a regular expression: the first line of output that shows the edit took


class Transcript:
    """The program's output and the editor's saves, in the order they happened, echoed as
    they come."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
        print(line, flush=True)

    def follow(self, stream: object) -> threading.Thread:
        def read() -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.add(line.rstrip("\n"))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="mighty_patcher_demo_"))
    shutil.copytree(HERE / "shop", workdir, dirs_exist_ok=True)
    pricing, cart = workdir / "shop" / "pricing.py", workdir / "shop" / "cart.py"
    print(f"running {workdir / 'app.py'} under `python -m mighty_patcher run`\n", flush=True)
    program = subprocess.Popen(
        [sys.executable, "-m", "mighty_patcher", "run", str(workdir / "app.py"), str(TICKS)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    transcript = Transcript()
    assert program.stdout is not None
    reader = transcript.follow(program.stdout)
    edits = [
        Edit(
            "a function body: apples now cost 0.80 (shop/pricing.py, saved in place)",
            lambda: replace(
                pricing,
                "return PRICES.get(item, 1.00)",
                "return {'apple': 0.80}.get(item) or PRICES.get(item, 1.00)",
            ),
            r"^tick +\d+: 2 lines, 3\.90 before tax",
        ),
        Edit(
            "a method of the live cart object: describe() changes its wording "
            "(shop/cart.py, saved by rename like vim)",
            lambda: replace(
                cart,
                'return f"{len(self.lines)} lines, {self.total():.2f} before tax"',
                'return f"cart of {len(self.lines)} lines worth {self.total():.2f}"',
                atomic=True,
            ),
            r"^tick +\d+: cart of 2 lines worth 3\.90",
        ),
        Edit(
            "a constant imported elsewhere: TAX_RATE 0.20 -> 0.25 (cart.py did "
            "`from shop.pricing import TAX_RATE`)",
            lambda: replace(pricing, "TAX_RATE = 0.20", "TAX_RATE = 0.25"),
            r"^tick +\d+: .* with tax 4\.88$",
        ),
        Edit(
            "a typo: a syntax error in shop/cart.py (the program keeps running)",
            lambda: replace(cart, "def with_tax(amount):", "def with_tax(amount:"),
            r"^  at shop/cart\.py:\d+$",
        ),
        Edit(
            "the fix, with a rounding change",
            lambda: replace(
                cart,
                "def with_tax(amount:\n    return amount * (1 + TAX_RATE)",
                "def with_tax(amount):\n    return round(amount * (1 + TAX_RATE), 1)",
            ),
            r"^tick +\d+: .* with tax 4\.90$",
        ),
    ]
    code: int | None = None
    try:
        time.sleep(2.5)
        for edit in edits:
            if program.poll() is not None:
                break
            transcript.add(f"\n  editor> {edit.what}")
            edit.save()
            time.sleep(1.6)
        code = program.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if program.poll() is None:
            program.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ndemo finished (program exit code {code})")
    problems = check(transcript.lines, edits, code)
    if problems:
        print("\nTHE DEMO WENT WRONG:", *(f"  - {p}" for p in problems), sep="\n")
        return 1
    print("checked: every tick once and in order, one cart, all five edits seen in order")
    return 0


def check(lines: list[str], edits: list[Edit], code: int | None) -> list[str]:
    """What the user should have seen; returns what was not so."""
    problems = []
    ticks = [int(m.group(1)) for m in (re.match(r"^tick +(\d+):", line) for line in lines) if m]
    if ticks != list(range(1, TICKS + 1)):
        problems.append(
            f"the ticks were not 1..{TICKS}, each once and in order (a loop run twice, or "
            f"cut short): {ticks}"
        )
    opened = sum(1 for line in lines if line == "a new cart is opened")
    if opened != 1:
        problems.append(f"the cart was opened {opened} times; the program opens it once")
    saved, shown = -1, -1
    for number, edit in enumerate(edits, 1):
        try:
            saved = lines.index(f"\n  editor> {edit.what}", saved + 1)
        except ValueError:
            problems.append(f"edit {number} was never saved")
            break
        seen = next((i for i in range(saved, len(lines)) if re.search(edit.shows, lines[i])), None)
        if seen is None or seen < shown:
            problems.append(
                f"edit {number} ({edit.what}) did not show after its save and the edits before "
                f"it: no line /{edit.shows}/ in its place"
            )
            break
        shown = seen
    if not any(line == "the program ran to its end without a restart" for line in lines[-3:]):
        problems.append("the program did not end by itself after its last tick")
    if code != 0:
        problems.append(f"the program exited with {code}")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
