"""The package's layout: imports run one way down the stages, names shadow nothing, modules stay small.

The import graph is drawn from the source with `ast` (every import, also those
inside functions and under ``if TYPE_CHECKING``), between *units*: a subpackage
of clickguard, or the stage a top-level module belongs to. The checker is a
function of a set of modules, so it is also tried on modules made to fail.
"""

from __future__ import annotations

import ast
import importlib.metadata
import itertools
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import clickguard
from tests.harness import REPO

PACKAGE = REPO / "clickguard"

# The stages, lowest first: a unit may import from itself and from the units before it, never after.
STAGES = ("foundation", "policy", "intel", "decision", "inspection", "mail", "audit", "web", "proxy", "cli")
# The stage of each module at the package's top level; subpackages are their own stage.
TOP_LEVEL = {
    "__init__": "foundation",
    "errors": "foundation",
    "urls": "foundation",
    "tokens": "foundation",
    "reasons": "foundation",
    "vocab": "foundation",
    "passhash": "foundation",
    "shipped": "foundation",
    "files": "foundation",
    "cluster": "foundation",
    "cli": "cli",
    "addon": "cli",  # the shim for `mitmdump -s clickguard/addon.py`
}
# Where mitmproxy may be imported: the proxy's glue and the entry points that start it.
MITMPROXY_ALLOWED = ("clickguard.proxy", "clickguard.cli", "clickguard.addon")
MAX_LINES = 1000
MAX_TOP_LEVEL_MODULES = 12


class Module(NamedTuple):
    """One module's source, as the import graph needs it."""

    name: str  # dotted: clickguard.policy.model; a package is named without its __init__
    path: str  # shown in messages
    source: str
    is_package: bool


class Import(NamedTuple):
    """One module named by an import statement."""

    module: Module  # where the import is written
    line: int
    target: str  # the dotted name imported


class Arrow(NamedTuple):
    """An import from one unit into another."""

    source: str  # unit
    target: str  # unit
    where: Import

    def __str__(self) -> str:
        return f"{self.where.module.path}:{self.where.line} imports {self.where.target}"


