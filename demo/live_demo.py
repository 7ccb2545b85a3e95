"""The live demo: a program runs under the reloader while a scripted editor saves edits to
its source. Watch the program's output change, with no restart.

    python demo/live_demo.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def say(text: str) -> None:
    print(f"\n  editor> {text}", flush=True)


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


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="mighty_patcher_demo_"))
    shutil.copytree(HERE / "shop", workdir, dirs_exist_ok=True)
    pricing, cart = workdir / "shop" / "pricing.py", workdir / "shop" / "cart.py"
    print(f"running {workdir / 'app.py'} under `python -m mighty_patcher run`\n", flush=True)
    program = subprocess.Popen(
        [sys.executable, "-m", "mighty_patcher", "run", str(workdir / "app.py"), "30"],
        cwd=workdir,
    )
    edits = [
        (
            "a function body: apples now cost 0.80 (shop/pricing.py, saved in place)",
            lambda: replace(
                pricing,
                "return PRICES.get(item, 1.00)",
                "return {'apple': 0.80}.get(item) or PRICES.get(item, 1.00)",
            ),
        ),
        (
            "a method of the live cart object: describe() changes its wording "
            "(shop/cart.py, saved by rename like vim)",
            lambda: replace(
                cart,
                'return f"{len(self.lines)} lines, {self.total():.2f} before tax"',
                'return f"cart of {len(self.lines)} lines worth {self.total():.2f}"',
                atomic=True,
            ),
        ),
        (
            "a constant imported elsewhere: TAX_RATE 0.20 -> 0.25 (cart.py did "
            "`from shop.pricing import TAX_RATE`)",
            lambda: replace(pricing, "TAX_RATE = 0.20", "TAX_RATE = 0.25"),
        ),
        (
            "a typo: a syntax error in shop/cart.py (the program keeps running)",
            lambda: replace(cart, "def with_tax(amount):", "def with_tax(amount:"),
        ),
        (
            "the fix, with a rounding change",
            lambda: replace(
                cart,
                "def with_tax(amount:\n    return amount * (1 + TAX_RATE)",
                "def with_tax(amount):\n    return round(amount * (1 + TAX_RATE), 1)",
            ),
        ),
    ]
    try:
        time.sleep(2.5)
        for what, edit in edits:
            if program.poll() is not None:
                break
            say(what)
            edit()
            time.sleep(1.6)
        code = program.wait(timeout=60)
    finally:
        if program.poll() is None:
            program.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ndemo finished (program exit code {code})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
