"""The README tells the same story as the tree: its Layout section lists exactly the package's modules."""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness import REPO

PACKAGE = REPO / "clickguard"
_ENTRY = re.compile(r"^( *)([\w.]+/|[\w.]+\.py)(?:\s|$)")


def layout_entries(readme: str) -> set[str]:
    """The paths the README's Layout block names under clickguard/, e.g. {"urls.py", "policy/model.py"}."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    entries: set[str] = set()
    stack: list[tuple[int, str]] = []  # (indent, folder) of the folders we are inside
    for line in block.splitlines():
        match = _ENTRY.match(line)
        if match is None or len(match.group(1)) > 8:  # a wrapped description, not an entry
            continue
        indent, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(folder for _, folder in stack) + name
        if name.endswith("/"):
            stack.append((indent, name))
        entries.add(path)
    inside = {e.removeprefix("clickguard/") for e in entries if e.startswith("clickguard/")}
    return inside - {""}


def tree_entries(root: Path) -> set[str]:
    """The package's modules and subpackages (and the data link), as the README writes them."""
    entries: set[str] = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if "__pycache__" in relative.parts or relative.parts[0] == "data":
            continue
        if path.is_dir():
            entries.add(f"{relative}/")
        elif path.suffix == ".py" and path.name != "__init__.py":
            entries.add(str(relative))
    if (root / "data").is_symlink():
        entries.add("data/")
    return entries


def test_layout_parser_reads_nesting_and_skips_wrapped_descriptions() -> None:
    """The checker itself: nested folders, and a description wrapped onto its own line is no entry."""
    readme = ("# x\n\n## Layout\n\n```\nclickguard/\n  urls.py         urls\n  policy/         the policy\n"
              "    model.py      the model,\n                  wrapped.py here is prose\n"
              "  cli.py          the command\nbench/run.py\n```\n\n## Next\n")
    assert layout_entries(readme) == {"urls.py", "policy/", "policy/model.py", "cli.py"}


def test_readme_layout_matches_the_tree() -> None:
    """Every module in the tree is in the README's Layout, and every module there exists."""
    listed = layout_entries((REPO / "README.md").read_text())
    actual = tree_entries(PACKAGE)
    assert sorted(actual - listed) == [], "in the tree but not in README's Layout"
    assert sorted(listed - actual) == [], "in README's Layout but not in the tree"
