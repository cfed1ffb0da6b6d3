"""`clickguard run --workers N`: N proxy processes behind one listen address, and their supervisor.

Each worker is a whole `clickguard run` (``--workers 1``) that binds the listen address itself
with SO_REUSEPORT; the kernel spreads new connections over the workers' listening sockets. A
client cannot tell which worker served it, and each worker sees the client's own address, which
per-client continue grants, groups by network and the audit's ``client`` need (a balancer in TCP
mode in front, HAProxy say, would show its own address instead, and mitmproxy does not read the
PROXY protocol). What must agree between workers goes through Redis (`clickguard.cluster`):
``--redis``/``cluster.redis`` when given, else a private redis-server (`PrivateRedis`) on a unix
socket in the state directory, for this supervisor's workers only.

The supervisor (`supervise`):

- checks the listen address can be bound before starting anyone (a port in use is refused, a
  port 0 becomes a free one) and binds the ops listener's address, if any;
- starts the workers, marked by `WORKER_ENV`, and relays their output with ``[worker I]`` before
  each line; a worker that exits before it ever listened stops the start (its error is in the
  output above, the exit status is non-zero); later, a worker that exits is started again after
  `BACKOFF_FIRST` seconds, doubling up to `BACKOFF_MAX`, back to the first after `STABLE_AFTER`
  seconds up;
- passes SIGHUP on to every worker (they reopen the audit log); on SIGTERM or SIGINT stops every
  worker (SIGKILL after `STOP_TIMEOUT`), then the private redis-server, and exits 0. A worker is
  also sent SIGTERM by the kernel if the supervisor dies (PR_SET_PDEATHSIG), and so is the
  private redis-server: nothing is left behind either way. A private redis-server that exits is
  started again (its data is gone; the workers publish theirs again as they reconnect);
- serves the ops listener (`clickguard.proxy.workers_ops`) from what each worker's own listener,
  on a unix socket in the state directory, answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickguard import files
from clickguard.errors import ClickguardError, UsageError
from clickguard.policy.model import Policy, load_policy
from clickguard.policy.ops import HostPort, parse_host_port

logger = logging.getLogger("clickguard.supervisor")

WORKER_ENV = "CLICKGUARD_WORKER"  # the worker's number, 1 to N: set only in worker processes
SUPERVISOR_ENV = "CLICKGUARD_SUPERVISOR"  # the supervisor's pid
LISTENING_FD_ENV = "CLICKGUARD_LISTENING_FD"  # a pipe the worker writes one byte to once it listens
BACKOFF_FIRST = 1.0  # seconds before a worker that exited is started again
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # seconds up after which a worker's next restart waits BACKOFF_FIRST again
STOP_TIMEOUT = 20.0  # seconds a worker has to stop on SIGTERM before it is killed
REDIS_TIMEOUT = 10.0  # seconds the private redis-server has to answer
REDIS_POLL = 1.0  # seconds between looks at whether the private redis-server still runs
MAX_LINE = 1 << 20  # bytes of one output line relayed whole; longer ones are relayed in pieces
_PR_SET_PDEATHSIG = 1  # prctl(2)
# `clickguard run` options the supervisor passes on to each worker, or replaces (listen, ops,
# redis, workers): tests/test_workers.py checks this covers every option of `run`.
PASSED_ON = frozenset({"listen", "policy", "feed", "audit_log", "audit_store", "certs", "state_dir",
                       "ops", "workers", "redis", "set", "check_config", "event_loop"})


def worker_count(args: argparse.Namespace) -> int:
    """How many workers `run` starts: --workers, else the policy's cluster.workers (1 if it is unreadable)."""
    if args.workers is not None:
        return int(args.workers)
    try:
        return load_policy(args.policy).policy.cluster.workers
    except ClickguardError:
        return 1  # the single proxy process reports the policy's problems as it always has


# --- in a worker process -------------------------------------------------------------------------


def become_worker(listen: tuple[str, int]) -> None:
    """In a process the supervisor started (WORKER_ENV set): share the listen port, end with the supervisor.

    Elsewhere (`make run`, one process) nothing changes.
    """
    if WORKER_ENV not in os.environ:
        return
    supervisor = int(os.environ.pop(SUPERVISOR_ENV))
    listening_fd = int(os.environ.pop(LISTENING_FD_ENV))
    os.environ.pop(WORKER_ENV)  # the worker's own children are no workers
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the line above: nobody would stop this one
        raise SystemExit("clickguard worker: the supervisor is gone")
    _listen_with_reuse_port(listen, listening_fd)


