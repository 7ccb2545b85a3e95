"""The live demo (``make demo``) is run as a user runs it, and what it printed is checked: the
program's ticks, the reloader's lines and the demo's own verdict."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def test_the_live_demo_shows_every_edit_and_keeps_the_program_and_its_cart():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "live_demo.py")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "checked: every tick once and in order, one cart, all five edits seen in order" in out
    ticks = re.findall(r"^tick +(\d+):", out, re.M)
    assert ticks == [str(n) for n in range(1, 31)], ticks
    assert out.count("a new cart is opened") == 1
    for line in (
        "[mighty_patcher] reloaded shop.pricing: patched unit_price",
        "[mighty_patcher] reloaded shop.cart: patched Cart.describe",
        "[mighty_patcher] reloaded shop.pricing: re-ran TAX_RATE = 0.25",
        "[mighty_patcher] reloaded shop.cart: rebound TAX_RATE",
        "[mighty_patcher] reload of shop.cart failed; it keeps running its previous version",
        "[mighty_patcher] reloaded shop.cart: patched with_tax",
        "the program ran to its end without a restart",
    ):
        assert line in out, f"missing: {line}\n{out}"


def test_the_demo_check_catches_a_loop_run_twice_and_a_cart_made_again():
    sys.path.insert(0, str(ROOT / "demo"))
    try:
        from live_demo import Edit, check
    finally:
        sys.path.remove(str(ROOT / "demo"))
    edits = [Edit("one", lambda: None, r"^tick +\d+: new$")]
    good = [
        "a new cart is opened",
        *[f"tick {n:2}: old" for n in range(1, 11)],
        "\n  editor> one",
        *[f"tick {n:2}: new" for n in range(11, 31)],
        "the program ran to its end without a restart",
    ]
    assert check(good, edits, 0) == []
    twice = [*good[:12], "a new cart is opened", "tick  1: new", *good[12:]]
    problems = check(twice, edits, 0)
    assert any("each once and in order" in p for p in problems)
    assert any("opened 2 times" in p for p in problems)
    unseen = [line.replace(": new", ": old") for line in good]
    assert any("did not show" in p for p in check(unseen, edits, 0))
    assert any("exited with 1" in p for p in check(good, edits, 1))
