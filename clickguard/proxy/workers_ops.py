"""The ops listener of `clickguard run --workers N`, served by the supervisor from what its workers answer.

One ops port per worker would clash, so each worker serves its own ops listener on a unix socket
in the state directory (``--ops unix:PATH``), and the supervisor serves the configured address
(``--ops``, the policy's ``ops.listen``) with the same bounds as a worker's (`clickguard.proxy.ops`:
`MAX_CLIENTS`, `MAX_HEAD`, `READ_TIMEOUT`, `WRITE_TIMEOUT`, `METRICS_FRESH`); each worker is asked
within `ASK_TIMEOUT`, its answer read up to `MAX_ANSWER` bytes.

- ``/healthz``: 200 while at least one worker listens, else 503.
- ``/readyz``: 200 only when every worker listens and answers its own /readyz with 200;
  ``{"ready": …, "workers": [{"worker": 1, "pid": …, "ready": …, "reasons": […], "degraded": […]}, …]}``,
  each worker's JSON kept as it answered (a worker down has its state in ``reasons``).
- ``/metrics``: every worker's Prometheus text merged (`merge_metrics`): each sample with a
  ``worker="I"`` label, each family's HELP and TYPE once, then the supervisor's own series
  (``clickguard_workers``, ``clickguard_workers_up``, ``clickguard_worker_restarts_total{worker}``).
- ``/proxy.pac``, ``/wpad.dat``: as a listening worker answers it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickguard.policy.ops import HostPort
from clickguard.proxy.ops import METRICS_FRESH, BoundedListener, _bind, _plain
from clickguard.web.pac import PAC_PATHS
from clickguard.web.pages import Page

if TYPE_CHECKING:
    from clickguard.proxy.workers import Supervisor, Worker

logger = logging.getLogger("clickguard.supervisor")

ASK_TIMEOUT = 5.0  # seconds a worker has to answer the supervisor
MAX_ANSWER = 16 << 20  # bytes of a worker's answer (its /metrics is tens of kilobytes)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PASSED_HEADERS = ("Content-Type", "Cache-Control")


def bind(address: HostPort) -> socket.socket:
    """The supervisor's listening socket (OSError if it cannot be had)."""
    return _bind(address)


@dataclass
class Answer:
    """What a worker's ops listener answered."""

    status: int
    headers: dict[str, str]
    body: bytes


async def ask(path: Path, target: str) -> Answer:
    """GET target from a worker's ops listener at the unix socket path (OSError, TimeoutError, ValueError)."""
    async with asyncio.timeout(ASK_TIMEOUT):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = b""
            while chunk := await reader.read(65536):
                raw += chunk
                if len(raw) > MAX_ANSWER:
                    raise ValueError(f"answer to {target} over {MAX_ANSWER} bytes")
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return Answer(status, headers, body)


@dataclass
class _Family:
    """One metric family of the merged text: its HELP and TYPE lines, its samples from every worker."""

    help: str | None = None
    type: str | None = None
    samples: list[str] = field(default_factory=list)


def _labelled(sample: str, worker: int) -> str:
    """A sample line with worker="I" as its first label."""
    name = _METRIC_NAME.match(sample)
    end = name.end() if name else 0
    label = f'worker="{worker}"'
    if sample[end:end + 1] == "{":
        rest = sample[end + 1:]
        return f"{sample[:end]}{{{label}{'' if rest.startswith('}') else ','}{rest}"
    return f"{sample[:end]}{{{label}}}{sample[end:]}"


def merge_metrics(scrapes: list[tuple[int, str]]) -> str:
    """Prometheus texts of several workers as one: worker="I" on each sample, each family together once.

    The text format wants all samples of a family together under one HELP and one TYPE line;
    a sample belongs to the family whose header it follows (a histogram's _bucket, _sum and
    _count lines included), or, before any header, to the family of its own name.
    """
    families: dict[str, _Family] = {}
    for worker, text in scrapes:
        current: _Family | None = None
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    current = families.setdefault(parts[2], _Family())
                    if parts[1] == "HELP":
                        current.help = current.help or line
                    else:
                        current.type = current.type or line
                continue  # other comments say nothing a scraper reads
            if current is None:
                name = _METRIC_NAME.match(line)
                family = families.setdefault(name.group() if name else line, _Family())
            else:
                family = current
            family.samples.append(_labelled(line, worker))
    out: list[str] = []
    for family in families.values():
        out += [line for line in (family.help, family.type) if line is not None]
        out += family.samples
    return "\n".join(out) + "\n" if out else ""