def _die_with_parent(sig: signal.Signals) -> None:
    """Have the kernel send sig to this process when its parent dies (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _listen_with_reuse_port(listen: tuple[str, int], listening_fd: int) -> None:
    """Make mitmproxy's bind of the listen address use SO_REUSEPORT; write to listening_fd once bound.

    mitmproxy binds its proxy listener with ``asyncio.start_server(handler, host, port)``
    (mitmproxy/proxy/mode_servers.py) and offers no option for SO_REUSEPORT, which is what lets
    every worker own a listening socket on the same address. So asyncio.start_server is wrapped,
    in worker processes only and for the listen address only: a lone `clickguard run` must keep
    failing on a port in use rather than silently share it with another process of the same user,
    and the ops listener (bound to a socket of its own) is left alone.
    """
    original = asyncio.start_server
    told = False

    async def start_server(client_connected_cb: Any, host: Any = None, port: Any = None,
                           **kwds: Any) -> asyncio.Server:
        """asyncio.start_server, with reuse_port=True for the listen address."""
        nonlocal told
        if (host, port) != listen:
            return await original(client_connected_cb, host, port, **kwds)
        server = await original(client_connected_cb, host, port, reuse_port=True, **kwds)
        if not told:  # the supervisor counts this worker as up from now on
            told = True
            with contextlib.suppress(OSError):  # the supervisor is gone: PDEATHSIG stops us anyway
                os.write(listening_fd, b"1")
            os.close(listening_fd)
        return server

    setattr(asyncio, "start_server", start_server)  # noqa: B010 (mypy: a function is replaced)


# --- the supervisor --------------------------------------------------------------------------------


def supervise(args: argparse.Namespace, count: int) -> int:
    """Run `count` workers with these `run` arguments until SIGTERM or SIGINT; the exit status."""
    files.restrict_umask()
    try:
        policy = load_policy(args.policy).policy
    except OSError as e:
        raise UsageError(f"{args.policy}: {e.strerror or e}") from e
    host, port = args.listen
    port = listen_port(host, port)
    ops_address = _ops_address(args, policy)
    ops_socket = _bind_ops(ops_address) if ops_address is not None else None
    place = Path(args.state_dir).absolute() / "workers"  # the workers' ops sockets, the private redis
    try:
        files.private_dir(Path(args.state_dir))
        place.mkdir(mode=0o700, exist_ok=True)
        place.chmod(0o700)
    except OSError as e:
        raise UsageError(f"--state-dir {args.state_dir}: {e.strerror or e}") from e
    logging.basicConfig(level=logging.INFO, format="[supervisor] %(message)s", stream=sys.stdout)
    private = None
    redis_url = args.redis or policy.cluster.redis
    if redis_url is None:
        private = PrivateRedis.start(place, count)
        redis_url = private.url
    listen = _listen_text(host, port)
    try:
        supervisor = Supervisor(count, lambda i: worker_argv(args, listen, place / f"worker-{i}.sock",
                                                             redis_url), place, ops_address, private)
        return asyncio.run(supervisor.run(ops_socket))
    finally:
        if private is not None:
            private.stop()


def listen_port(host: str, port: int) -> int:
    """The port the workers will share: checked free on every address host names; port 0 picks one.

    The check binds without SO_REUSEPORT, so a listener already there refuses it whether it set
    SO_REUSEPORT or not (a second supervisor on the same port, or a stray worker of a killed one,
    would otherwise share the port silently).
    """
    try:
        places = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--listen {host}:{port}: {e.strerror}") from e
    for family, kind, proto, _name, address in places:
        with socket.socket(family, kind, proto) as probe:
            # As asyncio does: connections of an earlier run in TIME_WAIT do not hold the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((address[0], port, *address[2:]))
            except OSError as e:
                raise UsageError(f"--listen {_listen_text(host, port)}: cannot listen there: "
                                 f"{e.strerror or e}") from e
            port = port or probe.getsockname()[1]
    return port


def _listen_text(host: str, port: int) -> str:
    """HOST:PORT as --listen takes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ops_address(args: argparse.Namespace, policy: Policy) -> HostPort | None:
    """The ops listener's address: --ops, else the policy's ops.listen, else none."""
    if not args.ops:
        return policy.ops.listen
    try:
        return parse_host_port(args.ops)
    except ValueError as e:
        raise UsageError(f"--ops: {e}") from e


