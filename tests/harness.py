"""Real processes on loopback for the proxy tests: upstream servers, the proxy, a client.

Nothing here is mocked: the proxy is `clickguard run` in its own process, the
upstreams are real HTTP servers bound to distinct 127.0.0.x addresses, and the
client speaks HTTP/1.1 (and CONNECT + TLS) to the proxy over TCP.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

type Route = tuple[int, Mapping[str, str], bytes]


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until predicate() is true; fail with a clear message after timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on host right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Upstream:
    """A real HTTP server on one loopback address, serving fixed routes and recording requests."""

    host: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of each request, lower-case names
    port: int = 0

    def body_for(self, path: str) -> bytes:
        """The default body: says which host served which path."""
        return f"hello from {self.host} at {path}\n".encode()

    @property
    def base(self) -> str:
        """http://host:port"""
        return f"http://{self.host}:{self.port}"


@contextmanager
def upstream(host: str, routes: Mapping[str, Route] | None = None) -> Iterator[Upstream]:
    """Run an Upstream on host (a 127.0.0.x address) for the duration of the block."""
    up = Upstream(host, dict(routes or {}))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            up.requests.append(self.path)
            up.headers.append({k.lower(): v for k, v in self.headers.items()})
            status, headers, body = up.routes.get(self.path, (200, {"Content-Type": "text/plain"},
                                                              up.body_for(self.path)))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    up.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield up
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Proxy:
    """A running `clickguard run` process."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    audit_path: Path
    certs: Path
    log_path: Path

    def log(self) -> str:
        """Everything the proxy printed so far."""
        return self.log_path.read_text(errors="replace")

    def audit(self) -> list[dict[str, Any]]:
        """Every complete audit record so far."""
        if not self.audit_path.exists():
            return []
        lines = self.audit_path.read_text().splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.endswith("\n")]

    def get(self, url: str, headers: Mapping[str, str] | None = None,
            timeout: float = 30.0) -> Response:
        """GET an http:// URL through the proxy (absolute-form request)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", url, headers=dict(headers or {}))
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get_tls(self, host: str, port: int, path: str = "/",
                headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> Response:
        """GET https://host:port/path through the proxy (CONNECT, then TLS trusting the proxy CA)."""
        context = ssl.create_default_context(cafile=str(self.certs / "mitmproxy-ca-cert.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=context)
        conn.set_tunnel(host, port)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Poll the proxy's output until text appears."""
        wait_until(lambda: text in self.log(), timeout, f"proxy log line {text!r}")

    def stop(self) -> None:
        """Terminate the proxy and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Response:
    """What the client got."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", errors="replace")


def start_proxy(workdir: Path, policy: Path, certs: Path, *extra: str,
                env: Mapping[str, str] | None = None, as_mitmdump_script: bool = False) -> Proxy:
    """Start `clickguard run` (or plain mitmdump with the addon script) on a free port; wait for it."""
    port = free_port()
    audit_path = workdir / "audit.jsonl"
    log_path = workdir / f"proxy-{port}.log"
    if as_mitmdump_script:
        args = [str(Path(sys.executable).with_name("mitmdump")), "--listen-host", "127.0.0.1",
                "--listen-port", str(port), "-s", str(REPO / "clickguard" / "addon.py"),
                "--set", f"confdir={certs}", "--set", f"clickguard_policy={policy}",
                "--set", f"clickguard_audit_log={audit_path}",
                "--set", f"clickguard_state_dir={workdir / 'var'}", *extra]
    else:
        args = [sys.executable, "-m", "clickguard.cli", "run", "--listen", f"127.0.0.1:{port}",
                "--policy", str(policy), "--certs", str(certs), "--audit-log", str(audit_path),
                "--state-dir", str(workdir / "var"),
                "--set", "clickguard_reload_ms=200", *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    proxy = Proxy(port, process, workdir, audit_path, certs, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"proxy exited with {process.returncode}:\n{proxy.log()}")
        log = proxy.log()
        return "clickguard: policy" in log and "proxy listening at" in log and port_open("127.0.0.1", port)

    wait_until(ready, 60, "the proxy to listen")
    return proxy
