"""The markup scanner and the link rewriter against Lexbor and html5lib over a large generated corpus.

Not a test: it prints the corpus size, the disagreements (goal 0) by kind with the shortest
example of each, then the same for XML documents (the scanner's XML mode against expat,
Firefox's XML parser), and the scanner's cost on the python3-doc pages and on hostile
markup (steps per character, time per KiB). `bench/run.py` can call `main()`.

    .venv/bin/python bench/differential_html.py [--count 100000] [--xml-count 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clickguard.inspection.navigation.markup_scan import MarkupScanner
from clickguard.inspection.navigation.results import StepsSpent
from tests.test_differential_html import Report, compare, compare_xml, corpus, xml_corpus

_DOCS = Path("/usr/share/doc/python3/html")
_READ = frozenset({"meta", "base", "iframe", "frame", "form"})
_SVG = "http://www.w3.org/2000/svg"


def differential(label: str, documents: Iterable[str], compare_one: Callable[[str], Report]) -> int:
    """Run a corpus; print its figures; the number of disagreements."""
    kinds: collections.Counter[str] = collections.Counter()
    examples: dict[str, tuple[str, str]] = {}
    count = 0
    started = time.perf_counter()
    for doc in documents:
        count += 1
        for disagreement in compare_one(doc).disagreements:
            kind = disagreement.split(":")[0]
            kinds[kind] += 1
            if kind not in examples or len(doc) < len(examples[kind][0]):
                examples[kind] = (doc, disagreement)
    bad = sum(kinds.values())
    print(f"{label}: corpus {count} documents, {bad} disagreements ({time.perf_counter() - started:.0f} s)")
    for kind, n in kinds.most_common():
        doc, disagreement = examples[kind]
        print(f"  {n:6d} {kind}\n         e.g. {doc!r}\n         {disagreement}")
    return bad


def cost() -> None:
    """Steps per character and time per KiB of the scanner: the python3-doc pages, then hostile shapes."""
    pages = sorted(_DOCS.rglob("*.html")) if _DOCS.is_dir() else []
    texts = [page.read_text(errors="replace") for page in pages]
    shapes = {
        "deep svg, stray end tags": "<svg>" + "<g>" * 50_000 + "</x>" * 50_000,
        "select of styles": "<select>" + "<style>x</style>" * 25_000,
        "noscripts": "<noscript>" * 25_000 + "</noscript>" * 25_000,
        "escaped scripts": "<script><!--" + "<script></script>" * 25_000,
        "open attributes": '<p title="' * 50_000 + "<!--" + "<a" * 50_000,
    }
    xml_shapes = {
        "xml: deep svg, stray end tags": f"<svg xmlns='{_SVG}'>" + "<g>" * 50_000 + "</x>" * 50_000,
        "xml: namespace per element": f"<svg xmlns='{_SVG}'>" + "<g xmlns:p='urn:x'>" * 50_000,
        "xml: script of references": f"<svg xmlns='{_SVG}'><script>" + "&amp;<![CDATA[x]]><!---->" * 25_000,
        "xml: entity bomb": "<!DOCTYPE x [<!ENTITY a0 'lol'>"
        + "".join(f"<!ENTITY a{k} '{f'&a{k - 1};' * 10}'>" for k in range(1, 10))
        + f"]><svg xmlns='{_SVG}'>&a9;</svg>",
    }
    groups = [("python3-doc pages", texts, False), *[(name, [text], False) for name, text in shapes.items()],
              *[(name, [text], True) for name, text in xml_shapes.items()]]
    for label, group, xml in groups:
        if not group:
            continue
        size = sum(map(len, group))
        steps = 0
        started = time.process_time()
        for text in group:
            scanner = MarkupScanner(text, _READ, auto_events=True, xml=xml)
            try:
                for _ in scanner:
                    pass
            except StepsSpent:
                label += " (stopped by the expansion bound)"
            steps += scanner.steps
        elapsed = time.process_time() - started
        print(f"  scan {label}: {size / 1024:.0f} KiB, {steps / size:.3f} steps/char, "
              f"{elapsed * 1e6 / (size / 1024):.1f} us/KiB")


def main(argv: list[str] | None = None) -> int:
    """Run the differential corpus and the cost figures; exit status 1 on any disagreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--xml-count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bad = differential(f"differential html (seed {args.seed})", corpus(args.count, args.seed), compare)
    bad += differential(f"differential xml against expat (seed {args.seed})",
                        xml_corpus(args.xml_count, args.seed), compare_xml)
    cost()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