def _bind_ops(address: HostPort) -> socket.socket:
    """The supervisor's ops listener socket, bound before any worker starts (UsageError if in use)."""
    from clickguard.proxy.workers_ops import bind  # imports mitmproxy (through ops.py): here only

    try:
        return bind(address)
    except OSError as e:
        raise UsageError(f"ops listener: cannot listen on {address}: {e.strerror or e}") from e


def worker_argv(args: argparse.Namespace, listen: str, ops_socket: Path, redis_url: str) -> list[str]:
    """One worker's command line: the supervisor's `run` arguments, with its own listen, ops and redis."""
    argv = [sys.executable, "-m", "clickguard.cli", "run", "--workers", "1", "--listen", listen,
            "--policy", str(args.policy), "--certs", str(args.certs), "--state-dir", str(args.state_dir),
            "--ops", f"unix:{ops_socket}", "--redis", redis_url, "--event-loop", args.event_loop]
    for feed in args.feed:
        argv += ["--feed", feed]
    if args.audit_log:
        argv += ["--audit-log", str(args.audit_log)]
    if args.audit_store:
        argv += ["--audit-store", str(args.audit_store)]
    for option in args.set:
        argv += ["--set", option]
    return argv


class PrivateRedis:
    """Debian's redis-server for one supervisor's workers: a unix socket in the state dir, nothing saved."""

    def __init__(self, server: str, place: Path) -> None:
        self.server = server
        self.place = place
        self.socket_path = place / "redis.sock"
        self.log_path = place / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL the workers get as --redis."""
        return f"unix://{self.socket_path}"

    @classmethod
    def start(cls, place: Path, count: int) -> PrivateRedis:
        """Start it and wait until it answers; UsageError if redis-server is missing or does not start."""
        server = shutil.which("redis-server")
        if server is None:
            raise UsageError(f"--workers {count} without cluster.redis needs Debian's redis-server: "
                             "apt-get install redis-server, or set cluster.redis")
        redis = cls(server, place)
        redis.launch()
        return redis

    def launch(self) -> None:
        """Start the process (again) and wait until it answers; UsageError if it does not."""
        self.process = process = subprocess.Popen(
            [self.server, "--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.place), "--daemonize", "no",
             "--logfile", str(self.log_path), "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # The supervisor runs no thread (asyncio's pidfd child watcher needs none): preexec_fn is safe.
            preexec_fn=lambda: _die_with_parent(signal.SIGTERM))
        deadline = time.monotonic() + REDIS_TIMEOUT
        while not self.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log_path.read_text(errors="replace").strip() if self.log_path.exists() else ""
                raise UsageError(f"the private redis-server for the workers did not start: {log}")
            time.sleep(0.02)
        logger.info("private redis-server (pid %d) at %s", process.pid, self.url)

    def answers(self) -> bool:
        """Whether it answers PING on its socket."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1.0)
                s.connect(str(self.socket_path))
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop it (SIGTERM, SIGKILL if it lingers) and remove its socket."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


@dataclass
class Worker:
    """One worker slot: its process now, whether it listens, its restarts."""

    index: int
    ops_socket: Path
    process: asyncio.subprocess.Process | None = None
    listening: bool = False  # its proxy listener is bound (it has not exited since)
    ever_listened: bool = False
    started: float = 0.0  # time.monotonic() of the last start
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    down_since: str = "starting"  # why it does not listen now, for /readyz
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def pid(self) -> int | None:
        """The running process's pid."""
        return self.process.pid if self.process is not None and self.process.returncode is None else None


def _exit_text(code: int) -> str:
    """How a process ended, in words."""
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