def read_modules(root: Path) -> list[Module]:
    """Every module of the package in folder root (named clickguard.…), symlinked folders left out."""
    modules = []
    for folder, dirs, files in os.walk(root):  # os.walk does not follow links (clickguard/data)
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for file in sorted(f for f in files if f.endswith(".py")):
            path = Path(folder, file)
            parts = ("clickguard", *path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            modules.append(Module(".".join(parts[:-1] if is_package else parts),
                                  str(path.relative_to(root.parent)), path.read_text(), is_package))
    return modules


def imports(module: Module) -> Iterator[Import]:
    """Every module an import statement in this module names, wherever the statement stands."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(module.source, module.path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level > 1:
                base = base[:-(node.level - 1)]
            start = ".".join(base) if node.level else ""
            origin = ".".join(p for p in (start, node.module or "") if p)
            for alias in node.names:
                # `from clickguard.web import pages` names the module clickguard.web.pages.
                yield Import(module, node.lineno, f"{origin}.{alias.name}")


def unit_of(name: str, packages: set[str]) -> str:
    """The unit of a clickguard module: its subpackage, or the stage of a top-level module."""
    parts = name.split(".")
    if len(parts) == 1:
        return TOP_LEVEL["__init__"]
    if f"clickguard.{parts[1]}" in packages:
        return parts[1]
    # A name no stage claims is a unit of its own, which the stage order then reports.
    return TOP_LEVEL.get(parts[1], parts[1])


def arrows(modules: Iterable[Module]) -> list[Arrow]:
    """Every import of a clickguard module from another unit, once per module, line and target."""
    modules = list(modules)
    names = {m.name for m in modules}
    packages = {m.name for m in modules if m.is_package}
    out: dict[tuple[str, int, str], Arrow] = {}
    for module in modules:
        source = unit_of(module.name, packages)
        for found in imports(module):
            target = found.target
            while target not in names and "." in target:  # `from m import name`: the module m
                target = target.rpartition(".")[0]
            if target in names and (unit := unit_of(target, packages)) != source:
                out.setdefault((module.path, found.line, target),
                               Arrow(source, unit, found._replace(target=target)))
    return sorted(out.values(), key=lambda a: (a.where.module.path, a.where.line, a.where.target))


def _components(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of a graph of units (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            out.append(sorted([*component, node]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _path(graph: Mapping[str, set[str]], start: str, goal: str) -> list[str]:
    """A shortest path of units from start to goal (breadth first); [] when there is none."""
    came_from: dict[str, str | None] = {start: None}
    queue = [start]
    for node in queue:
        if node == goal:
            path: list[str] = []
            step: str | None = node
            while step is not None:
                path.append(step)
                step = came_from[step]
            return path[::-1]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return []


def cycles(found: Iterable[Arrow]) -> list[str]:
    """One message per group of units that import each other: a cycle, and each arrow at its line."""
    found = list(found)
    graph: dict[str, set[str]] = {}
    for arrow in found:
        graph.setdefault(arrow.source, set()).add(arrow.target)
        graph.setdefault(arrow.target, set())
    messages = []
    for component in _components(graph):
        if len(component) < 2:
            continue
        first = component[0]
        # A cycle through the component's first unit: to a unit it imports, and back from there.
        nxt = min(u for u in graph[first] if u in component)
        cycle = [first, *_path(graph, nxt, first)]
        steps = list(itertools.pairwise(cycle))
        lines = [f"import cycle {' -> '.join(cycle)}:"]
        lines += [f"  {a.source} -> {a.target}: {a}" for step in steps for a in found
                  if (a.source, a.target) == step]
        # The component's other arrows are each on some cycle too: breaking one cycle may leave another.
        others = sorted({(a.source, a.target) for a in found if a.source in component
                         and a.target in component} - set(steps))
        if others:
            lines.append(f"  and in the same tangle: {', '.join(f'{s} -> {t}' for s, t in others)}")
        messages.append("\n".join(lines))
    return messages


def upward(found: Iterable[Arrow]) -> list[str]:
    """One message per import that goes up the stage order (or into a unit that has no stage)."""
    rank = {stage: i for i, stage in enumerate(STAGES)}
    out = []
    for a in found:
        if a.source not in rank or a.target not in rank:
            out.append(f"{a}: unit {a.source if a.source not in rank else a.target!r} has no stage in STAGES")
        elif rank[a.target] > rank[a.source]:
            out.append(f"{a}: {a.source} imports {a.target}, a later stage")
    return out


# The real package.

MODULES = read_modules(PACKAGE)
CORE = [m for m in MODULES if not any(m.name == p or m.name.startswith(f"{p}.") for p in MITMPROXY_ALLOWED)]


def test_the_package_is_read() -> None:
    names = {m.name for m in MODULES}
    assert {"clickguard", "clickguard.reasons", "clickguard.policy.model", "clickguard.proxy.addon",
            "clickguard.cli"} <= names
    assert {m.name for m in CORE} >= {"clickguard.reasons", "clickguard.web.pages"}
    assert not {"clickguard.proxy.addon", "clickguard.cli", "clickguard.addon"} & {m.name for m in CORE}


def test_no_import_cycle_between_subpackages() -> None:
    problems = cycles(arrows(MODULES))
    assert not problems, "\n".join(problems)


def test_imports_go_down_the_stages() -> None:
    problems = upward(arrows(MODULES))
    assert not problems, "\n".join(problems)


def test_every_top_level_module_has_a_stage() -> None:
    top = {Path(m.path).stem for m in MODULES if m.name.count(".") <= 1 and not m.is_package}
    assert top - TOP_LEVEL.keys() == set(), "declare the stage of new top-level modules in TOP_LEVEL"
    foundation = {name for name, stage in TOP_LEVEL.items() if stage == "foundation"} - {"__init__"}
    assert foundation == {"errors", "urls", "tokens", "reasons", "vocab", "passhash", "shipped", "files",
                          "cluster"}


# The checker itself, on modules made to fail.

def _module(name: str, source: str = "", *, package: bool = False) -> Module:
    return Module(name, name.replace(".", "/") + ("/__init__.py" if package else ".py"),
                  textwrap.dedent(source), package)


SYNTHETIC = [
    _module("clickguard", package=True),
    _module("clickguard.errors"),
    _module("clickguard.policy", package=True),
    _module("clickguard.policy.model", """\
        from clickguard.errors import PolicyError


        def late():
            from clickguard.web import pages
        """),
    _module("clickguard.web", package=True),
    _module("clickguard.web.pages", """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from ..policy.model import Policy
        """),
]


def test_checker_finds_a_cycle_through_function_and_type_checking_imports() -> None:
    found = arrows(SYNTHETIC)
    assert sorted(map(str, found)) == [
        "clickguard/policy/model.py:1 imports clickguard.errors",
        "clickguard/policy/model.py:5 imports clickguard.web.pages",
        "clickguard/web/pages.py:4 imports clickguard.policy.model",
    ]
    assert cycles(found) == [
        "import cycle policy -> web -> policy:\n"
        "  policy -> web: clickguard/policy/model.py:5 imports clickguard.web.pages\n"
        "  web -> policy: clickguard/web/pages.py:4 imports clickguard.policy.model"
    ]
    assert upward(found) == [
        "clickguard/policy/model.py:5 imports clickguard.web.pages: policy imports web, a later stage"]


def test_checker_finds_a_foundation_module_importing_a_subpackage() -> None:
    found = arrows([*SYNTHETIC[:2], SYNTHETIC[2], _module("clickguard.policy.model"),
                    _module("clickguard.urls", "import clickguard.policy.model\n")])
    assert cycles(found) == []
    assert upward(found) == ["clickguard/urls.py:1 imports clickguard.policy.model: "
                             "foundation imports policy, a later stage"]


def test_checker_names_a_unit_without_a_stage() -> None:
    found = arrows([_module("clickguard", package=True), _module("clickguard.errors"),
                    _module("clickguard.helpers", "from . import errors\n")])
    assert upward(found) == ["clickguard/helpers.py:1 imports clickguard.errors: "
                             "unit 'helpers' has no stage in STAGES"]


def test_checker_fails_on_an_upward_import_added_to_a_copy_of_the_package(tmp_path: Path) -> None:
    copy = tmp_path / "clickguard"
    shutil.copytree(PACKAGE, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "data"))
    model = copy / "policy" / "model.py"
    lines = len(model.read_text().splitlines())
    model.write_text(model.read_text() + "\n\ndef _late() -> None:\n"
                                         "    from clickguard.proxy import runtime\n")
    found = arrows(read_modules(copy))
    added = f"clickguard/policy/model.py:{lines + 4} imports clickguard.proxy.runtime"
    assert f"{added}: policy imports proxy, a later stage" in upward(found)
    assert any(message.startswith("import cycle ") and f"  policy -> proxy: {added}" in message.splitlines()
               for message in cycles(found)), cycles(found)


# Names, sizes, mitmproxy, metadata.

def _names() -> Iterator[tuple[str, str]]:
    """(name, module) for every module and package name under clickguard/, each part of each name."""
    for module in MODULES:
        for part in module.name.split(".")[1:]:
            yield part, module.path


def test_no_module_is_named_like_a_standard_library_module() -> None:
    clashes = sorted({f"{path}: {name}" for name, path in _names() if name in sys.stdlib_module_names})
    assert clashes == []


def test_no_top_level_name_shadows_an_installed_distribution() -> None:
    # `mitmdump -s clickguard/addon.py` puts clickguard/ on sys.path: its top-level names become importable.
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                    if (p / "__init__.py").is_file()}
    installed = importlib.metadata.packages_distributions()
    assert "yaml" in installed and "mitmproxy" in installed  # the lookup sees the venv
    assert sorted(f"{name} (from {', '.join(installed[name])})" for name in top & installed.keys()) == []
    assert sorted(top & set(sys.stdlib_module_names)) == []


def test_no_module_over_a_thousand_lines() -> None:
    long = {m.path: n for m in MODULES if (n := len(m.source.splitlines())) > MAX_LINES}
    assert long == {}


def test_at_most_a_dozen_modules_at_the_top_level() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_core_never_imports_mitmproxy_in_its_source() -> None:
    found = [f"{i.module.path}:{i.line} imports {i.target}" for m in CORE for i in imports(m)
             if i.target.split(".")[0] == "mitmproxy"]
    assert found == []


def test_the_checker_sees_a_mitmproxy_import_inside_a_function() -> None:
    module = _module("clickguard.web.pages", "def f():\n    from mitmproxy import http\n")
    assert [(i.line, i.target) for i in imports(module)] == [(2, "mitmproxy.http")]


_IMPORT_EACH = textwrap.dedent("""\
    import importlib, sys
    for name in sys.argv[1:]:
        importlib.import_module(name)
        if "mitmproxy" in sys.modules:
            sys.exit(f"importing {name} loaded mitmproxy")
    print(len(sys.argv) - 1)
    """)


def _import_each(names: list[str]) -> subprocess.CompletedProcess[str]:
    """Import modules one by one in a fresh interpreter; exit 1 at the first that loads mitmproxy."""
    return subprocess.run([sys.executable, "-c", _IMPORT_EACH, *names], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_importing_the_core_loads_no_mitmproxy() -> None:
    names = sorted(m.name for m in CORE)
    done = _import_each(names)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == str(len(names))


def test_importing_the_proxy_fails_the_mitmproxy_check() -> None:
    done = _import_each(["clickguard.reasons", "clickguard.proxy.addon", "clickguard.cli"])
    assert (done.returncode, done.stderr.strip()) == (1, "importing clickguard.proxy.addon loaded mitmproxy")


def test_version_is_the_installed_distribution_version() -> None:
    assert clickguard.__version__ == importlib.metadata.version("clickguard")
    assert clickguard.__version__ != "0+unknown"


def test_the_package_is_marked_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
