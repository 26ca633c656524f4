#!/usr/bin/env python3
"""Fails when two modules of a crate use each other, directly or around a circle.

A module is a file under src/ (`a/mod.rs` is `a`, `a/b.rs` is `a::b`). A module uses another
when its code names a path into it: `crate::x::y`, `super::y`, `self::y`, or `child::y` for a
module of its own. The crate root is the facade that re-exports, and is left out, as are test
modules. Usage: module_cycles.py CRATE_SRC_DIR...
"""
import re
import sys
from pathlib import Path


def module_of(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    # Drop `#[cfg(test)] mod ... { ... }` blocks (and `#[cfg(all(test, ...))]`).
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\((?:all\()?test[^\]]*\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j


def uses(module: tuple, text: str, modules: set) -> set:
    text = re.sub(r"//[^\n]*", "", strip_tests(text))
    found = set()
    # Expand `use a::{b, c::d}` groups one level so that each path is seen.
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)+)(?:::\{([^}]*)\})?", text):
        root, rest, group = m.group(1), m.group(2), m.group(3)
        base = list(module) if root != "crate" else []
        if root == "super":
            base = base[:-1]
        path = base + rest.strip(":").split("::")
        tails = [[]] + ([[p.strip().split("::")[0]] for p in group.split(",") if p.strip()] if group else [])
        for tail in tails:
            full = path + [t for t in tail if t and t != "self"]
            # The longest prefix that is a module.
            for n in range(len(full), 0, -1):
                target = tuple(full[:n])
                if target in modules:
                    if target != module:
                        found.add(target)
                    break
    # Paths into a child module, named relative to this one (`layout::Layout`).
    children = {m[-1] for m in modules if len(m) == len(module) + 1 and m[: len(module)] == module}
    for child in children:
        if re.search(r"(?<![:\w])" + re.escape(child) + r"::", text):
            found.add(module + (child,))
    return found


def cycles(src: Path) -> list:
    files = [f for f in src.rglob("*.rs") if "tests" not in f.relative_to(src).parts[:-1] or True]
    modules = {module_of(src, f): f for f in files if f.name != "tests.rs" and "tests" not in f.parts[len(src.parts):-1]}
    graph = {m: uses(m, f.read_text(), set(modules)) for m, f in modules.items() if m}
    # A module's dependency on an ancestor's item counts for the ancestor.
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main() -> int:
    bad = False
    for arg in sys.argv[1:]:
        for cycle in cycles(Path(arg)):
            bad = True
            print(f"{arg}: module cycle: " + " -> ".join("::".join(m) or "crate" for m in cycle))
    if not bad:
        print(f"no module cycles in {len(sys.argv) - 1} crates")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
