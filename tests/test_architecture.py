"""The architecture's rules, checked on the source (docs/architecture.md):

* no import cycle between fxanalog's modules, counting every import
  (function-local ones too) and the package ``__init__`` that importing a
  submodule runs;
* no module writes another object's private attributes, imports another
  module's private names, or reaches into them with ``setattr``/``getattr``.

The walker is tested on small synthetic sources first, so a rule that
cannot fire cannot pass silently.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Source folders and the package each one is installed as (pyproject's package-dir).
PACKAGES = {"fxanalog": "fxanalog", "passes": "fxanalog.passes", "triton_kernels": "fxanalog.triton_kernels"}


def source_modules() -> dict[str, str]:
    """Module name -> path of every Python file of the installed packages."""
    out = {}
    for folder, package in PACKAGES.items():
        base = os.path.join(ROOT, folder)
        for dirpath, _, files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            parts = [] if rel == "." else rel.split(os.sep)
            for f in files:
                if not f.endswith(".py"):
                    continue
                name = ".".join([package] + parts + ([] if f == "__init__.py" else [f[:-3]]))
                out[name] = os.path.join(dirpath, f)
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (not run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for sub in node.body:
                for n in ast.walk(sub):
                    if hasattr(n, "lineno"):
                        lines.add(n.lineno)
    return lines


def imports_of(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The fxanalog modules that importing ``name`` (whose text is
    ``source``) imports, at any depth of its code, with the packages whose
    ``__init__`` runs first. The module's own ancestor packages are left
    out (their ``__init__`` has run before the module's code), and so is the
    root package ``fxanalog``, which imports everything public."""
    tree = ast.parse(source)
    skip = _type_checking_lines(tree)
    package = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            targets.add(mod)
            targets.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import submodule`
    ancestors = set()
    a = name.rpartition(".")[0]
    while a:
        ancestors.add(a)
        a = a.rpartition(".")[0]
    out = set()
    for t in targets:
        while t and t not in known:
            t = t.rpartition(".")[0]
        while t and t != "fxanalog":
            if t in known and t != name and t not in ancestors:
                out.add(t)
            t = t.rpartition(".")[0]
    return out


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            graph[name] = imports_of(name, f.read(), path.endswith("__init__.py"), known)
    return graph


def find_cycle(graph: dict[str, set[str]]):
    """One cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def private_reaches(source: str) -> list[str]:
    """Places where code touches another object's or module's private names:
    ``obj._x = ...`` (also augmented, ``del``) with ``obj`` not ``self``/
    ``cls``; ``from fxanalog.m import _x`` of a name that is not a module;
    ``setattr/getattr/delattr(obj, "_x", ...)`` with ``obj`` not ``self``."""
    tree = ast.parse(source)
    found = []

    def owner_is_self(node) -> bool:
        return isinstance(node, ast.Name) and node.id in ("self", "cls")

    def private(attr: str) -> bool:  # _x, not __dunder__ nor an enum's _sunder_
        return attr.startswith("_") and not attr.endswith("_")

    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute) and private(sub.attr) and not owner_is_self(sub.value):
                    found.append(f"line {sub.lineno}: writes {ast.unparse(sub)}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fxanalog"):
            for a in node.names:
                if private(a.name) and a.name not in PRIVATE_MODULES:
                    found.append(f"line {node.lineno}: imports {node.module}.{a.name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "setattr", "getattr", "delattr") and len(node.args) >= 2:
            obj, attr = node.args[0], node.args[1]
            if isinstance(attr, ast.Constant) and isinstance(attr.value, str) and private(attr.value) \
                    and not owner_is_self(obj):
                found.append(f"line {node.lineno}: {node.func.id}({ast.unparse(obj)}, {attr.value!r})")
    return found


# Private *modules* (files whose name starts with _) may be imported as modules.
PRIVATE_MODULES = {"_rng", "_normal", "_pulsed", "_periphery", "_docgen"}


# ----------------------------------------------------------------------------
# The walkers themselves


def test_cycle_finder_sees_function_local_imports_and_package_inits():
    known = {"fxanalog.a", "fxanalog.b", "fxanalog.p", "fxanalog.p.c", "fxanalog.p.d"}
    a = "def f():\n    from fxanalog.b import x\n"  # function-local
    b = "from fxanalog.p.c import y\n"  # runs fxanalog.p's __init__ first
    p = "from fxanalog import a\n"
    graph = {
        "fxanalog.a": imports_of("fxanalog.a", a, False, known),
        "fxanalog.b": imports_of("fxanalog.b", b, False, known),
        "fxanalog.p": imports_of("fxanalog.p", p, True, known),
        "fxanalog.p.c": set(),
    }
    assert graph["fxanalog.b"] == {"fxanalog.p", "fxanalog.p.c"}
    assert find_cycle(graph) == ["fxanalog.a", "fxanalog.b", "fxanalog.p", "fxanalog.a"]
    graph["fxanalog.p"] = set()
    assert find_cycle(graph) is None
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fxanalog.b import x\n"
    assert imports_of("fxanalog.a", guarded, False, known) == set()
    relative = "from .c import y\nfrom . import c\n"
    assert imports_of("fxanalog.p", relative, True, known) == {"fxanalog.p.c"}
    sibling = "from fxanalog.p.c import y\n"  # a submodule's own package is not an edge
    assert imports_of("fxanalog.p.d", sibling, False, known) == {"fxanalog.p.c"}


def test_private_reach_finder():
    src = (
        "self._ok = 1\n"
        "layer._tiles_cache = None\n"
        "x.tile._n += 1\n"
        "from fxanalog.config import _REGISTRY\n"
        "from fxanalog import _rng\n"
        "setattr(layer, '_x', 1)\n"
        "getattr(self, '_y')\n"
        "obj.__class__ = int\n"
        "obj._value_ = 3\n"
    )
    found = private_reaches(src)
    assert [f.split(":")[0] for f in found] == ["line 2", "line 3", "line 4", "line 6"]


# ----------------------------------------------------------------------------
# The source


def test_no_import_cycle_between_fxanalog_modules():
    graph = import_graph(source_modules())
    assert len(graph) > 30  # the walk found the source
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(source_modules()))
def test_no_module_touches_private_names_of_another(module):
    with open(source_modules()[module], encoding="utf-8") as f:
        found = private_reaches(f.read())
    assert not found, f"{module}: " + "; ".join(found)