def _own_metrics(workers: list[Worker]) -> str:
    """The supervisor's series: workers wanted, listening, restarted."""
    lines = ["# HELP clickguard_workers Worker processes the supervisor keeps running.",
             "# TYPE clickguard_workers gauge", f"clickguard_workers {len(workers)}",
             "# HELP clickguard_workers_up Worker processes listening now.",
             "# TYPE clickguard_workers_up gauge",
             f"clickguard_workers_up {sum(w.listening for w in workers)}",
             "# HELP clickguard_worker_restarts_total Times a worker was started again after it exited.",
             "# TYPE clickguard_worker_restarts_total counter"]
    lines += [f'clickguard_worker_restarts_total{{worker="{w.index}"}} {w.restarts}' for w in workers]
    return "\n".join(lines) + "\n"


class SupervisorOps(BoundedListener):
    """The supervisor's ops listener, with the bounds of the proxy's own (`BoundedListener`)."""

    def __init__(self, supervisor: Supervisor, sock: socket.socket) -> None:
        super().__init__(sock)
        self.supervisor = supervisor
        self._metrics: tuple[float, bytes] = (float("-inf"), b"")

    async def respond(self, method: str, path: str) -> Page:
        """The page for one GET or HEAD request."""
        workers = self.supervisor.workers
        if path == "/healthz":
            if any(w.listening for w in workers):
                return _plain(200, b"ok\n")
            return _plain(503, b"no worker is listening\n")
        if path == "/readyz":
            states = await asyncio.gather(*(self._readiness(w) for w in workers))
            ready = all(state["ready"] for state in states)
            body = json.dumps({"ready": ready, "workers": states}).encode()
            return _plain(200 if ready else 503, body + b"\n", "application/json")
        if path == "/metrics":
            return _plain(200, await self._rendered(), "text/plain; version=0.0.4; charset=utf-8")
        if path in PAC_PATHS:
            return await self._from_a_worker(path)
        return _plain(404, b"not found: /healthz, /readyz, /metrics, /proxy.pac\n")

    async def _readiness(self, worker: Worker) -> dict[str, Any]:
        """One worker's entry in /readyz: its own JSON, or why it cannot be asked."""
        state: dict[str, Any] = {"worker": worker.index, "pid": worker.pid}
        if not worker.listening:
            return {**state, "ready": False, "reasons": [f"not listening: {worker.down_since}"]}
        try:
            answer = await ask(worker.ops_socket, "/readyz")
            own = json.loads(answer.body)
        except (OSError, TimeoutError, ValueError) as e:
            return {**state, "ready": False, "reasons": [f"its ops listener does not answer: {e!r}"]}
        if not isinstance(own, dict):
            return {**state, "ready": False, "reasons": ["its /readyz is not a JSON object"]}
        return {**state, **own, "ready": answer.status == 200 and own.get("ready") is True}

    async def _rendered(self) -> bytes:
        """/metrics merged, asked of the workers again only when the last one is older than METRICS_FRESH."""
        at, text = self._metrics
        now = time.monotonic()
        if now - at < METRICS_FRESH:
            return text
        workers = self.supervisor.workers
        listening = [w for w in workers if w.listening]
        answers = await asyncio.gather(*(ask(w.ops_socket, "/metrics") for w in listening),
                                       return_exceptions=True)
        scrapes = [(w.index, a.body.decode("utf-8", errors="replace"))
                   for w, a in zip(listening, answers, strict=True)
                   if isinstance(a, Answer) and a.status == 200]
        text = (merge_metrics(scrapes) + _own_metrics(workers)).encode()
        self._metrics = (time.monotonic(), text)
        return text

    async def _from_a_worker(self, path: str) -> Page:
        """What the first listening worker that answers says to path."""
        for worker in self.supervisor.workers:
            if not worker.listening:
                continue
            try:
                answer = await ask(worker.ops_socket, path)
            except (OSError, TimeoutError, ValueError):
                continue
            page = _plain(answer.status, answer.body)
            page.headers.update({k: v for k, v in answer.headers.items() if k in _PASSED_HEADERS})
            return page
        return _plain(503, b"no worker is listening\n")
