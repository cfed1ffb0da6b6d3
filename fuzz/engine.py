"""One fuzzing session of one target, in a process of its own (`fuzz/run.py` starts it and reads its stats).

    python -m fuzz.engine --target NAME --inputs N --seconds S --out DIR [--engine atheris|random]
                          [--corpus-dir DIR …] [--seed N]

Every input goes through `Session.one`, which counts it, times it, and catches what the
target lets escape: the target keeps being fuzzed after a crash, each distinct crash
(exception type and the line that raised it) is saved once as ``DIR/crash-<hash>``,
and the inputs slowest per KiB are saved as ``DIR/slow-<n>``. The session stops itself
after N inputs or S seconds and writes ``DIR/stats.json`` (also every few seconds while
it runs, so a process that dies still leaves its counts).

Engines: ``atheris`` (libFuzzer with Python coverage; clickguard's modules are imported
instrumented, the corpus grows in the first ``--corpus-dir``, a hang past ``-timeout`` or a
memory blow-up ends the process with a libFuzzer artifact in DIR, which run.py reads);
``random``, a coverage-less mutational loop for where atheris does not install, with a
per-input alarm standing in for libFuzzer's timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:  # imported for real only once atheris instruments clickguard's modules
    from fuzz.targets import Checks, Run

HANG_SECONDS = 10  # an input that takes longer is a denial of service, recorded like a crash
SLOW_KEPT = 5  # slowest inputs (per KiB) kept for run.py to time again without instrumentation
STATS_EVERY = 2.0  # seconds between stats.json writes while running
RSS_LIMIT_MB = 1024


def per_kib(seconds: float, size: int) -> float:
    """Milliseconds per KiB of input, counting inputs under 1 KiB as 1 KiB (a fixed cost is not per byte)."""
    return seconds * 1000 * 1024 / max(size, 1024)


def crash_place(tb: TracebackType | None) -> str:
    """Where an exception was raised, as path:line: the innermost frame in clickguard, else the innermost."""
    frames = list(traceback.extract_tb(tb))
    while frames and frames[-1].name == "bound":  # a broken bound: where it was checked
        frames = frames[:-1]
    if not frames:
        return "?"
    ours = [f for f in frames if f"{os.sep}clickguard{os.sep}" in f.filename]
    frame = (ours or frames)[-1]
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    return f"{frame.filename.removeprefix(root)}:{frame.lineno}"


class Session:
    """Counts, times and guards every input of one target; stops the process when the budget is spent."""

    def __init__(self, run: Run, out: Path, inputs: int, seconds: float) -> None:
        self.run = run
        self.out = out
        self.limit = inputs
        self.deadline = time.monotonic() + seconds
        self.started = time.monotonic()
        self.inputs = 0
        self.crashes: dict[str, dict[str, Any]] = {}
        self.slow: list[tuple[float, float, int, bytes]] = []  # (ms per KiB, seconds, size, input)
        self.next_stats = time.monotonic() + STATS_EVERY

    def one(self, data: bytes) -> None:
        """Run one input (the function the engine calls)."""
        if self.inputs >= self.limit or time.monotonic() >= self.deadline:
            self.finish()
        self.inputs += 1
        start = time.perf_counter()
        try:
            checks = self.run(data)
            self.timed(data, time.perf_counter() - start)  # the parse alone; the checks are not timed
            if checks is not None:
                checks()
        except Exception as e:  # every escape is a finding: record it, keep fuzzing
            self.crashed(data, e)
        if time.monotonic() >= self.next_stats:
            self.write_stats(finished=False)
            self.next_stats = time.monotonic() + STATS_EVERY

    def crashed(self, data: bytes, error: BaseException) -> None:
        """Note one crash; the smallest input of each kind is kept in its file."""
        place = crash_place(error.__traceback__)
        kind = f"{type(error).__name__} at {place}"
        known = self.crashes.get(kind)
        if known is not None:
            known["count"] += 1
            if len(data) < known["size"]:  # keep the smallest example of each kind
                Path(known["file"]).write_bytes(data)
                known["size"] = len(data)
            return
        name = f"crash-{hashlib.sha1(kind.encode()).hexdigest()[:12]}"
        (self.out / name).write_bytes(data)
        self.crashes[kind] = {"count": 1, "file": str(self.out / name), "size": len(data),
                              "error": f"{type(error).__name__}: {str(error)[:300]}", "place": place}

    def timed(self, data: bytes, seconds: float) -> None:
        """Keep the input if it is among the slowest per KiB so far."""
        cost = per_kib(seconds, len(data))
        if len(self.slow) < SLOW_KEPT or cost > self.slow[-1][0]:
            self.slow.append((cost, seconds, len(data), bytes(data)))
            self.slow.sort(key=lambda entry: -entry[0])
            del self.slow[SLOW_KEPT:]

    def write_stats(self, *, finished: bool) -> None:
        """stats.json: inputs, crashes, the slowest inputs (saved beside it), whether the session ended."""
        for index, (_, _, _, data) in enumerate(self.slow):
            (self.out / f"slow-{index}").write_bytes(data)
        stats = {
            "inputs": self.inputs, "seconds": time.monotonic() - self.started, "finished": finished,
            "crashes": self.crashes,
            "slow": [{"file": str(self.out / f"slow-{i}"), "ms_per_kib": cost, "ms": seconds * 1000,
                      "size": size} for i, (cost, seconds, size, _) in enumerate(self.slow)],
        }
        temporary = self.out / "stats.json.tmp"
        temporary.write_text(json.dumps(stats, indent=1))
        temporary.replace(self.out / "stats.json")

    def finish(self) -> NoReturn:
        """Write the final stats and end the process (libFuzzer's loop never returns on its own)."""
        self.write_stats(finished=True)
        from fuzz.targets import remove_scratch  # os._exit runs no exit handlers

        remove_scratch()
        sys.stdout.flush()
        os._exit(0)


def _words_file(words: Sequence[str], path: Path) -> Path:
    """A libFuzzer dictionary: one quoted, escaped word a line."""
    def quoted(word: str) -> str:
        data = word.encode("utf-8", "surrogateescape")
        plain = (chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02X}" for b in data)
        return '"' + "".join(plain) + '"'
    path.write_text("".join(quoted(word) + "\n" for word in words))
    return path


def run_atheris(name: str, session_of: Callable[[Run], Session], out: Path,
                corpus_dirs: Sequence[Path], seed: int) -> NoReturn:
    """libFuzzer over the target, with clickguard's bytecode instrumented for coverage."""
    import atheris  # type: ignore[import-untyped, import-not-found]

    with atheris.instrument_imports(include=["clickguard"]):
        from fuzz.targets import TARGETS
    chosen = TARGETS[name]
    session = session_of(chosen.run)
    options = [f"-max_len={chosen.max_len}", f"-rss_limit_mb={RSS_LIMIT_MB}", f"-timeout={HANG_SECONDS}",
               f"-artifact_prefix={out}{os.sep}", f"-seed={seed}", "-print_final_stats=0"]
    if chosen.words:
        options.append(f"-dict={_words_file(chosen.words, out / 'words.dict')}")
    atheris.Setup([sys.argv[0], *options, *map(str, corpus_dirs)], session.one)
    atheris.Fuzz()
    session.finish()  # not reached: libFuzzer exits, or session.one ends the process


class Hung(Exception):
    """An input that ran past HANG_SECONDS (the random engine's stand-in for libFuzzer's timeout)."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hung(f"input still running after {HANG_SECONDS} s")


def mutate(data: bytes, pool: Sequence[bytes], words: Sequence[bytes], rng: random.Random,
           max_len: int) -> bytes:
    """One to four random edits: flip, insert, delete, repeat a piece (to grow inputs), splice, a word."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(out))
        edit = rng.randrange(7)
        if edit == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif edit == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif edit == 2:
            del out[at:at + rng.randint(1, 64)]
        elif edit == 3 and out:
            piece = out[at:at + rng.randint(1, 32)] or out[-1:]
            out[at:at] = piece * rng.choice((2, 16, 256, 4096))
        elif edit == 4:
            other = rng.choice(pool)
            start = rng.randint(0, len(other))
            out[at:] = other[start:start + rng.randint(0, 1024)]
        elif words:
            out[at:at] = rng.choice(words) * rng.choice((1, 1, 1, 64))
    return bytes(out[:max_len])


def run_random(name: str, session_of: Callable[[Run], Session],
               corpus_dirs: Sequence[Path], seed: int) -> NoReturn:
    """Mutate the corpus at random, without coverage; every input under an alarm."""
    from fuzz.targets import TARGETS

    chosen = TARGETS[name]
    pool = [*chosen.seeds(), *(p.read_bytes() for d in corpus_dirs if d.is_dir() for p in sorted(d.iterdir())
                               if p.is_file())] or [b""]
    words = [word.encode("utf-8", "surrogateescape") for word in chosen.words]
    rng = random.Random(seed)
    signal.signal(signal.SIGALRM, _alarm)

    def guarded(data: bytes) -> Checks | None:
        signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
        try:
            return chosen.run(data)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    session = session_of(guarded)
    for data in pool:
        session.one(data)
    while True:
        session.one(mutate(rng.choice(pool), pool, words, rng, chosen.max_len))


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, then fuzz until the budget is spent (the process ends inside the session)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--inputs", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    parser.add_argument("--corpus-dir", type=Path, action="append", default=[])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def session_of(run: Run) -> Session:
        return Session(run, args.out, args.inputs, args.seconds)

    if args.engine == "atheris":
        run_atheris(args.target, session_of, args.out, args.corpus_dir, args.seed)
    run_random(args.target, session_of, args.corpus_dir, args.seed)


if __name__ == "__main__":
    main()
