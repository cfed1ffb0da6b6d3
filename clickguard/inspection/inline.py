"""Small held bodies read in the proxy itself, within a bound on what that may cost; the rest in the pool.

Handing a 14 KB page to a worker process (`clickguard.inspection.pool`) costs more than
reading it: pickling the job and the reading, two pipe messages, a slot thread woken
and a future settled on the loop. Most held pages are small and ordinary, and read in
well under a millisecond. `read_small` reads such a body here, on the caller's thread,
and gives up as soon as the reading costs more than a small bound, leaving the body
to the pool exactly as before. The pool's guarantee holds: whatever the attacker puts
in a page, what it costs the event loop is bounded, and a hostile page is read in a
worker, within its deadline.

The bound, in three parts:

- size: only a body of at most `INLINE_BYTES`, raw and decoded (a compressed body
  that decodes to more goes to the pool), under at most one Content-Encoding, so every
  part of the reading that is linear in the body (decoding, sniffing, fingerprints,
  device evidence; the fuzz targets hold each to a cost per KiB) is bounded by the
  size. One coding, because a stack is not: an outer bomb may feed an inner stage
  megabytes that decode to nothing (empty stored blocks), which no output cap sees.
  One coding's own repeats are capped too (`bodies.MAX_MEMBERS` gzip members or zstd
  frames);
- CPU: the navigation reading, the one part whose cost grows with what the page's
  scripts do rather than with its size (up to `STEPS_PER_BYTE` steps a byte), is
  stopped once it has taken `INLINE_CPU` seconds of this thread's CPU time, checked
  every `CHECK_EVERY` steps (a step is a few microseconds at worst);
- then a reading that was stopped, for time or for its step budget, is dropped: the
  pool reads the body again, from the start.

A reading that finished is the pool's reading: the same function (`read_body`), the
same fingerprints and the same step budget (`budget_for` the decoded size); the CPU
check only ever stops a reading, and a stopped reading is never used. So where a body
is read changes what it costs, never what it shows (tests/test_inspect_fast.py).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from clickguard.inspection.bodies import content_codings, decode_body
from clickguard.inspection.fingerprints import FingerprintDB
from clickguard.inspection.navigation.results import Steps, StepsSpent, budget_for
from clickguard.inspection.pool import BodyJob, ReadingFailed
from clickguard.inspection.response import Reading, read_response

__all__ = ["CHECK_EVERY", "INLINE_BYTES", "INLINE_CPU", "BoundedSteps", "read_here", "read_small"]

INLINE_BYTES = 32 * 1024  # the largest body, raw and decoded, read in the proxy itself
INLINE_CPU = 0.003  # seconds of CPU the navigation reading may take here before it is left to the pool
CHECK_EVERY = 256  # steps between two looks at the CPU clock


class BoundedSteps(Steps):
    """A step budget that also stops the reading past a CPU deadline (`stopped` says it did)."""

    __slots__ = ("check_at", "deadline", "stopped")

    def __init__(self, limit: int, cpu_seconds: float) -> None:
        super().__init__(limit)
        self.deadline = time.thread_time() + cpu_seconds
        self.check_at = CHECK_EVERY
        self.stopped = False

    def charge(self, steps: int = 1) -> None:
        """Count steps of work; past the limit or the CPU deadline, stop the reading (`StepsSpent`)."""
        self.spent += steps
        if self.spent > self.limit:
            raise StepsSpent(f"the step budget ({self.limit}) ran out")
        if self.spent >= self.check_at:
            self.check_at = self.spent + CHECK_EVERY
            self.poll()

    def poll(self) -> None:
        """Stop the reading (`StepsSpent`) once past the CPU deadline; a scanner calls it between charges."""
        if time.thread_time() > self.deadline:
            # Every later charge stops too: the reading ends at once, and is dropped.
            self.stopped, self.limit = True, -1
            raise StepsSpent("the reading took too long to be read in the proxy")


def read_small(fingerprints: FingerprintDB, job: BodyJob, *,
               cpu_seconds: float = INLINE_CPU) -> Reading | None:
    """`read_body` of a small job, here; None when it is not small or took more than its bound here."""
    limit = min(INLINE_BYTES, job.max_body)
    if len(job.raw) > limit:
        return None
    encoding = next((v for n, v in job.headers if n.lower() == "content-encoding"), None)
    if len(content_codings(encoding)) > 1:
        return None  # stacked codings: what one stage feeds the next is not bounded by the raw size
    # The pool's own call when its cap is the smaller; else one byte of room past the limit tells a
    # body that fits from one cut at it (a decoder stopped short of its cap decodes the same bytes).
    cap = job.max_body if job.max_body <= INLINE_BYTES else INLINE_BYTES + 1
    body, truncated = decode_body(job.raw, encoding, max_decoded=cap)
    if len(body) > limit:
        return None
    steps = BoundedSteps(budget_for(len(body)).limit, cpu_seconds)
    reading = read_response(fingerprints, url=job.url, status=job.status, headers=job.headers, body=body,
                            server=job.server, steps=steps)
    if steps.stopped or steps.exhausted:
        return None  # stopped here: the pool reads it with the budget alone deciding (the same reading)
    return reading._replace(truncated=truncated)


def read_here(fingerprints: FingerprintDB, job: BodyJob,
              observe: Callable[[float], object]) -> Reading | None:
    """`read_small`, its time given to observe if it read the job; ReadingFailed if the reading raised."""
    started = time.perf_counter()
    try:
        reading = read_small(fingerprints, job)
    except RecursionError:
        # Deep nesting meets the limit sooner on the proxy's deeper stack than in a worker: the
        # pool's reading (whatever it finds) stands, not one that depends on where it ran.
        return None
    except Exception as e:  # a heuristic tripping on what a server sent: as the pool reports it
        raise ReadingFailed(traceback.format_exc()) from e
    if reading is not None:
        observe(time.perf_counter() - started)
    return reading
