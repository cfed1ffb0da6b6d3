"""The script reader against tree-sitter-javascript over a large generated corpus, and its cost per KiB.

Not a test: it prints the corpus size, how many programs V8 accepts and the grammar parsed
(the others are not compared, each with why), the disagreements (goal 0) with a few
examples, the reader's steps and time per KiB on an ordinary and a hostile page, and its
steps at 1k, 10k and 100k functions of the hostile shapes (flat steps per unit: linear).
`bench/run.py` can call `main()`.

    .venv/bin/python bench/differential_js.py [--count 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clickguard.inspection.navigation import find_navigations
from clickguard.inspection.navigation.results import Steps
from tests.test_differential_js import compare, corpus
from tests.test_script_reader import SHAPES


def differential(count: int, seed: int) -> int:
    """Run the corpus; print its figures; the number of disagreements."""
    parsed = 0
    kinds: collections.Counter[str] = collections.Counter()
    skipped: collections.Counter[str] = collections.Counter()
    examples: list[tuple[str, list[str]]] = []
    started = time.perf_counter()
    for program in corpus(count, seed):
        report = compare(program)
        parsed += report.parsed
        if not report.parsed:
            skipped[report.skipped] += 1
        if report.disagreements:
            kinds.update(d.split(" at ")[0].split(":")[0] for d in report.disagreements)
            if len(examples) < 5:
                examples.append((program, report.disagreements))
    bad = sum(kinds.values())
    print(f"differential js: corpus {count} scripts, {parsed} valid for V8 and parsed by tree-sitter, "
          f"compared: {bad} disagreements ({time.perf_counter() - started:.0f} s)")
    for reason, number in skipped.most_common():
        print(f"  {number:6d}  not compared: {reason}")
    for kind, number in kinds.most_common():
        print(f"  {number:6d}  {kind}")
    for program, disagreements in examples:
        print(f"  e.g. {program[:120]!r}: {disagreements[:2]}")
    return bad


def cost() -> None:
    """Steps and milliseconds per KiB of an ordinary page and of each hostile shape."""
    ordinary = ("<html><head><script>var opts = {a: 1, b: [1, 2]}; function show(e) { e.hidden = !e.hidden }"
                "</script></head><body>" + "<p>text <a href='/x'>link</a></p>" * 2000
                + "<script>document.querySelector('a').onclick = function () { location.href = '/y' }"
                "</script>"
                "</body></html>")
    pages = {"ordinary": ordinary, **{f"hostile {name}": make(4000) for name, make in SHAPES.items()}}
    for name, page in pages.items():
        body = page.encode()
        steps = Steps(10**12)
        started = time.perf_counter()
        find_navigations(status=200, headers=(), body=body, base_url="http://page.example/",
                         content_type="text/html", steps=steps)
        elapsed = time.perf_counter() - started
        kib = len(body) / 1024
        print(f"inspection cost {name:32s} {kib:7.0f} KiB  {steps.spent / kib:8.0f} steps/KiB  "
              f"{1000 * elapsed / kib:6.2f} ms/KiB")


# Shapes whose steps are printed at 1k, 10k and 100k functions (or scripts, or calls).
LINEAR_SHAPES = ("many-functions", "many-scripts", "call-chain", "nested-same-name-uncalled",
                 "methods-uncalled", "globals-set-in-functions")


def linearity(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> None:
    """Steps of reading each shape at each size: linear when steps per unit stay flat."""
    for name in LINEAR_SHAPES:
        make = SHAPES[name]
        figures = []
        for size in sizes:
            steps = Steps(10**12)
            find_navigations(status=200, headers=(), body=make(size).encode(), base_url="http://page.example/",
                             content_type="text/html", steps=steps)
            figures.append(f"{size:>7d}: {steps.spent:>10d} steps ({steps.spent / size:5.0f}/unit)")
        print(f"linear cost {name:28s} " + "  ".join(figures))


def main(argv: list[str] | None = None) -> int:
    """Print the differential figures and the cost per KiB."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cost()
    linearity()
    return 1 if differential(args.count, args.seed) else 0


if __name__ == "__main__":
    sys.exit(main())
