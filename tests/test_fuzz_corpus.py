"""The saved fuzz corpus replayed: every input of fuzz/corpus/<target>/ through its target, in bounds.

`make fuzz` (fuzz/run.py) searches for crashes; this replays what it saved, so a change
that makes a parser raise on a known input, or break a bound its module promises (output
size, the reader's step budget, a body's decoded cap, a canonical entry), fails here.
The ``crash-*`` inputs are the crashes found: tests/test_fuzz_regressions.py replays them
(and says which are not fixed yet). Nothing is timed: `make fuzz` measures.

Also here: the fuzzing machinery itself (crash recording, timing per KiB, mutation,
minimising) and one short run of fuzz/run.py end to end.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.engine import Session, crash_place, mutate, per_kib
from fuzz.run import crash_kind, minimize
from fuzz.targets import TARGETS, Broken, bound
from tests.harness import REPO

CORPUS = REPO / "fuzz" / "corpus"


def _saved() -> list[object]:
    """Every saved input but the known crashes (tests/test_fuzz_regressions.py replays those)."""
    return [pytest.param(folder.name, path, id=f"{folder.name}/{path.name}")
            for folder in sorted(p for p in CORPUS.iterdir() if p.is_dir())
            for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith("crash-")]


@pytest.mark.parametrize(("name", "path"), _saved())
def test_saved_input_gets_an_answer_within_its_bounds(name: str, path: Path) -> None:
    TARGETS[name].check(path.read_bytes())


def test_every_target_has_a_saved_corpus_and_every_corpus_a_target() -> None:
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert sorted(folders - TARGETS.keys()) == [], "a corpus for no target"
    thin = sorted(name for name in TARGETS
                  if len([p for p in (CORPUS / name).glob("*") if not p.name.startswith("crash-")]) < 3)
    assert thin == [], "targets with fewer than 3 saved inputs"


def test_the_saved_corpus_stays_small() -> None:
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 200_000


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_gets_an_answer_within_its_bounds(name: str) -> None:
    for seed in TARGETS[name].seeds():
        TARGETS[name].check(seed)


# --- the machinery --------------------------------------------------------------------------------

def test_bound_raises_broken_only_when_it_does_not_hold() -> None:
    bound(True, "fine")
    with pytest.raises(Broken, match="too long"):
        bound(False, "too long")


def test_a_session_records_each_kind_of_crash_once_with_its_smallest_input(tmp_path: Path) -> None:
    def run(data: bytes) -> None:
        if data.startswith(b"v"):
            raise ValueError("bad")
        if data.startswith(b"k"):
            raise KeyError(data)

    session = Session(run, tmp_path, inputs=100, seconds=600)
    for data in (b"vvvv", b"ok", b"kk", b"vv", b"vvv"):
        session.one(data)
    assert session.inputs == 5
    assert sorted(crash["count"] for crash in session.crashes.values()) == [1, 3]
    saved = sorted(Path(crash["file"]).read_bytes() for crash in session.crashes.values())
    assert saved == [b"kk", b"vv"]  # the smallest input of each kind
    assert all("test_fuzz_corpus.py:" in crash["place"] for crash in session.crashes.values())


def test_a_broken_bound_is_placed_where_it_was_checked() -> None:
    try:
        bound(False, "x")
    except Broken as e:
        place = crash_place(e.__traceback__)
    assert place.startswith("tests/test_fuzz_corpus.py:")


def test_cost_per_kib_counts_small_inputs_as_one_kib() -> None:
    assert per_kib(0.001, 10) == pytest.approx(1.0)
    assert per_kib(0.001, 1024) == pytest.approx(1.0)
    assert per_kib(0.001, 102400) == pytest.approx(0.01)


def test_mutation_stays_under_the_length_limit_and_follows_its_seed() -> None:
    pool = [b"http://example.com/", b"<a href=x>"]

    def run(seed: int) -> list[bytes]:
        rng = random.Random(seed)
        return [mutate(pool[i % 2], pool, [b"%2e"], rng, 64) for i in range(200)]

    assert run(7) == run(7)
    assert all(len(data) <= 64 for data in run(7))
    assert len(set(run(7))) > 100


def test_minimize_keeps_the_crash_and_drops_the_rest() -> None:
    def check(data: bytes) -> None:
        if b"\x00" in data and b"charset" in data:
            raise ValueError("embedded null character")

    data = b"Subject: not needed\nContent-Type: text/plain; charset=\"a\x00b\"\nX-Other: not needed\n\nbody"
    smaller = minimize(check, data)
    assert crash_kind(check, smaller) == crash_kind(check, data) is not None
    assert len(smaller) == len(b"charset\x00")
    assert crash_kind(check, b"charset") is None


@pytest.mark.slow
def test_run_fuzzes_a_target_and_prints_its_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "fuzz/run.py", "--target", "redirect_headers", "--engine", "random",
         "--inputs", "300", "--corpus", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.splitlines()[0]
    assert line.split()[:3] == ["redirect_headers", "300", "inputs"]
    assert " 0 crashes " in line and "ms/KiB" in line
    assert (tmp_path / "redirect_headers" / "stats.json").is_file()
