"""The differential fuzzer's short pass: 30 seeds of 10 edits, each saved under the real
watcher into a running program and compared with a fresh interpreter importing the same
files (see tests/fuzz). ``make fuzz N=10000`` runs the long one."""

from __future__ import annotations

import os

from fuzz.cli import run, summary
from fuzz.generator import Editor, initial
from fuzz.minimise import ddmin, hunks, patch, split
from fuzz.model import problems
from fuzz.runner import compare

#: The main suite runs 30 seeds; the build matrix's rows fewer (MIGHTY_PATCHER_FUZZ_SEEDS).
SEEDS, EDITS = int(os.environ.get("MIGHTY_PATCHER_FUZZ_SEEDS", "30")), 10


def test_seeds_of_ten_edits_each_match_a_restart():
    results = run(list(range(SEEDS)), EDITS, jobs=2)
    failed = [r for r in results if r.failure is not None]
    assert not failed, "\n" + summary(results, 0)
    checked = sum(r.edits for r in results)
    excluded = sum(r.excluded + r.by_design for r in results)
    assert checked + excluded == SEEDS * EDITS
    # An edit that is not compared with a restart (it needs one, or leaves a statement unrun
    # by design) checks only that nothing failed, so a generator drifting into mostly such
    # edits would check next to nothing while still passing.
    assert excluded <= SEEDS * EDITS // 5, (
        f"{excluded} of {SEEDS * EDITS} edits were not compared (needing a restart, or "
        f"statements left unrun by design; at most 20% may be); only {checked} were compared"
    )
    # The program's state made at import (an object, a registration) was checked.
    assert all("S " in key for key in ()) or sum(r.probes for r in results) > 0


def test_a_method_bound_to_a_member_no_longer_first_is_not_compared_with_another_one():
    # (seed 9026: E54 lost its first member RED; a method bound to RED before the edit kept
    # it, as references do, while a restart's was bound to BLUE: an oracle fault)
    (result,) = run([9026], EDITS, jobs=1)
    assert result.failure is None, "\n" + summary([result], 0)


def test_state_made_at_import_is_compared():
    from fuzz.probe import _state

    registry, entry = [], object()
    registry.append(entry)
    assert _state((registry, (entry,)), registry) == "REG kept, 1 entries"
    assert _state((registry, (entry,)), [entry]) == "REG made again"
    registry.append(entry)
    assert _state((registry, (entry,)), registry) == "REG kept, 2 entries, entries changed"
    assert _state(entry, object()) == "MADE AGAIN"


def test_generated_edit_sequences_are_reproducible_and_always_import():
    import random

    for seed in range(5):
        runs = []
        for _ in range(2):
            package, editor = initial(seed, "fz"), Editor(random.Random(seed))
            texts = [package.render()]
            for _ in range(20):
                package, _ops = editor.edit(package)
                assert problems(package) == []
                texts.append(package.render())
            runs.append(texts)
        assert runs[0] == runs[1]


def test_references_to_deleted_or_added_definitions_are_not_compared():
    live = {"a.f(1)": "1", "H a.gone is current": "True", "a: names": "['f']"}
    fresh = {"a.f(1)": "2", "H a.new is current": "True", "a: names": "['f', 'g']"}
    assert compare(live, fresh) == [
        ("a.f(1)", "1", "2"),
        ("a: names", "['f']", "['f', 'g']"),
    ]


def test_the_minimiser_keeps_only_the_lines_that_fail():
    before = {"base": "A = 1\nB = 2\nC = 3\n", "mid": "X = 1\n", "top": ""}
    after = {"base": "A = 10\nB = 2\nC = 30\nD = 4\n", "mid": "X = 2\n", "top": "Y = 1\n"}

    def fails(chosen):
        return "C = 30" in patch(before, chosen)["base"]

    chosen = ddmin(split(ddmin(hunks(before, after), fails)), fails)
    assert patch(before, chosen) == {"base": "A = 1\nB = 2\nC = 30\n", "mid": "X = 1\n", "top": ""}
