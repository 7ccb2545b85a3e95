"""The import graph of the native core (``src/``), file by file, printed as a ladder; fails on a
cycle or on a broken layout rule.

    python tools/import_graph.py [--src DIR]

An edge ``a -> b`` means a file uses an item of another: a ``use`` of ``crate::``,
``super::`` or ``self::`` paths, such a path written inline, or a path through a child module
the file declares (``mod watchers;`` then ``watchers::check``). Declaring a module is not a
use of it. Comments and string literals are ignored.

The ladder puts each file on the rung above the highest rung it uses: rung 0 uses nothing of
ours. Besides having no cycle, the layout keeps these rules:

- ``errors.rs`` and ``state.rs`` use nothing of ours (the bottom, and the plain state);
- ``module.rs`` (the composition root) is used by ``lib.rs`` only, and ``lib.rs`` by nobody.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEAVES = ("errors.rs", "state.rs")
TOP = "module.rs"
ENTRY = "lib.rs"

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(source: str) -> str:
    """``source`` without comments, string literals and character literals."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == '"' or (c in "bcr" and source.startswith('"', i + 1)):
            i = source.index('"', i) + 1
            while i < n and source[i] != '"':
                i += 2 if source[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", source[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", source[i:]).group(0))  # type: ignore[union-attr]
        else:
            out.append(c)
            i += 1
    return "".join(out)


def inline_modules_as_self(code: str) -> str:
    """``code`` with ``super::`` inside an inline ``mod name { ... }`` block (tests, a
    version-dependent part) written ``self::``: there it names the file's own module."""
    out, i = [], 0
    for match in re.finditer(rf"\bmod\s+{IDENT}\s*\{{", code):
        if match.start() < i:
            continue
        depth, j = 1, match.end()
        while j < len(code) and depth:
            depth += code[j] == "{"
            depth -= code[j] == "}"
            j += 1
        out.append(code[i : match.end()])
        out.append(re.sub(r"(?<![\w:])super::", "self::", code[match.end() : j]))
        i = j
    out.append(code[i:])
    return "".join(out)


def expand_use(tree: str) -> Iterable[list[str]]:
    """The paths a ``use`` tree names: ``a::{b, c::{d, e}}`` gives a::b, a::c::d, a::c::e."""

    def split_top(text: str) -> list[str]:
        parts, depth, start = [], 0, 0
        for k, ch in enumerate(text):
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                parts.append(text[start:k])
                start = k + 1
        parts.append(text[start:])
        return [p for p in parts if p]

    def walk(prefix: list[str], text: str) -> Iterable[list[str]]:
        brace = text.find("{")
        if brace < 0:
            yield prefix + [s for s in text.split("::") if s]
            return
        head = [s for s in text[:brace].split("::") if s]
        inner = text[brace + 1 : text.rindex("}")]
        for part in split_top(inner):
            yield from walk(prefix + head, part)

    # A rename (`x as y`) does not change what is used; whitespace means nothing.
    yield from walk([], re.sub(r"\s+", "", re.sub(r"(\w)\s+as\s+\w+", r"\1", tree)))