class Supervisor:
    """Keeps N workers running; relays their output; passes signals on; serves the ops listener."""

    def __init__(self, count: int, argv_of: Callable[[int], list[str]], place: Path,
                 ops_address: HostPort | None, redis: PrivateRedis | None = None) -> None:
        self.workers = [Worker(i, place / f"worker-{i}.sock") for i in range(1, count + 1)]
        self.argv_of = argv_of
        self.ops_address = ops_address
        self.redis = redis
        self.stopping = asyncio.Event()
        self.failed: tuple[Worker, int] | None = None  # a worker that exited before it ever listened
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task kept referenced until it ends."""
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, ops_socket: socket.socket | None) -> int:
        """Start the workers, keep them running until stopped; 0, or the status of one that never started."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._pass_on, signal.SIGHUP)
        ops = None
        if ops_socket is not None:
            from clickguard.proxy.workers_ops import SupervisorOps

            ops = SupervisorOps(self, ops_socket)
            await ops.start()
            logger.info("ops listener at http://%s/ (healthz, readyz, metrics, proxy.pac of every worker)",
                        self.ops_address)
        keepers = [self._spawn(self._keep(worker), f"worker-{worker.index}") for worker in self.workers]
        if self.redis is not None:
            keepers.append(self._spawn(self._keep_redis(self.redis), "private-redis"))
        await self.stopping.wait()
        await asyncio.gather(*(self._stop(worker) for worker in self.workers))
        await asyncio.gather(*keepers)
        if ops is not None:
            await ops.close()
        for worker in self.workers:
            with contextlib.suppress(FileNotFoundError):
                worker.ops_socket.unlink()
        if self.failed is not None:
            worker, code = self.failed
            print(f"clickguard: worker {worker.index} could not start ({_exit_text(code)}); "
                  "its error is above", file=sys.stderr)
            return code if code > 0 else 1
        logger.info("stopped")
        return 0

    async def _keep_redis(self, redis: PrivateRedis) -> None:
        """Start the private redis-server again when it exits; workers serve on their own state meanwhile."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), REDIS_POLL)
            code = redis.process.poll() if redis.process is not None else None
            if code is None or self.stopping.is_set():
                continue
            logger.warning("private redis-server %s; starting it again", _exit_text(code))
            try:
                redis.launch()  # a few milliseconds: the loop waits for it
            except UsageError as e:
                logger.error("%s", e)

    def _pass_on(self, sig: signal.Signals) -> None:
        """Send sig to every running worker."""
        running = [w for w in self.workers if w.pid is not None]
        for worker in running:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(sig)
        logger.info("%s: passed on to workers %s", sig.name, ", ".join(str(w.index) for w in running))

    async def _keep(self, worker: Worker) -> None:
        """Start the worker, and again whenever it exits, until the supervisor stops."""
        while not self.stopping.is_set():
            code = await self._run_once(worker)
            if self.stopping.is_set():
                return
            if not worker.ever_listened:
                logger.error("worker %d %s before it listened: stopping", worker.index, _exit_text(code))
                self.failed = (worker, code)
                self.stopping.set()
                return
            if time.monotonic() - worker.started >= STABLE_AFTER:
                worker.backoff = BACKOFF_FIRST
            delay, worker.backoff = worker.backoff, min(worker.backoff * 2, BACKOFF_MAX)
            worker.down_since = f"{_exit_text(code)}; started again in {delay:g} s"
            logger.warning("worker %d %s; starting it again in %g s", worker.index, _exit_text(code), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            worker.restarts += 1

    async def _run_once(self, worker: Worker) -> int:
        """One life of a worker process: started, its output relayed, its listening noticed; its exit code."""
        readable, writable = os.pipe()
        env = {**os.environ, WORKER_ENV: str(worker.index), SUPERVISOR_ENV: str(os.getpid()),
               LISTENING_FD_ENV: str(writable)}
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv_of(worker.index), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env, pass_fds=(writable,), limit=MAX_LINE)
        finally:
            os.close(writable)
        worker.process, worker.started, worker.down_since = process, time.monotonic(), "starting"
        assert process.stdout is not None
        relay = self._spawn(_relay(worker.index, process.stdout), f"relay-{worker.index}")
        watch = self._spawn(self._notice_listening(worker, readable), f"listening-{worker.index}")
        code = await process.wait()
        worker.listening = False
        watch.cancel()
        # What it printed last (its error) is relayed before the supervisor says it exited; its
        # inspection workers may hold the pipe open a moment longer, so the wait is bounded.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(relay), 2.0)
        return code

    async def _notice_listening(self, worker: Worker, readable: int) -> None:
        """Mark the worker listening when it writes its byte to the pipe (end of file: it never did)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(readable, "rb", buffering=0))
        try:
            if await reader.read(1):
                worker.listening = worker.ever_listened = True
                logger.info("worker %d (pid %s) listening", worker.index, worker.pid)
        finally:
            transport.close()

    async def _stop(self, worker: Worker) -> None:
        """SIGTERM to the worker; SIGKILL after STOP_TIMEOUT."""
        process = worker.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            logger.warning("worker %d did not stop within %g s: killed", worker.index, STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _relay(index: int, output: asyncio.StreamReader) -> None:
    """Copy a worker's output to ours, each line after ``[worker I]``, until it closes."""
    prefix = f"[worker {index}] ".encode()
    out = sys.stdout.buffer
    while True:
        try:
            line = await output.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            line = e.partial  # the last line without its newline, or b"" at the end
            if not line:
                return
            line += b"\n"
        except asyncio.LimitOverrunError as e:
            line = await output.readexactly(e.consumed) + b"\n"
        out.write(prefix + line)
        out.flush()
