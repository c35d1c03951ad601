"""The package's shape is a specification too: rooms by role, no import cycles, no borrowed private names,
every module listed where a reader looks for it, and tests that mirror the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "serlib"


def modules() -> dict[str, Path]:
    """Every module of serlib by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports() -> dict[str, dict[str, set[str]]]:
    """module -> imported serlib module -> names taken from it (imports inside functions count)."""
    known = modules()
    edges: dict[str, dict[str, set[str]]] = {}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: relative import (serlib imports are absolute)"
                if not (node.module or "").startswith("serlib"):
                    continue
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    target = target if target in known else node.module
                    if target != name:
                        edges.setdefault(name, {}).setdefault(target, set()).add(alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known and alias.name != name:
                        edges.setdefault(name, {}).setdefault(alias.name, set()).add("*")
    return edges


def test_serlib_has_no_import_cycle_counting_imports_inside_functions():
    edges = imports()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for target in edges.get(node, {}):
            if state.get(target) == 1:
                cycle.extend(path[path.index(target):] + [target] if target in path else [node, target])
                return True
            if state.get(target) is None and visit(target, path + [target]):
                return True
        state[node] = 2
        return False

    for module in modules():
        if state.get(module) is None and visit(module, [module]):
            break
    assert not cycle, " -> ".join(cycle)


def test_no_module_takes_another_modules_private_name():
    private = [f"{module} takes {name} from {target}" for module, targets in imports().items()
               for target, names in targets.items() for name in names
               if name.startswith("_") and name != "__version__"]
    assert private == []


def test_the_top_holds_at_most_eight_modules_and_the_rest_live_in_at_least_five_subpackages():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert len(top) <= 8, top
    assert len(subpackages) >= 5, subpackages


def listed_modules(text: str) -> set[str]:
    return set(re.findall(r":mod:`(serlib[\w.]*)`", text))


def test_every_module_is_listed_in_its_packages_docstring():
    known = modules()
    unlisted = []
    for name, path in known.items():
        if name == "serlib" or path.name == "__init__.py":
            continue
        parent = name.rsplit(".", 1)[0]
        doc = ast.get_docstring(ast.parse(known[parent].read_text())) or ""
        if name not in listed_modules(doc):
            unlisted.append(f"{name} (in {parent})")
    assert unlisted == []


def test_the_readme_layout_lists_every_module_and_subpackage():
    text = (REPO / "README.md").read_text()
    layout = text[text.index("## Repository layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    rows = [line for line in layout.splitlines() if line.strip() and not line.startswith("#")]
    entries: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for row in rows:
        match = re.match(r"(\s*)(\S+)", row)
        if not match or match.group(2).startswith("```"):
            continue
        depth, entry = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        path = "".join(name for _, name in stack) + entry
        entries[path] = row
        if entry.endswith("/"):
            stack.append((depth, entry))
    missing = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(REPO).as_posix()
        if path.name == "__init__.py":
            relative = relative[: -len("__init__.py")]
        if relative not in entries:
            missing.append(relative)
    assert missing == []


@pytest.mark.parametrize("subpackage", sorted(p.parent.relative_to(PACKAGE).as_posix()
                                              for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE))
def test_tests_mirror_the_package(subpackage):
    assert (REPO / "tests" / subpackage).is_dir(), f"tests/{subpackage}/ is missing"
    assert list((REPO / "tests" / subpackage).glob("test_*.py")), f"tests/{subpackage}/ holds no test"
