"""Response bodies read in worker processes, each within a deadline, so no request waits on another's.

Reading a hostile page is CPU-bound Python. In a thread of the proxy it holds the
GIL in turns with the event loop, and every other user's request slows down with
it (bench/hostile.py: small requests' p99 sixteen to twenty times higher while two
clients fetch hostile pages read in threads, about the same as without them when
read in processes); a thread past its deadline can only be abandoned and goes on
costing CPU until its step budget runs out. Here the reading
(`clickguard.inspection.response.read_body`) runs in processes instead:

- `ReadingPool(workers)` has one *slot* per worker: a thread of the proxy that
  owns one worker process and hands it one job at a time over a pipe (the
  thread only waits and (un)pickles; the loop never blocks on a worker).
- Each reading has a process of its own: ``workers`` are kept started, and when
  a job leaves none of them idle, one more starts (up to ``max_workers``, by
  default `SURGE` times ``workers``) so the next job does not queue behind a
  long reading; the kernel shares the CPU between readings, so a small page is
  read in milliseconds while hostile ones take their seconds. The extra ones
  exit after `IDLE_EXIT` seconds without work.
- A worker is started through multiprocessing's "forkserver": a clean process
  started once, with the inspection modules imported, forks each worker. The
  proxy itself is never forked (it has threads). A worker lowers its priority
  (`WORKER_NICENESS`) so the event loop wins the CPU, loads the fingerprint
  database the proxy validated (handed over pickled, so worker and proxy cannot
  disagree about a file changed since), and reads job after job.
- Each job has a deadline, counted from `submit`, or from when the pool is `up`
  (its first worker ready) for a job that came before: the proxy's start-up is
  not a reading's slowness, and the first requests wait for the workers rather
  than pass uninspected. A job still queued at its deadline is never run; a
  running one's worker is killed (SIGKILL) at once and replaced, so a reading
  past its deadline stops costing CPU: `ReadingTimeout`.
- A worker that dies mid-job (a crash, the OOM killer) fails that job with
  `WorkerDied` and is replaced; a reading that raises fails with
  `ReadingFailed`, carrying the worker's traceback. The pool goes on either way.
- Backpressure: with all ``max_workers`` busy, jobs wait in one FIFO queue, each
  until its deadline at most. At most `QUEUE_PER_WORKER` jobs per worker wait;
  `submit` past that raises `PoolBusy` at once rather than queueing without bound.
- `use_fingerprints` with a changed database (a reload): each worker is
  restarted with it before its next job; a job under way finishes with the old.
- `close` kills and reaps the workers. A proxy that dies without closing leaves
  no worker behind either: a worker exits at end of file on its pipe, and on
  Linux is killed when the forkserver, which exits with the proxy, dies
  (PR_SET_PDEATHSIG). Workers are named ``cg-inspect`` (``ps -o comm``).

``processes=False`` reads in ``workers`` slot threads themselves instead (the
former way, kept to compare in bench/hostile.py): same queue and deadline, no
extra workers, and a reading past its deadline is abandoned, not stopped.

Errors: `ReadingError` is the base of `ReadingTimeout`, `WorkerDied`,
`ReadingFailed`, `PoolBusy` and `PoolClosed`; the proxy answers each as a check
that could not complete (its policy's ``on_check_error``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

from clickguard.inspection.device_evidence import ServerFacts
from clickguard.inspection.fingerprints import FingerprintDB
from clickguard.inspection.response import Reading, read_body
from clickguard.urls import NormalizedURL

logger = logging.getLogger(__name__)

QUEUE_PER_WORKER = 32  # jobs that may wait per worker while all are busy; then PoolBusy
SURGE = 4  # max_workers by default: this many times the workers kept started
IDLE_EXIT = 60.0  # seconds an extra worker waits for work before it exits
WORKER_NICENESS = 10  # added to a worker's nice value: the proxy's event loop goes first
WORKER_NAME = b"cg-inspect"  # the workers' process name (comm), for ps and for tests
START_TIMEOUT = 60.0  # seconds a new worker may take to be ready
_PR_SET_NAME, _PR_SET_PDEATHSIG = 15, 1  # prctl(2) options


class ReadingError(Exception):
    """A reading that did not produce a result."""


class ReadingTimeout(ReadingError):
    """The reading passed its deadline (queued too long, or its worker was killed)."""


class WorkerDied(ReadingError):
    """The worker reading the job died (or could not be started)."""


class ReadingFailed(ReadingError):
    """The reading raised; the message is the worker's traceback."""


