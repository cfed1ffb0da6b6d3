"""make fuzz: every parser of outside input fuzzed in turn, one line of figures per target.

    python fuzz/run.py [--target NAME|all] [--inputs N] [--seconds S] [--corpus DIR]
                       [--engine atheris|random] [--no-shared-seeds] [--save-corpus]
    python fuzz/run.py --target NAME --minimize FILE

Each target runs in a process of its own (`fuzz.engine`) until it has taken N inputs
(default 1,000,000) or S seconds; a process that libFuzzer ends (a hang past 10 s, a
memory blow-up) is started again for what is left of the budget. Printed per target:

    url   1,000,000 inputs  12,345/s  0 crashes  slowest 0.31 ms/KiB (2.0 KiB input, 0.62 ms)

then one line per kind of crash (exception and the line that raised it, how often, the
saved input). The slowest inputs are timed again here, without the coverage
instrumentation, best of three; inputs under 1 KiB count as 1 KiB. Saved under DIR
(default ``fuzz/out``): ``DIR/<target>/crash-*`` (one input per kind of crash, the
smallest seen), ``slow-*`` (the slowest per KiB), libFuzzer's growing corpus in ``work/``.

Seeds are made by code (`fuzz.seeds`); the feed targets also start from the heads of the
real snapshots in ``../shared/data/feeds`` unless ``--no-shared-seeds``. ``--save-corpus``
rewrites the committed corpus ``fuzz/corpus/<target>/`` (which CI replays,
tests/test_fuzz_corpus.py) from the seeds and the smallest inputs of ``work/``, leaving
``crash-*`` files alone (an input that crashes is never saved as an ordinary one); work
that started from shared data is never copied there.
``--minimize FILE`` shrinks a crashing input (same exception at the same line) to FILE.min.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.engine import crash_place, per_kib

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "fuzz" / "corpus"
RESTARTS = 10
SAVED_FILES = 32  # per target in the committed corpus
SAVED_BYTES = 6000  # per target in the committed corpus (all of it stays under 200 KB)
SAVED_FILE_MAX = 2048
SHARED_MARK = ".shared-seeds"  # in work/: this corpus grew from real feed data


def target_names() -> list[str]:
    """Every target's name (imports the targets, so only in this process, never before a child starts)."""
    from fuzz.targets import TARGETS

    return list(TARGETS)


def write_seeds(name: str, seeds_dir: Path, work: Path, shared: bool) -> None:
    """The target's seeds as files: made by code, the committed corpus but its crashes, real feed heads.

    The crashes stay out: a hang among them would end every session at its start. The heads of
    the real feed snapshots are added for a feed target when shared is set.
    """
    from fuzz.seeds import shared_feed_seeds
    from fuzz.targets import TARGETS

    seeds_dir.mkdir(parents=True, exist_ok=True)
    for old in seeds_dir.iterdir():
        old.unlink()
    found = TARGETS[name].seeds()
    if (COMMITTED / name).is_dir():
        found += [path.read_bytes() for path in sorted((COMMITTED / name).iterdir())
                  if not path.name.startswith("crash-")]
    if shared and name.startswith("feed_"):
        heads = shared_feed_seeds(name.removeprefix("feed_"))
        if heads:
            found += heads
            (work / SHARED_MARK).touch()
    for data in found:
        (seeds_dir / hashlib.sha1(data).hexdigest()).write_bytes(data)