class Crate:
    def __init__(self, src: Path):
        self.src = src
        self.files = sorted(p for p in src.rglob("*.rs"))
        self.by_module: dict[tuple[str, ...], Path] = {}
        for path in self.files:
            self.by_module[self.module_of(path)] = path

    def module_of(self, path: Path) -> tuple[str, ...]:
        parts = list(path.relative_to(self.src).with_suffix("").parts)
        if parts == ["lib"]:
            return ()
        if parts[-1] == "mod":
            parts.pop()
        return tuple(parts)

    def resolve(self, segments: list[str]) -> Path | None:
        """The deepest file a path from the crate root reaches."""
        for k in range(len(segments), 0, -1):
            found = self.by_module.get(tuple(segments[:k]))
            if found is not None:
                return found
        return None

    def edges(self, path: Path) -> set[Path]:
        module = list(self.module_of(path))
        # A non-`mod.rs` file's `super` is its parent directory's module; `self` is itself.
        code = inline_modules_as_self(strip(path.read_text()))
        children = set(re.findall(rf"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*;", code, re.M))
        paths: list[list[str]] = []
        for use in re.findall(r"\buse\s+([^;]+);", code):
            paths.extend(expand_use(use))
        paths += [
            p.split("::")
            for p in re.findall(rf"(?<![\w:])((?:crate|super|self)(?:::{IDENT})+)", code)
        ]
        # Names a `use` binds to a module (`use crate::{patch, state::{self, State}}` binds
        # `patch` and `state`), so that `patch::function::x` reaches patch/function.rs.
        aliases: dict[str, list[str]] = {child: [*module, child] for child in children}
        for segments in list(paths):
            if segments and segments[-1] == "self":
                segments = segments[:-1]
            absolute = self.absolute(module, segments, set())
            if absolute and tuple(absolute) in self.by_module:
                aliases[absolute[-1]] = absolute
        if aliases:
            pattern = rf"(?<![\w:])((?:{'|'.join(sorted(aliases))})(?:::{IDENT})+)"
            for found in re.findall(pattern, code):
                head, *rest = found.split("::")
                paths.append(["crate", *aliases[head], *rest])
        targets = set()
        for segments in paths:
            absolute = self.absolute(module, segments, children)
            if absolute is None:
                continue
            target = self.resolve(absolute)
            if target is not None and target != path:
                targets.add(target)
        return targets

    @staticmethod
    def absolute(module: list[str], segments: list[str], children: set[str]) -> list[str] | None:
        if not segments:
            return None
        head, rest = segments[0], segments[1:]
        if head == "crate":
            return rest
        if head == "self":
            return module + rest
        if head == "super":
            base = module[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
            return base + rest
        if head in children:
            return [*module, *segments]
        return None


def find_cycle(graph: dict[Path, set[Path]]) -> list[Path] | None:
    """A cycle in ``graph`` (its nodes in order, the first repeated at the end), or None."""
    state: dict[Path, int] = {}
    stack: list[Path] = []

    def visit(node: Path) -> list[Path] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def rungs(graph: dict[Path, set[Path]]) -> dict[Path, int]:
    memo: dict[Path, int] = {}

    def rung(node: Path) -> int:
        if node not in memo:
            memo[node] = 1 + max((rung(d) for d in graph[node]), default=-1)
        return memo[node]

    for node in graph:
        rung(node)
    return memo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    args = parser.parse_args()
    crate = Crate(args.src)
    graph = {path: crate.edges(path) for path in crate.files}
    name = {path: str(path.relative_to(args.src)) for path in crate.files}

    cycle = find_cycle(graph)
    if cycle:
        print("cycle: " + " -> ".join(name[p] for p in cycle))
        return 1

    levels = rungs(graph)
    width = max(len(n) for n in name.values())
    for level in range(max(levels.values()) + 1):
        print(f"rung {level}")
        for path in sorted((p for p in graph if levels[p] == level), key=lambda p: name[p]):
            uses = ", ".join(sorted(name[d] for d in graph[path])) or "-"
            print(f"  {name[path]:<{width}}  uses {uses}")

    problems = []
    users: dict[Path, set[Path]] = {p: set() for p in graph}
    for path, deps in graph.items():
        for dep in deps:
            users[dep].add(path)
    by_name = {n: p for p, n in name.items()}
    for leaf in LEAVES:
        if leaf in by_name and graph[by_name[leaf]]:
            uses = ", ".join(sorted(name[d] for d in graph[by_name[leaf]]))
            problems.append(f"{leaf} must use nothing of ours, uses {uses}")
    if TOP in by_name:
        others = {name[u] for u in users[by_name[TOP]]} - {ENTRY}
        if others:
            problems.append(f"{TOP} must be used by {ENTRY} only, is used by {sorted(others)}")
    if ENTRY in by_name and users[by_name[ENTRY]]:
        problems.append(f"{ENTRY} is used by {sorted(name[u] for u in users[by_name[ENTRY]])}")
    edges = sum(len(d) for d in graph.values())
    print(f"\n{len(graph)} files, {edges} edges, {max(levels.values()) + 1} rungs, no cycle")
    for problem in problems:
        print(f"layout rule broken: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
