"""The tests' one harness: real processes on loopback, and the helpers the test modules share.

Nothing here is mocked: the proxy is `clickguard run` in its own process, the
upstreams are real HTTP servers bound to distinct 127.0.0.x addresses, and the
client speaks HTTP/1.1 (and CONNECT + TLS) to the proxy over TCP. A proxy can
run in a network namespace of its own with only loopback up (`start_proxy(...,
isolated_network=True)`), so a name it looks up fails on the machine instead of
asking a name server elsewhere.

Also here: the audit writer children that the durability tests kill or trace
(`kill_after_acks`, `traced_syscalls`), and the policy and click-link helpers.
Fixtures that use these live in `tests/conftest.py`; test modules never import
each other.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clickguard.mail.links import ClickContext, make_click_link
from clickguard.tokens import load_or_create_key

REPO = Path(__file__).resolve().parents[1]
# The real threat-intel snapshots: ../shared/data beside the clone, or $CLICKGUARD_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("CLICKGUARD_SHARED_DATA") or REPO.parent / "shared" / "data")
FEEDS = SHARED_DATA / "feeds"
# What a browser sends for a page navigation: the requests the proxy judges and audits.
HTML = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document"}
THINGBOT_ORIGIN = "198.51.100.7"  # the e-mail origin the click tests' feeds list

type Route = tuple[int, Mapping[str, str], bytes]


def required_tool(name: str, hint: str) -> str:
    """The path of a program the tests need; fail (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH; the tests need it: {hint}")
    return path


def write_policy(directory: Path, body: str) -> Path:
    """Write a policy file (dedented) as directory/policy.yaml and return its path."""
    path = directory / "policy.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def continue_link(page: str) -> str:
    """The href of the warn page's continue link."""
    match = re.search(r'id="continue" href="([^"]+)"', page)
    assert match, page
    return match.group(1).replace("&amp;", "&")


def click_link(certs: Path, target: str, origin: str | None) -> str:
    """A click link signed with the proxy's key, as `clickguard rewrite` would make it."""
    context = ClickContext(origin, "00112233aabbccdd", "user@example.com", "plain", int(time.time()))
    return make_click_link(target, context, load_or_create_key(certs / "clickguard.key"),
                           click_host="clickguard.local")


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
    isolated: bool = False  # in a network namespace of its own: reached from a thread inside it

    def log(self) -> str:
        """Everything the proxy printed so far."""
        return self.log_path.read_text(errors="replace")

    def audit(self) -> list[dict[str, Any]]:
        """Every complete audit record so far."""
        if not self.audit_path.exists():
            return []
        lines = self.audit_path.read_text().splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.endswith("\n")]

    def audit_of(self, base: str) -> list[dict[str, Any]]:
        """The audit records of URLs under base (an upstream's http://host:port): one test's own."""
        return [record for record in self.audit() if record["url"].startswith(base + "/")]

    def audit_of_ref(self, ref: str) -> list[dict[str, Any]]:
        """The records of one decision or click: its own (ref) and those that name it (click_id)."""
        return [record for record in self.audit() if ref in (record["ref"], record.get("click_id"))]

    def wait_for_audit(self, predicate: Callable[[list[dict[str, Any]]], bool],
                       what: str = "the audit records") -> list[dict[str, Any]]:
        """Poll the audit log until predicate(records) holds (records written off the request path)."""
        wait_until(lambda: predicate(self.audit()), 30, what)
        return self.audit()

    def get(self, url: str, headers: Mapping[str, str] | None = None,
            timeout: float = 30.0) -> Response:
        """GET an http:// URL through the proxy (absolute-form request)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return self._exchange(conn, url, headers)

    def get_tls(self, host: str, port: int, path: str = "/",
                headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> Response:
        """GET https://host:port/path through the proxy (CONNECT, then TLS trusting the proxy CA)."""
        context = ssl.create_default_context(cafile=str(self.certs / "mitmproxy-ca-cert.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=context)
        conn.set_tunnel(host, port)
        return self._exchange(conn, path, headers)

    def _exchange(self, conn: http.client.HTTPConnection, target: str,
                  headers: Mapping[str, str] | None) -> Response:
        """One GET on conn (connected from inside the proxy's network namespace when it has one)."""
        def exchange() -> Response:
            try:
                conn.request("GET", target, headers=dict(headers or {}))
                r = conn.getresponse()
                return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
            finally:
                conn.close()

        return in_network_of(self.process.pid, exchange) if self.isolated else exchange()

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Poll the proxy's output until text appears."""
        wait_until(lambda: text in self.log(), timeout, f"proxy log line {text!r}")

    def stop(self) -> None:
        """Terminate the proxy and wait for it."""
        terminate(self.process)


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process and wait for it; SIGKILL after 20 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ops_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET path from an ops listener on 127.0.0.1: status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


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


# Run as `python -c ISOLATE PROGRAM ARGS…`: PROGRAM in a new network namespace where only loopback
# is up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP; struct ifreq is 40 bytes). Needs root.
ISOLATE = """
import fcntl, os, socket, struct, sys
os.unshare(os.CLONE_NEWNET)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    request = struct.pack("16sH22x", b"lo", 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, request))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
os.execv(sys.argv[1], sys.argv[1:])
"""


def in_network_of[T](pid: int, action: Callable[[], T]) -> T:
    """action() run in a thread that joined process pid's network namespace (its sockets stay there)."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            with open(f"/proc/{pid}/ns/net", "rb") as namespace:
                os.setns(namespace.fileno(), os.CLONE_NEWNET)  # this thread only
            outcome.append((True, action()))
        except BaseException as e:  # handed to the caller's thread, raised there
            outcome.append((False, e))

    thread = threading.Thread(target=run, name=f"in-network-of-{pid}")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def start_proxy(workdir: Path, policy: Path, certs: Path, *extra: str,
                env: Mapping[str, str] | None = None, as_mitmdump_script: bool = False,
                isolated_network: bool = False) -> Proxy:
    """Start `clickguard run` (or plain mitmdump with the addon script) on a free port; wait for it.

    With isolated_network the proxy runs in a network namespace of its own with only loopback up:
    it reaches no upstream but its own address, and no name server.
    """
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
    if isolated_network:
        if os.geteuid() != 0:
            pytest.fail("a proxy in a network namespace of its own needs root (unshare); CI runs as root")
        args = [sys.executable, "-c", ISOLATE, *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    proxy = Proxy(port, process, workdir, audit_path, certs, log_path, isolated_network)

    def listening() -> bool:
        return port_open("127.0.0.1", port)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"proxy exited with {process.returncode}:\n{proxy.log()}")
        log = proxy.log()
        # (Listening is logged after the namespace exists: the check below looks in the right one.)
        return "clickguard: policy" in log and "proxy listening at" in log and (
            in_network_of(process.pid, listening) if isolated_network else listening())

    wait_until(ready, 60, "the proxy to listen")
    if isolated_network:
        assert os.readlink(f"/proc/{process.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    return proxy


class ProxyPool:
    """Proxies started for a test or for a module; one per distinct policy unless asked for a private one.

    A shared proxy serves every test of its module that asks for the same policy, extra arguments
    and files: such tests use their own upstream hosts and read their own audit records
    (`Proxy.audit_of`, `Proxy.audit_of_ref`), so none depends on another or on their order.
    """

    def __init__(self, certs: Path, new_workdir: Callable[[], Path]) -> None:
        self.certs = certs
        self.new_workdir = new_workdir
        self.shared: dict[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]], Proxy] = {}
        self.started: list[Proxy] = []

    def __call__(self, policy: str, *extra: str, files: Mapping[str, str] | None = None,
                 private: bool = False, isolated_network: bool = False) -> Proxy:
        """A running proxy with this policy (dedented) and these files beside it."""
        key = (policy, (*extra, f"isolated={isolated_network}"), tuple(sorted((files or {}).items())))
        proxy = None if private else self.shared.get(key)
        if proxy is not None:
            assert proxy.process.poll() is None, f"the shared proxy exited:\n{proxy.log()}"
            return proxy
        workdir = self.new_workdir()
        for name, text in (files or {}).items():
            (workdir / name).write_text(text)
        proxy = start_proxy(workdir, write_policy(workdir, policy), self.certs, *extra,
                            isolated_network=isolated_network)
        self.started.append(proxy)
        if not private:
            self.shared[key] = proxy
        return proxy

    def stop_all(self) -> None:
        """Stop every proxy this pool started."""
        for proxy in self.started:
            proxy.stop()


# --- the audit writer in a child process, acknowledging each record on its stdout -------------------

def _read_acks(proc: subprocess.Popen[bytes], wanted: int, deadline: float) -> list[str]:
    """Refs the child acknowledged ("acked REF" lines), read from its stdout until `wanted` of them."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    acked: list[str] = []
    while len(acked) < wanted:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(acked)} acks before the deadline"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"child exited after {len(acked)} acks: rc={proc.wait()}"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        acked += [line.decode().split()[1] for line in lines if line.startswith(b"acked ")]
    return acked


def kill_after_acks(script: str, args: list[str], wanted: int, cwd: Path) -> list[str]:
    """Run a writer child (python -c script args), read `wanted` acknowledged refs, SIGKILL it mid-write."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        acked = _read_acks(proc, wanted, time.monotonic() + 120)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


# --- system calls, as Debian's strace sees them ------------------------------------------------------

STRACE_HINT = "apt-get install -y strace (.ci/run does it)"


@dataclass(frozen=True)
class Syscall:
    """One traced system call on a file descriptor: where it started and ended in the trace."""

    pid: int
    name: str
    fd: int
    path: str  # what the descriptor was open on (strace -y): a file, pipe:[…], socket:[…]
    data: bytes | None  # the buffer written, for write-like calls
    result: str
    start: int  # line number of its entry in the trace
    end: int  # line number of its return (the same line unless another thread ran meanwhile)


_CALL = re.compile(r"(?P<name>\w+)\((?P<args>.*)")
_RESULT = re.compile(r"(?P<args>.*)\) += (?P<result>-?\d+|\?)(?: \w+ \(.*\))?$")
_FD_ARG = re.compile(r"(?P<fd>\d+)<(?P<path>[^>]*)>")
_DATA_ARG = re.compile(r'\d+<[^>]*>, "(?P<data>(?:[^"\\]|\\.)*)"')
_C_ESCAPE = re.compile(rb'\\(?:([0-7]{1,3})|x([0-9a-fA-F]{2})|(.))', re.S)
_C_SIMPLE = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"v": b"\v", b"f": b"\f", b"a": b"\a", b"b": b"\b",
             b"e": b"\x1b"}


def _unescape(text: str) -> bytes:
    """The bytes of a string as strace prints it (C escapes, octal for the unprintable)."""
    def one(match: re.Match[bytes]) -> bytes:
        octal, hexa, char = match.groups()
        if octal is not None:
            return bytes([int(octal, 8) & 0xFF])
        if hexa is not None:
            return bytes([int(hexa, 16)])
        return _C_SIMPLE.get(char, char)

    return _C_ESCAPE.sub(one, text.encode("latin-1"))


def parse_strace(text: str) -> list[Syscall]:
    """The calls on file descriptors in `strace -f -y -qq -o FILE` output, in the order strace saw them.

    With -f a call interrupted by another thread's is printed in two lines,
    `NAME(ARGS <unfinished ...>` and `<... NAME resumed>ARGS) = RESULT`; they are joined here.
    """
    calls: list[Syscall] = []
    pending: dict[int, tuple[str, str, int]] = {}  # pid: (name, args so far, start line)
    for number, line in enumerate(text.splitlines()):
        pid_text, _, rest = line.partition(" ")
        if not pid_text.isdigit():
            continue
        pid, rest = int(pid_text), rest.lstrip()
        if rest.startswith(("---", "+++")):
            continue  # signals and exits
        if rest.startswith("<... "):
            name, args_before, start = pending.pop(pid)
            rest = args_before + rest.split(" resumed>", 1)[1]
        else:
            call = _CALL.match(rest)
            if call is None:
                continue
            name, rest, start = call["name"], call["args"], number
            if rest.endswith(" <unfinished ...>"):
                pending[pid] = (name, rest.removesuffix(" <unfinished ...>"), start)
                continue
        result = _RESULT.match(rest)
        fd = _FD_ARG.match(rest)
        if result is None or fd is None:
            continue
        data = _DATA_ARG.match(rest)
        calls.append(Syscall(pid, name, int(fd["fd"]), fd["path"],
                             _unescape(data["data"]) if data else None, result["result"], start, number))
    return calls


def traced_syscalls(argv: list[str], trace: Path, calls: str, cwd: Path) -> list[Syscall]:
    """Run argv to its end under strace (all threads), tracing `calls` (strace -e trace=…); what it did."""
    strace = required_tool("strace", STRACE_HINT)
    done = subprocess.run([strace, "-f", "-y", "-qq", "-s", "65536", "-e", f"trace={calls}", "-o", str(trace),
                           *argv], cwd=cwd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return parse_strace(trace.read_text(encoding="latin-1"))


# --- Debian's Squid, run for a test (the parent proxy, or a site running clickguard's helper) -----

SQUID_BASE_CONF = """\
http_port {host}:{port}
pid_filename none
access_log stdio:{work}/access.log
cache_log {work}/cache.log
cache_store_log none
cache deny all
cache_mem 8 MB
pinger_enable off
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
{user}
{rules}
"""


@dataclass
class RunningSquid:
    """A Squid started by `running_squid_with`: its address, a directory its helpers can read, its log."""

    host: str
    port: int
    work: Path  # owned by Squid's user: its logs, and files its helpers read
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """http://host:port"""
        return f"http://{self.host}:{self.port}"

    def log(self) -> list[str]:
        """The access log's lines so far (one per request or tunnel, written when it ends)."""
        try:
            return (self.work / "access.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_for(self, *texts: str) -> str:
        """The first access log line containing every text, waiting for it."""
        def found() -> str | None:
            return next((line for line in self.log() if all(t in line for t in texts)), None)

        wait_until(lambda: found() is not None, 30, f"squid to log {texts!r}")
        return found() or ""


def _python_hidden_from(user: str) -> Path | None:
    """The folder hiding this interpreter from user (pyenv under /root, mode 0700), None if it can read it."""
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    for folder in Path(sys.executable).resolve().parents:
        st = folder.stat()
        if st.st_uid != uid and not st.st_mode & 0o005:
            return folder
    return None


def _exposing(hidden: Path, staging: Path, argv: list[str]) -> list[str]:
    """argv run in a mount namespace of its own where `hidden` is an open tmpfs showing only the interpreter.

    For root on a machine whose Python lives under /root: Squid runs its helpers as its
    own user, which could not start this checkout's clickguard otherwise. Only the
    namespace's processes see the change.
    """
    executable = Path(sys.executable).resolve()
    inner = hidden / executable.relative_to(hidden).parts[0]  # e.g. /root/.pyenv
    script = (f"mount --bind {inner} {staging} && mount -t tmpfs -o mode=755 none {hidden} && "
              f"mkdir -p {inner} && mount --bind {staging} {inner} && exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


@contextmanager
def running_squid_with(conf_dir: Path, rules: str, *, host: str = "127.0.0.61",
                       before_start: Callable[[Path], object] | None = None) -> Iterator[RunningSquid]:
    """Squid in the foreground (-N) on host with these access rules, stopped at the end.

    As root, Squid drops to Debian's `proxy` user: its logs and whatever its helpers read
    go in a directory of its own under /tmp (`work`, filled by before_start), copied
    beside the config at the end. The rules may name `{work}` for that directory.
    """
    import pwd
    import tempfile

    squid = required_tool("squid", "apt-get install squid")
    port = free_port(host)
    as_root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(prefix="clickguard-squid-"))
    work.chmod(0o755)
    if before_start is not None:
        before_start(work)
    argv = [squid, "-N", "-n", f"clickguard{port}", "-f", str(conf_dir / "squid.conf")]
    if as_root:
        proxy_user = pwd.getpwnam("proxy")
        for item in [work, *work.rglob("*")]:
            os.chown(item, proxy_user.pw_uid, proxy_user.pw_gid)
        hidden = _python_hidden_from("proxy")
        if hidden is not None:
            staging = Path(tempfile.mkdtemp(prefix="clickguard-python-"))
            argv = _exposing(hidden, staging, argv)
    (conf_dir / "squid.conf").write_text(SQUID_BASE_CONF.format(
        host=host, port=port, work=work, rules=rules.format(work=work),
        user="cache_effective_user proxy" if as_root else ""))
    output = (conf_dir / "squid.out").open("wb")
    process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"squid exited with {process.returncode}: "
                                     f"{(conf_dir / 'squid.out').read_text(errors='replace')}")
            return port_open(host, port)

        wait_until(ready, 60, "squid to listen")
        yield RunningSquid(host, port, work, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()
        for name in ("access.log", "cache.log"):
            if (work / name).exists():
                shutil.copy(work / name, conf_dir / name)
        shutil.rmtree(work, ignore_errors=True)
        for segment in Path("/dev/shm").glob(f"clickguard{port}-*"):
            segment.unlink(missing_ok=True)  # left only by a Squid that had to be killed


# --- a TCP server that speaks no protocol -------------------------------------------------------


@dataclass
class RawServer:
    """A TCP server that answers whatever it is sent with fixed bytes, and keeps what each connection sent."""

    port: int = 0
    connections: list[bytes] = field(default_factory=list)  # the first bytes of each


@contextmanager
def raw_server(host: str = "127.0.0.1", port: int = 0, reply: bytes = b"raw reply") -> Iterator[RawServer]:
    """Run a RawServer (it speaks no TLS: a ClientHello that reaches it gets the reply back), then close."""
    server = RawServer()
    listener = socket.create_server((host, port))
    server.port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    server.connections.append(conn.recv(65536))
                    conn.sendall(reply)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (Linux)
        listener.close()
        thread.join(10)


# --- Redis, the state workers and nodes share ---------------------------------------------------


@dataclass
class RunningRedis:
    """Debian's redis-server on a loopback port, with nothing saved to disk; stop() and start() again."""

    host: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clickguard is given (cluster.redis, --redis)."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port: the data it held is gone); wait until it answers."""
        server = required_tool("redis-server", "apt-get install redis-server")
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [server, "--bind", self.host, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--daemonize", "no", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"redis-server exited with {process.returncode}: "
                                     f"{(self.workdir / 'redis.log').read_text(errors='replace')}")
            return self.command("PING") == "PONG"

        wait_until(answers, 30, "redis-server to answer")

    def stop(self) -> None:
        """Stop it (SIGTERM) and wait."""
        if self.process is not None:
            terminate(self.process)
        self.process = None

    def command(self, *args: str) -> str | None:
        """One command over a fresh connection (redis-cli's plain output), None if it is not answering."""
        result = subprocess.run(["redis-cli", "-h", self.host, "-p", str(self.port), *args],
                                capture_output=True, text=True, timeout=10, check=False)
        return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


class Node:
    """A proxy (a node of a cluster) and its ops listener."""

    def __init__(self, proxy: Proxy, ops: int) -> None:
        self.proxy, self.ops = proxy, ops

    def readyz(self) -> tuple[int, dict[str, Any]]:
        """/readyz: status and JSON."""
        status, _, body = ops_get(self.ops, "/readyz")
        return status, json.loads(body)

    def metric(self, line_start: str) -> float | None:
        """The value of the first /metrics sample line that starts so, None if there is none."""
        for line in ops_get(self.ops, "/metrics")[2].decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return None

    def connected(self) -> bool:
        """Whether this node reaches Redis now."""
        return self.metric("clickguard_shared_connected ") == 1.0


@contextmanager
def running_redis(workdir: Path, host: str = "127.0.0.1") -> Iterator[RunningRedis]:
    """A RunningRedis for the duration of the block."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis = RunningRedis(host, free_port(host), workdir)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