def fuzz_target(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fuzz one target within the budget, restarting its process when libFuzzer ends it; merged stats."""
    out = args.corpus / name
    work, seeds_dir = out / "work", out / "seeds"
    work.mkdir(parents=True, exist_ok=True)
    write_seeds(name, seeds_dir, work, args.shared_seeds)
    total: dict[str, Any] = {"inputs": 0, "seconds": 0.0, "crashes": {}, "slow": [], "errors": []}
    deadline = time.monotonic() + args.seconds
    seen_artifacts: set[str] = set()
    for attempt in range(RESTARTS + 1):
        left_inputs, left_seconds = args.inputs - total["inputs"], deadline - time.monotonic()
        if left_inputs <= 0 or left_seconds <= 1:
            break
        (out / "stats.json").unlink(missing_ok=True)
        command = [sys.executable, "-m", "fuzz.engine", "--target", name, "--inputs", str(left_inputs),
                   "--seconds", str(left_seconds), "--out", str(out), "--engine", args.engine,
                   "--seed", str(attempt + 1), "--corpus-dir", str(work), "--corpus-dir", str(seeds_dir)]
        with (out / "fuzz.log").open("ab") as log:
            try:
                subprocess.run(command, cwd=REPO, stdout=log, stderr=log, timeout=left_seconds + 120,
                               check=False)
            except subprocess.TimeoutExpired:
                total["errors"].append("the fuzzing process hung and was killed")
        stats = _read_stats(out)
        _merge(total, stats)
        if stats.get("finished"):
            break
        artifacts = _artifacts(out, seen_artifacts)
        for kind, path in artifacts:
            total["crashes"][kind] = {"count": 1, "file": str(path), "size": path.stat().st_size,
                                      "error": kind, "place": "?"}
        if not artifacts and not stats.get("inputs"):
            total["errors"].append(f"the fuzzing process ended before any input: see {out / 'fuzz.log'}")
            break
    return total


def _read_stats(out: Path) -> dict[str, Any]:
    """The stats a session left, or none."""
    try:
        stats: dict[str, Any] = json.loads((out / "stats.json").read_text())
    except (OSError, ValueError):
        return {}
    return stats


def _merge(total: dict[str, Any], stats: dict[str, Any]) -> None:
    """Add one session's stats to the target's."""
    total["inputs"] += stats.get("inputs", 0)
    total["seconds"] += stats.get("seconds", 0.0)
    for kind, crash in stats.get("crashes", {}).items():
        known = total["crashes"].get(kind)
        if known is None:
            total["crashes"][kind] = crash
        else:
            known["count"] += crash["count"]
    total["slow"] += stats.get("slow", [])


def _artifacts(out: Path, seen: set[str]) -> list[tuple[str, Path]]:
    """libFuzzer's own artifacts (timeout-, oom-, crash- with a 40-digit name) not reported yet."""
    found = []
    for path in sorted(out.iterdir()):
        prefix, _, digest = path.name.partition("-")
        if prefix in ("timeout", "oom", "crash", "leak") and len(digest) == 40 and path.name not in seen:
            seen.add(path.name)
            what = {"timeout": "hang (past 10 s, libFuzzer timeout)", "oom": "memory over the RSS limit"}
            found.append((f"{what.get(prefix, 'process died')} [{path.name}]", path))
    return found


def retime(name: str, slow: list[dict[str, Any]]) -> tuple[float, int, float] | None:
    """(ms per KiB, size, ms) of the slowest saved input, timed again uninstrumented, best of 3."""
    from fuzz.targets import TARGETS

    run = TARGETS[name].run  # the parse alone, as the session timed it
    worst: tuple[float, int, float] | None = None
    for entry in slow:
        try:
            data = Path(entry["file"]).read_bytes()
        except OSError:
            continue
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with contextlib.suppress(Exception):  # a crash has its own line; only the time counts here
                run(data)
            best = min(best, time.perf_counter() - start)
        cost = per_kib(best, len(data))
        if worst is None or cost > worst[0]:
            worst = (cost, len(data), best * 1000)
    return worst


def report(name: str, total: dict[str, Any], slowest: tuple[float, int, float] | None) -> str:
    """The target's lines: figures, then one line per kind of crash."""
    rate = total["inputs"] / total["seconds"] if total["seconds"] else 0.0
    crashes = sum(crash["count"] for crash in total["crashes"].values())
    slow = (f"slowest {slowest[0]:.3f} ms/KiB ({slowest[1] / 1024:.1f} KiB input, {slowest[2]:.2f} ms)"
            if slowest else "slowest -")
    lines = [f"{name:<20} {total['inputs']:>11,} inputs {rate:>8,.0f}/s {crashes:>6,} crashes  {slow}"]
    for kind, crash in sorted(total["crashes"].items()):
        lines.append(f"    crash x{crash['count']}: {kind}: {crash['error'][:160]!r} -> {crash['file']}")
    lines += [f"    error: {error}" for error in total["errors"]]
    return "\n".join(lines)


def save_corpus(name: str, corpus: Path) -> int:
    """Rewrite fuzz/corpus/<name>/ from the seeds and the smallest inputs of work/ that do not crash."""
    from fuzz.targets import TARGETS

    work = corpus / name / "work"
    chosen: dict[str, bytes] = {}
    candidates = sorted(TARGETS[name].seeds(), key=len)
    if work.is_dir() and not (work / SHARED_MARK).exists():
        candidates += sorted((p.read_bytes() for p in work.iterdir() if p.is_file()), key=len)
    used = 0
    for data in candidates:
        if len(chosen) >= SAVED_FILES or len(data) > SAVED_FILE_MAX or used + len(data) > SAVED_BYTES:
            continue
        digest = hashlib.sha1(data).hexdigest()[:16]
        # An input that crashes is a crash-* file with its regression test, never an ordinary one.
        if digest not in chosen and crash_kind(TARGETS[name].check, data) is None:
            chosen[digest] = data
            used += len(data)
    target_dir = COMMITTED / name
    target_dir.mkdir(parents=True, exist_ok=True)
    for old in target_dir.iterdir():
        if not old.name.startswith("crash-"):
            old.unlink()
    for digest, data in chosen.items():
        (target_dir / digest).write_bytes(data)
    return used


def crash_kind(check: Callable[[bytes], None], data: bytes) -> str | None:
    """The kind of crash data causes (exception type and where it was raised), or None."""
    try:
        check(data)
    except Exception as e:
        return f"{type(e).__name__} at {crash_place(e.__traceback__)}"
    return None


def minimize(check: Callable[[bytes], None], data: bytes, budget: int = 20_000) -> bytes:
    """The shortest input found by deleting pieces of data (halves down to bytes) with the same crash."""
    kind = crash_kind(check, data)
    if kind is None:
        return data
    size = max(len(data) // 2, 1)
    while size >= 1 and budget > 0:
        at, shrunk = 0, False
        while at < len(data) and budget > 0:
            budget -= 1
            candidate = data[:at] + data[at + size:]
            if crash_kind(check, candidate) == kind:
                data, shrunk = candidate, True
            else:
                at += size
        if not shrunk:
            size //= 2
    return data


def main() -> int:
    """Fuzz the targets asked for, one after another; exit 1 if any crashed."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="all", help="a target's name, or all")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seconds", type=float, default=7 * 24 * 3600.0, help="time per target")
    parser.add_argument("--corpus", type=Path, default=REPO / "fuzz" / "out", help="where findings are saved")
    parser.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    parser.add_argument("--no-shared-seeds", dest="shared_seeds", action="store_false")
    parser.add_argument("--save-corpus", action="store_true",
                        help="rewrite fuzz/corpus from the seeds and work/")
    parser.add_argument("--minimize", type=Path, metavar="FILE",
                        help="shrink a crashing input of --target to FILE.min, keeping its crash")
    args = parser.parse_args()
    args.corpus = args.corpus.resolve()
    names = target_names()
    if args.target != "all":
        if args.target not in names:
            parser.error(f"unknown target {args.target!r} (known: {', '.join(names)})")
        names = [args.target]
    if args.minimize is not None:
        if len(names) != 1:
            parser.error("--minimize needs --target NAME")
        from fuzz.targets import TARGETS

        check = TARGETS[names[0]].check
        data = minimize(check, args.minimize.read_bytes())
        args.minimize.with_name(args.minimize.name + ".min").write_bytes(data)
        print(f"{crash_kind(check, data)}: {data!r}")
        return 0
    if args.save_corpus:
        for name in names:
            print(f"{name:<20} {save_corpus(name, args.corpus):>6,} bytes saved in fuzz/corpus/{name}/")
        return 0
    failed = False
    for name in names:
        total = fuzz_target(name, args)
        print(report(name, total, retime(name, total["slow"])), flush=True)
        failed = failed or bool(total["crashes"]) or bool(total["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