class PoolBusy(ReadingError):
    """Every worker is busy and the queue is full: the job was not taken."""


class PoolClosed(ReadingError):
    """The pool was closed before the job ran."""


class BodyJob(NamedTuple):
    """One held response to read: the arguments of `read_body` but the fingerprints."""

    url: NormalizedURL
    status: int
    headers: Sequence[tuple[str, str]]
    raw: bytes
    max_body: int
    server: ServerFacts | None = None


@dataclass(slots=True)
class _Job:
    body: BodyJob
    submitted: float  # time.monotonic()
    allowed: float  # seconds from submitted (or from when the pool was up, if later)
    future: Future[Reading]


def _become_worker() -> None:
    """Lower this process's priority; name it; have it killed when its parent dies (Linux).

    Ctrl-C reaches the whole process group: the proxy stops its workers itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(WORKER_NAME), 0, 0, 0)
    except (OSError, AttributeError) as e:  # no libc to ask: the pipe's end of file still stops it
        logger.debug("prctl unavailable: %s", e)


def workers_of(pid: int) -> list[int]:
    """The inspection workers process pid started (Linux ``/proc``), for monitoring, benches and tests.

    They are its live descendants named `WORKER_NAME` (children of the forkserver it started).
    """
    table: dict[int, tuple[int, str, str]] = {}  # pid -> (parent, name, state)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        rest = text[text.rindex(")") + 2:].split()
        table[int(stat.parent.name)] = (int(rest[1]), text[text.index("(") + 1:text.rindex(")")], rest[0])
    children: dict[int, list[int]] = {}
    for child, (parent, _name, _state) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        todo += children.get(child, ())
        _parent, name, state = table[child]
        if name == WORKER_NAME.decode() and state != "Z":
            found.append(child)
    return sorted(found)


def _work(conn: Connection, fingerprints: bytes) -> None:
    """A worker's life: load the fingerprints, say ready, then read each job sent until told to stop."""
    _become_worker()
    db = pickle.loads(fingerprints)
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            job = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the proxy is gone
        if job is None:
            return
        try:
            answer = pickle.dumps(("ok", read_body(db, **job._asdict())))
        except Exception:  # a heuristic tripping on what a server sent: reported, the worker goes on
            answer = pickle.dumps(("error", traceback.format_exc()))
        try:
            conn.send_bytes(answer)
        except OSError:
            return  # the proxy is gone


