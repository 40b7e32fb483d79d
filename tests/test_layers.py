"""The layer rules: the README states the ones import-linter enforces; the installed package
layout that static tools see; and no import circle anywhere in it.

`.ci/pkgtree` lays the package-dir mapping out as symlinks (mypy and import-linter read that
tree); these tests build it in a temporary folder and check it against what the installed
package imports, then look for import circles between single modules with grimp (the
import-linter contracts in pyproject.toml check layers and sibling packages; a package's
``__init__`` importing a module that imports the package back is only caught here).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter whose current directory is the symlink tree, so that
# "rmapscope" resolves there and not to the editable install of the source tree.
_GRAPH = """
import json, grimp
g = grimp.build_graph("rmapscope", cache_dir=None)
print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))
"""


def _pkgtree(out: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / ".ci" / "pkgtree"), str(out)], check=True)
    return out


def _installed_modules() -> set[str]:
    """Every module of the installed package, as the import system finds them."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    found = set(packages)
    for name in packages:
        pkg = importlib.import_module(name)
        found |= {f"{name}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg}
    return found


def _tree_modules(tree: Path) -> set[str]:
    out = set()
    for folder, dirs, files in os.walk(tree / "rmapscope", followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            # a compiled module (rmapscope._native) is in the tree as its stub
            if name.endswith((".py", ".pyi")):
                parts = (Path(folder) / name).relative_to(tree).with_suffix("").parts
                out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, []))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _contract_layers() -> list[set[str]]:
    """The layers of the import-linter layers contract, top first, as full module names."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in tool["contracts"] if c["type"] == "layers"]
    prefix = "".join(f"{c}." for c in contract.get("containers", []))
    return [
        {prefix + m.strip().strip("()") for m in re.split(r"[:|]", layer)}
        for layer in contract["layers"]
    ]


def _readme_layers() -> list[set[str]]:
    """The numbered layer list of the README's "Where things live" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rules = section.split("Layer rules.", 1)[1]
    items = re.findall(r"^\d+\. (.+(?:\n {3}.+)*)", rules, flags=re.M)
    return [set(re.findall(r"`(rmapscope[\w.]*)`", item)) for item in items]


def test_readme_states_the_layer_rules_that_lint_imports_enforces():
    assert _readme_layers() == _contract_layers()


def test_cycle_finder_finds_a_circle_and_only_circles():
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": []}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_pkgtree_holds_every_installed_module(tmp_path):
    tree = _pkgtree(tmp_path / "pkgtree")
    assert _tree_modules(tree) == _installed_modules()
    # a sub-package is a link to its own folder, the glue package a folder of links
    assert (tree / "rmapscope" / "ingest").resolve() == ROOT / "ingest"
    assert (tree / "rmapscope" / "__init__.py").resolve() == ROOT / "rmapscope" / "__init__.py"


def test_no_import_circle_between_modules(tmp_path):
    pytest.importorskip("grimp")
    tree = _pkgtree(tmp_path / "pkgtree")
    out = subprocess.run(
        [sys.executable, "-c", _GRAPH], cwd=tree, capture_output=True, text=True, check=True
    )
    graph = json.loads(out.stdout)
    assert "rmapscope.ingest.tracedat" in graph  # the mapped sub-packages were seen
    assert _cycles(graph) == []