def _preload() -> list[str]:
    """What the forkserver imports once for all workers: the reading, and what a child re-imports.

    A child re-runs the parent's main module (as ``__mp_main__``); having it and its
    imports in the forkserver already makes a new worker cost a fork, not a start-up.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    names = ["__main__", __name__]
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        names.append(spec.name)
    elif main is not None:
        # A script (the ``clickguard`` console script) is re-run from its path in every worker, and
        # multiprocessing hands the forkserver no path to preload it by: what the script imports,
        # imported here once, makes that re-run cost a few lookups instead of a start-up.
        for value in list(vars(main).values()):
            name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if isinstance(name, str) and name not in names and name != "builtins" and name in sys.modules:
                names.append(name)
    return names


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, fingerprints: bytes, generation: int) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_preload())  # takes effect when the forkserver starts
        self.conn, child = context.Pipe()
        self.generation = generation
        self.process: BaseProcess = context.Process(target=_work, args=(child, fingerprints),
                                                    name="clickguard-inspect", daemon=True)
        try:
            self.process.start()
        finally:
            child.close()
        if not wait([self.conn, self.process.sentinel], START_TIMEOUT) or not self.conn.poll():
            self.kill()
            raise WorkerDied("the inspection worker did not start")
        try:
            kind, pid = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as e:
            self.kill()
            raise WorkerDied("the inspection worker did not start") from e
        assert kind == "ready"
        self.pid: int = pid

    def kill(self) -> None:
        """Stop the process now and reap it."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        self.process.join(10)
        self.conn.close()

    def stop(self) -> None:
        """Ask the idle process to exit, then reap it (killed if it does not)."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send_bytes(pickle.dumps(None))
        self.process.join(2)
        self.kill()


class _Slot(threading.Thread):
    """A thread of the proxy feeding one worker process with queued jobs, one at a time."""

    def __init__(self, pool: ReadingPool, number: int) -> None:
        super().__init__(name=f"clickguard-inspect-{number}", daemon=True)
        self.pool = pool
        self.worker: _Worker | None = None

    def run(self) -> None:
        try:
            if self.pool.processes:
                self._renew()  # started before its first job, so that job does not wait for it
            while (job := self.pool._next_job(self)) is not None:
                if self.pool._closed:
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(PoolClosed("the inspection pool closed"))
                    return
                if job.future.set_running_or_notify_cancel():
                    self.pool._took()
                    try:
                        self._settle(job)
                    finally:
                        self.pool._finished()
        finally:
            self.pool._left(self)
            if self.worker is not None:
                self.worker.stop()
                self.worker = None

    def _settle(self, job: _Job) -> None:
        """Run one job; whatever goes wrong in this thread fails the job, never the slot."""
        try:
            self._run(job)
        except Exception:  # a bug here must not take the slot, and every later job, with it
            logger.exception("inspection slot %s failed", self.name)
            if not job.future.done():
                job.future.set_exception(ReadingFailed(traceback.format_exc()))
            if self.worker is not None:
                self.worker.kill()
                self.worker = None

    def _renew(self) -> None:
        """Have a worker with the fingerprints in force (started, or restarted); logged if none can start."""
        fingerprints, generation = self.pool._current()
        worker = self.worker
        if worker is not None and worker.generation == generation and worker.process.is_alive():
            return
        if self.worker is not None:  # stale fingerprints, or killed while idle
            self.worker.stop()
            self.worker = None
        if self.pool._closed:
            return
        try:
            self.worker = _Worker(fingerprints, generation)
        except (WorkerDied, OSError) as e:
            logger.error("inspection worker could not be started: %s", e)
            return
        finally:
            self.pool._mark_up()  # ready or not: jobs waiting for the start-up go on
        logger.info("inspection worker %d started", self.worker.pid)
        if self.pool._closed:  # closed while it started: close() could not see it
            self.worker.stop()
            self.worker = None

    def _run(self, job: _Job) -> None:
        """Read one job and settle its future: a result or a ReadingError."""
        deadline = self.pool._deadline(job)
        if time.monotonic() >= deadline:
            job.future.set_exception(ReadingTimeout("the reading waited past its deadline"))
            return
        if not self.pool.processes:
            self._run_here(job)
            return
        self._renew()
        worker = self.worker
        if worker is None:
            job.future.set_exception(WorkerDied("no inspection worker could be started"))
            return
        outcome = self._exchange(worker, job, deadline)
        if outcome is None:
            return  # settled: a reading, or the reading's own error
        worker.kill()
        self.worker = None
        if self.pool._closed:
            job.future.set_exception(PoolClosed("the inspection pool closed"))
            return
        job.future.set_exception(outcome)
        self._renew()  # replaced at once, before the next job comes

    @staticmethod
    def _exchange(worker: _Worker, job: _Job, deadline: float) -> ReadingError | None:
        """Hand the job to the worker and wait for its answer until the deadline.

        None when the future is settled (a reading, or what the reading raised);
        else what became of the worker, which must then be killed and replaced.
        """
        try:
            worker.conn.send_bytes(pickle.dumps(job.body))
            ready = wait([worker.conn, worker.process.sentinel], max(0.0, deadline - time.monotonic()))
            if not ready:
                logger.warning("inspection worker %d killed: its reading passed the deadline", worker.pid)
                return ReadingTimeout("the reading passed its deadline")
            if worker.conn in ready:
                kind, value = pickle.loads(worker.conn.recv_bytes())
                if kind == "ok":
                    job.future.set_result(value)
                else:
                    job.future.set_exception(ReadingFailed(value))
                return None
        except (EOFError, OSError):
            pass  # the pipe broke: the worker is gone
        worker.process.join(1)
        code = worker.process.exitcode
        logger.error("inspection worker %d died mid-reading (exit code %s)", worker.pid, code)
        return WorkerDied(f"the inspection worker died (exit code {code})")

    def _run_here(self, job: _Job) -> None:
        """Read a job in this thread (processes=False); past the deadline its result is dropped."""
        db = self.pool._db or FingerprintDB.default()
        try:
            reading = read_body(db, **job.body._asdict())
        except Exception:  # a heuristic tripping on what a server sent: reported to the caller
            job.future.set_exception(ReadingFailed(traceback.format_exc()))
            return
        job.future.set_result(reading)


class ReadingPool:
    """Worker processes (or threads) that read held bodies, each job within its deadline."""

    def __init__(self, workers: int = 2, *, max_workers: int | None = None, processes: bool = True) -> None:
        if workers <= 0:
            raise ValueError("workers: must be positive")
        self.processes = processes
        self._wanted = workers
        self._max = max_workers
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._busy = 0  # slots reading a job
        self._numbered = 0
        self._db: FingerprintDB | None = None  # set by use_fingerprints, else the shipped ones at start
        self._fingerprints = b""
        self._generation = 0
        self._started = False
        self._closed = False
        self.up: Future[None] = Future()  # done once the first worker is ready (or could not start)
        self._up_at: float | None = None

    @property
    def workers(self) -> int:
        """How many workers the pool keeps started."""
        return self._wanted

    @property
    def max_workers(self) -> int:
        """How many workers may read at once; past that, jobs queue."""
        if not self.processes:
            return self._wanted
        return max(self._wanted, self._max if self._max is not None else SURGE * self._wanted)

    def use_fingerprints(self, db: FingerprintDB) -> None:
        """Read with this database from the next job on; workers restart only if it differs."""
        data = pickle.dumps(db)
        with self._lock:
            self._db = db
            if data != self._fingerprints:
                self._fingerprints = data
                self._generation += 1

    def _current(self) -> tuple[bytes, int]:
        """The pickled fingerprints in force and their generation."""
        if self._db is None:
            self.use_fingerprints(FingerprintDB.default())
        with self._lock:
            return self._fingerprints, self._generation

    def start(self) -> None:
        """Start the workers now (else the first job does); they start in their slots, off the caller."""
        with self._lock:
            if self._closed:
                raise PoolClosed("the inspection pool is closed")
            self._started = True
            while len(self._slots) < self._wanted:
                self._add_slot()
        if not self.processes:
            self._mark_up()

    def _mark_up(self) -> None:
        """The start-up is over: deadlines count from now for the jobs that waited for it."""
        with self._lock:
            if self._up_at is None:
                self._up_at = time.monotonic()
                self.up.set_result(None)

    def _deadline(self, job: _Job) -> float:
        """When a job is due (time.monotonic())."""
        up_at = self._up_at if self._up_at is not None else time.monotonic()
        return max(job.submitted, up_at) + job.allowed

    def _add_slot(self) -> None:
        """One more slot and its worker (the lock held)."""
        self._numbered += 1
        slot = _Slot(self, self._numbered)
        self._slots.append(slot)
        slot.start()

    def resize(self, workers: int) -> None:
        """Keep this many workers started; those beyond it exit once idle for IDLE_EXIT seconds."""
        if workers <= 0:
            raise ValueError("workers: must be positive")
        with self._lock:
            self._wanted = workers
            started = self._started
        if started:
            self.start()

    def submit(self, body: BodyJob, deadline: float) -> Future[Reading]:
        """Queue a reading due within deadline seconds (after `up`); PoolBusy if too many wait, PoolClosed."""
        if not self._started:
            self.start()
        if self._closed:
            raise PoolClosed("the inspection pool is closed")
        waiting = self._queue.qsize()
        if waiting >= QUEUE_PER_WORKER * self.max_workers:
            raise PoolBusy(f"{waiting} readings wait for {self.max_workers} busy workers")
        future: Future[Reading] = Future()
        self._queue.put(_Job(body, time.monotonic(), deadline, future))
        return future

    def _next_job(self, slot: _Slot) -> _Job | None:
        """The next job for a slot; None when the slot is to stop (closed, or an extra one idle too long)."""
        while True:
            try:
                return self._queue.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if len(self._slots) > self._wanted:
                        self._slots.remove(slot)
                        return None

    def _took(self) -> None:
        """A slot started a job: when none is left idle, start one more (up to max_workers)."""
        with self._lock:
            self._busy += 1
            if self._busy >= len(self._slots) and len(self._slots) < self.max_workers and not self._closed:
                self._add_slot()

    def _finished(self) -> None:
        """A slot finished a job."""
        with self._lock:
            self._busy -= 1

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now (none with processes=False)."""
        with self._lock:
            return [s.worker.pid for s in self._slots if s.worker is not None]

    def _left(self, slot: _Slot) -> None:
        """A slot's thread ends."""
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)

    def close(self, timeout: float = 10.0) -> None:
        """Kill the workers and reap them; jobs not yet run fail with PoolClosed."""
        with self._lock:
            self._closed = True
            slots = list(self._slots)
        self._mark_up()
        for _ in slots:
            self._queue.put(None)
        for slot in slots:
            worker = slot.worker
            if worker is not None:
                with contextlib.suppress(OSError, ValueError):
                    worker.process.kill()
        for slot in slots:
            slot.join(timeout)
        self._fail_queued()

    def _fail_queued(self) -> None:
        """Settle every job still queued with PoolClosed."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(PoolClosed("the inspection pool closed"))

