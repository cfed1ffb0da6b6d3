"""`make soak`: a realistic mix at full load through the proxy; errors, memory growth, audit completeness.

Not a test: it prints figures and exits 1 when a goal is missed (issue 11). Black-box:
`clickguard run` in its own process on loopback, upstreams in another (`--serve`), and
`--workers` client threads that speak HTTP/1.1 to the proxy as browsers do (absolute-form
for http, CONNECT + TLS trusting the proxy's CA for the dashboard), each from a client
address of its own in 127.0.0.0/8, as fast as the proxy answers, for `--seconds`.

The mix, per scenario a worker picks (weights in `SCENARIOS`):

- browse: a page of an ordinary site (`localhost`, which resolves to 127.0.0.1), then its
  style sheet, script and image (`Sec-Fetch-Dest: style|script|image`);
- downloads from that site: a 1.5 MiB zip (allowed, streamed past `inspect.max_body`) and a
  Windows executable (`response.drive_by` from an ordinary server: warned);
- a camera on a bare IP (`Server: Hikvision-Webs`): its page (`landing.appliance`, allowed,
  and recorded), a snapshot image, and an ELF bot binary (blocked after inspection);
- a host a Thingbot feed lists: a page and an image, blocked before connecting;
- a warn-listed host: warned, continued through the warn page's continue link (from a fresh
  client address each time, so every cycle starts with a warning), then allowed;
- click links signed with the proxy's key (`clickguard.mail.links.make_click_link`): to the
  site (303, then the hop), to the Thingbot (blocked), and tampered (`link.bad_signature`);
- the dashboard over https: the login form, a login with a hash `clickguard admin
  hash-password` made, five or six views, the http -> https redirect, and a logout.

Every answer is checked (status, `X-Clickguard-Action`, body); anything else is an error of
its kind, with the first samples printed. The audit records each answer implies are counted
by event, from the rules in README (Audit, Dashboard) and `clickguard/proxy/guard.py`: a
navigation allowed writes `decision`; a sub-resource allowed writes nothing; a block or warn
writes its event; an inspection that finds something writes `response` too; a click, a hop
and a continue one each; every login attempt `admin_login` (the JSON Lines log only). At the
end the proxy is stopped (SIGTERM) and the log's lines are counted against those. The policy
sets `inspect.learn: false`, so a camera's binary is blocked by inspection every time rather
than by request once the camera is learned (which would make the count depend on timing).

The warm-up: first a covering round, each worker playing every scenario once (the dashboard
first, and only by `WARMUP_LOGINS` of them, all at once, so both of the dashboard's password
threads check several logins), then the mix until `--warmup` seconds (by default as long as
the proxy keeps its windowed state, `WARMUP_MAX`); the RSS after the warm-up is taken at
whichever ends later. Every path the mix takes has then filled what it fills once (caches,
pools, allocator arenas, tables that forget after a while), so growth after it is growth that
goes on.

Lines printed: requests and errors by kind; proxy RSS after the warm-up and at the end (and
its inspection workers'), growth; audit records written vs expected, by event, and the
references shown on block and warn pages found in the log; requests/s; proxy log problems.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import http.client
import io
import itertools
import json
import random
import re
import signal
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.hostile import CAMERA
from bench.run import BIN, cpu_seconds, free_port, wait_port
from clickguard.inspection.pool import workers_of
from clickguard.mail.clicks import FOLLOW_SECONDS
from clickguard.mail.links import ClickContext, make_click_link
from clickguard.tokens import load_or_create_key
from clickguard.web.lockout import CHECK_BURST

CLICK_HOST = "clickguard.local"
SITE_HOST = "127.0.0.1"  # reached as localhost: an ordinary site by name
CAMERA_HOST = "127.0.88.1"  # a camera on a bare address
THINGBOT_HOST = "127.0.88.2"  # listed in the Thingbot feed; nothing listens there
WARNED_HOST = "127.0.88.3"  # listed in a feed whose category policy warns about
ADMIN_USER = "soak"
ADMIN_PASSWORD = "soak-password-not-secret"
GROWTH_GOAL = 10.0  # percent, RSS at the end over RSS after the warm-up
TIMEOUT = 120.0  # seconds a request may take under full load before it counts as failed
# Workers that log in to the dashboard at once in the covering round: several checks on each of
# its password threads, within the burst of checks its rate limit lets through at once.
WARMUP_LOGINS = min(8, CHECK_BURST)
# The longest the warm-up lasts by default: until the proxy's windowed state is at its steady size.
# The click trail keeps each click's expected hops FOLLOW_SECONDS (120 s), warn grants a minute
# here (`warn.continue_minutes`): both grow with the load until their first entries expire.
WARMUP_MAX = max(60.0, FOLLOW_SECONDS)

NAVIGATE = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none", "Sec-Fetch-User": "?1"}


def fetch_headers(dest: str) -> dict[str, str]:
    """What a browser sends for a page's own sub-resource of that destination."""
    accept = {"image": "image/avif,image/webp,*/*", "style": "text/css,*/*;q=0.1"}.get(dest, "*/*")
    return {"Accept": accept, "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": dest,
            "Sec-Fetch-Site": "same-origin"}


# --- what the upstreams serve ------------------------------------------------------------------------

def site_page() -> bytes:
    """An ordinary article page (~9 KB) with its style sheet, script and image, and links within the site."""
    links = "".join(f'<li><a href="/page/{i}">Related story {i}</a></li>' for i in range(40))
    text = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12 + "</p>"
    return ("<!doctype html><html><head><meta charset=utf-8><title>Local news</title>"
            '<link rel="stylesheet" href="/static/site.css"><script src="/static/app.js" defer></script>'
            '</head><body><header><img src="/static/logo.png" alt="logo"></header>'
            f"<main><h1>Story of the day</h1>{text * 8}<ul>{links}</ul></main>"
            "<script>document.documentElement.className = 'js';</script></body></html>\n").encode()


def camera_page() -> bytes:
    """A network camera's login page."""
    return (b"<!doctype html><html><head><title>Web Client</title></head><body>"
            b'<form action="/ISAPI/Security/userCheck" method="post"><input name="username">'
            b'<input type="password" name="password"><button>Login</button></form></body></html>\n')


def elf_binary(size: int = 65536) -> bytes:
    """A big-endian MIPS ELF executable, as IoT bots drop them."""
    ident = b"\x7fELF" + bytes([1, 2, 1, 0]) + bytes(8)
    header = ident + struct.pack(">HHIIIIIHHHHHH", 2, 8, 1, 0x400000, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    return header + bytes(range(256)) * ((size - len(header)) // 256) + bytes((size - len(header)) % 256)


def pe_binary(size: int = 262144) -> bytes:
    """A Windows executable: DOS header pointing at a PE header (x86-64), padded."""
    dos = bytearray(128)
    dos[0:2] = b"MZ"
    struct.pack_into("<HHH", dos, 2, 0x90, 3, 0)
    struct.pack_into("<I", dos, 0x3C, 0x80)
    coff = struct.pack("<HHIIIHH", 0x8664, 3, 0x65A1B2C3, 0, 0, 240, 0x0022)
    optional = bytearray(240)
    struct.pack_into("<H", optional, 0, 0x20B)
    struct.pack_into("<H", optional, 68, 2)
    head = bytes(dos) + b"PE\0\0" + coff + bytes(optional)
    return head + bytes(range(256)) * ((size - len(head)) // 256) + bytes((size - len(head)) % 256)


def zip_archive(size: int = 3 * 2**19) -> bytes:
    """A zip of a PDF report and incompressible data, about `size` bytes: an ordinary download."""
    buffer = io.BytesIO()
    noise = random.Random(11).randbytes(size)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        # A fixed time: both processes (upstream and client) build the same bytes.
        entry = zipfile.ZipInfo("quarterly-report.pdf", date_time=(2026, 12, 1, 9, 0, 0))
        archive.writestr(entry, b"%PDF-1.7\n" + noise)
    return buffer.getvalue()


class Route(NamedTuple):
    """One answer an upstream gives to every path under a prefix."""

    content_type: str
    body: bytes
    extra: tuple[tuple[str, str], ...] = ()


def routes() -> dict[str, dict[str, Route]]:
    """Per upstream role, path prefix -> answer (the longest prefix of the path's first segment wins)."""
    html = "text/html; charset=utf-8"
    return {
        "site": {
            "/page/": Route(html, site_page()),
            "/article/": Route(html, site_page()),
            "/static/site.css": Route("text/css", b"body{font:16px/1.5 sans-serif;margin:2em}\n" * 40),
            "/static/app.js": Route("application/javascript",
                                    b"function init(){document.body.dataset.ready='1'}\n" * 40),
            "/static/logo.png": Route("image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 24),
            "/files/report.zip": Route("application/zip", zip_archive(),
                                       (("Content-Disposition", 'attachment; filename="report.zip"'),)),
            "/files/setup.exe": Route("application/octet-stream", pe_binary(),
                                      (("Content-Disposition", 'attachment; filename="setup.exe"'),)),
        },
        "camera": {
            "/": Route(html, camera_page()),
            "/snapshot.jpg": Route("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8),
            "/bins/Mozi.m": Route("application/octet-stream", elf_binary()),
        },
        "warned": {"/": Route(html, site_page())},
    }


def route_for(table: Mapping[str, Route], path: str) -> Route | None:
    """The answer for a path: an exact entry, else the entry of its first segment ("/page/…")."""
    path = path.split("?", 1)[0]
    if path in table:
        return table[path]
    first = "/" + path.lstrip("/").split("/", 1)[0] + "/"
    return table.get(first) if first != "//" else None


def server_name(role: str) -> str:
    """The Server header of a role: the camera's gives it away, the others look ordinary."""
    return CAMERA if role == "camera" else "nginx/1.24.0"


async def serve(hosts: Mapping[str, str]) -> None:
    """Serve every role on its host (a free port each) with keep-alive; print {role: port} once listening."""
    table = routes()

    def handler(role: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    path = head.split(b" ", 2)[1].decode("latin-1")
                    route = route_for(table[role], path)
                    status = b"200 OK" if route else b"404 Not Found"
                    route = route or Route("text/plain", b"not found\n")
                    extra = "".join(f"{k}: {v}\r\n" for k, v in route.extra)
                    writer.write(b"HTTP/1.1 " + status + (
                        f"\r\nServer: {server_name(role)}\r\nContent-Type: {route.content_type}\r\n{extra}"
                        f"Content-Length: {len(route.body)}\r\n\r\n").encode() + route.body)
                    await writer.drain()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
                pass
            finally:
                writer.close()

        return handle

    servers = {role: await asyncio.start_server(handler(role), host, 0, backlog=1024)
               for role, host in hosts.items()}
    print(json.dumps({role: s.sockets[0].getsockname()[1] for role, s in servers.items()}), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers.values()))


def start_upstreams() -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """The upstreams in a process of their own (the clients' threads keep this one busy); their ports."""
    hosts = {"site": SITE_HOST, "camera": CAMERA_HOST, "warned": WARNED_HOST}
    process = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(hosts)],
                               stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once every server listens
    if not line:
        raise SystemExit(f"the upstreams did not start (exit status {process.wait()})")
    return process, {role: int(port) for role, port in json.loads(line).items()}


# --- the proxy ---------------------------------------------------------------------------------------

def password_hash(password: str) -> str | None:
    """A dashboard password hash, made by the command IT uses; None (said why) when it fails."""
    done = subprocess.run([str(BIN / "clickguard"), "admin", "hash-password"], input=password + "\n",
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        # The dashboard's logins then fail, each an error with its reason; the rest of the soak runs.
        print(f"soak: clickguard admin hash-password failed, no dashboard user: {done.stderr.strip()}")
        return None
    return done.stdout.splitlines()[0].strip()


def write_policy(workdir: Path) -> Path:
    """The soak's policy: a Thingbot feed, a warn-listed host, no learning, a dashboard user."""
    (workdir / "thingbots.txt").write_text(f"{THINGBOT_HOST}\n")
    (workdir / "warned.txt").write_text(f"{WARNED_HOST}\n")
    policy = workdir / "policy.yaml"
    policy.write_text(
        "feeds:\n"
        "  - {name: thingbots, format: ip, path: thingbots.txt}\n"
        "  - {name: watch, format: ip, path: warned.txt, category: suspicious}\n"
        "actions:\n"
        "  landing.suspicious: warn\n"
        "warn: {continue_minutes: 1}\n"
        "inspect: {learn: false}\n"
        "audit: {log: audit.jsonl, store: audit.sqlite}\n")
    hashed = password_hash(ADMIN_PASSWORD)
    if hashed is not None:
        with open(policy, "a") as f:
            f.write(f"admin:\n  users:\n    {ADMIN_USER}: '{hashed}'\n")
    return policy


def start_proxy(workdir: Path, policy: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`clickguard run` on a free loopback port, its output in workdir/proxy.log; wait until it listens."""
    port = free_port()
    log = open(workdir / "proxy.log", "wb")  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen(
        [str(BIN / "clickguard"), "run", "--listen", f"127.0.0.1:{port}", "--policy", str(policy),
         "--state-dir", str(workdir / "var"), "--certs", str(workdir / "certs")],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    log.close()
    try:
        wait_port(port, process)
    except SystemExit:
        print((workdir / "proxy.log").read_text(errors="replace")[-3000:])
        raise
    return process, port


def rss(pid: int) -> float:
    """The memory (MiB) a process holds now; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def workers_rss(pid: int) -> tuple[float, int]:
    """The memory (MiB) the proxy's inspection workers hold now, summed (shared pages counted in each),
    and how many there are (the pool starts more under load, up to its surge)."""
    workers = workers_of(pid)
    return sum(rss(worker) for worker in workers), len(workers)


# --- the clients -------------------------------------------------------------------------------------

class Answer(NamedTuple):
    """What the client got."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Client:
    """One browser behind the proxy: a client address, keep-alive connections, a cookie jar."""

    def __init__(self, proxy_port: int, source: str, tls: ssl.SSLContext) -> None:
        self.proxy_port = proxy_port
        self.source = source
        self.tls = tls  # trusts the proxy's CA
        self.connections: dict[str, http.client.HTTPConnection] = {}  # "" for http, else host:port
        self.cookies: dict[str, str] = {}

    def _connection(self, parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        """The kept-alive connection for a URL's scheme (one CONNECT tunnel per https host)."""
        key = parts.netloc if parts.scheme == "https" else ""
        conn = self.connections.get(key)
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection("127.0.0.1", self.proxy_port, timeout=TIMEOUT,
                                                   context=self.tls, source_address=(self.source, 0))
                conn.set_tunnel(parts.hostname or "", parts.port or 443)
            else:
                conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=TIMEOUT,
                                                  source_address=(self.source, 0))
            self.connections[key] = conn
        return conn

    def send(self, method: str, url: str, headers: Mapping[str, str],
             form: Mapping[str, str] | None = None) -> Answer:
        """One request through the proxy; raises OSError or HTTPException when it fails."""
        parts = urllib.parse.urlsplit(url)
        conn = self._connection(parts)
        target = url if parts.scheme == "http" else parts.path + (f"?{parts.query}" if parts.query else "")
        sent = dict(headers)
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies and parts.hostname == CLICK_HOST:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, target, body=body, headers=sent)
            response = conn.getresponse()
            got = response.getheaders()
            answer = Answer(response.status, {k.lower(): v for k, v in got}, response.read())
        except (OSError, http.client.HTTPException):
            conn.close()
            del self.connections["" if parts.scheme == "http" else parts.netloc]
            raise
        for name, value in got:
            if name.lower() == "set-cookie":
                cookie, _, rest = value.partition("=")
                if "max-age=0" in value.lower():
                    self.cookies.pop(cookie, None)
                else:
                    self.cookies[cookie] = rest.split(";", 1)[0]
        return answer

    def close(self) -> None:
        """Close every connection."""
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()


class Expect(NamedTuple):
    """What an answer of one kind must be, and the audit records (by event) it implies."""

    status: int
    action: str | None  # X-Clickguard-Action; None: the header must be absent
    records: Mapping[str, int]
    audited_anyway: bool = False  # the records are written whatever the answer (a login attempt)

    def problem(self, answer: Answer, body: bytes | None) -> str | None:
        """Why an answer is not what was expected, or None."""
        action = answer.headers.get("x-clickguard-action")
        if answer.status != self.status or action != self.action:
            return (f"answered {answer.status} (action {action}), expected {self.status} "
                    f"(action {self.action}): {gist(answer.body)}")
        if body is not None and answer.body != body:
            return f"body of {len(answer.body)} bytes differs from the upstream's {len(body)}"
        return None


def gist(body: bytes) -> str:
    """What a body says, in short: a page's text without its markup, style and script, else its start."""
    text = body[:20000].decode("utf-8", "replace")
    if text.lstrip().startswith("<"):
        text = re.sub(r"(?s)<(style|script)\b.*?</\1>|<[^>]+>", " ", text)
    return repr(" ".join(html.unescape(text).split())[:240])


DECISION = {"decision": 1}
KINDS: dict[str, Expect] = {
    "page": Expect(200, None, DECISION),
    "subresource": Expect(200, None, {}),
    "download zip": Expect(200, None, DECISION),
    "download exe (warned)": Expect(403, "warn", {"decision": 1, "response": 1}),
    "camera page": Expect(200, None, {"decision": 1, "response": 1}),
    "camera image": Expect(200, None, {}),
    "camera ELF (blocked)": Expect(403, "block", {"decision": 1, "response": 1}),
    "thingbot page (blocked)": Expect(403, "block", DECISION),
    "thingbot image (blocked)": Expect(403, "block", DECISION),
    "warned": Expect(403, "warn", DECISION),
    "continue": Expect(303, None, {"continue": 1}),
    "continued": Expect(200, None, DECISION),
    "click": Expect(303, None, {"click": 1}),
    "click hop": Expect(200, None, {"hop": 1}),
    "click to thingbot (blocked)": Expect(403, "block", {"click": 1}),
    "click tampered (blocked)": Expect(403, "block", {"click": 1}),
    "dashboard login form": Expect(200, None, {}),
    "dashboard login": Expect(303, None, {"admin_login": 1}, audited_anyway=True),
    "dashboard view": Expect(200, None, {}),
    "dashboard http -> https": Expect(301, None, {}),
    "dashboard logout": Expect(303, None, {}),
}
SAMPLES = 3  # errors shown per kind


@dataclass
class Tally:
    """A worker's counts: requests and errors by kind, audit records expected by event, refs seen."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)
    expected: Counter[str] = field(default_factory=Counter)
    refs: set[str] = field(default_factory=set)

    def error(self, kind: str, text: str) -> None:
        """Count an error of a kind, keeping its first samples."""
        self.errors[kind] += 1
        kept = self.samples.setdefault(kind, [])
        if len(kept) < SAMPLES and text not in kept:
            kept.append(text)

    def merge(self, other: Tally) -> None:
        """Add another worker's counts to these."""
        self.requests.update(other.requests)
        self.errors.update(other.errors)
        self.expected.update(other.expected)
        self.refs |= other.refs
        for kind, texts in other.samples.items():
            kept = self.samples.setdefault(kind, [])
            kept.extend([t for t in texts if t not in kept][:max(0, SAMPLES - len(kept))])


class Setup(NamedTuple):
    """What the workers share: where the proxy and upstreams are, the signing key, the CA."""

    proxy_port: int
    tls: ssl.SSLContext  # trusts the proxy's CA
    key: bytes
    site: str  # http://localhost:PORT
    camera: str
    thingbot: str
    warned: str


_fresh_clients = itertools.count(1)  # next() is atomic under the GIL: each warn cycle its own address


def fresh_address() -> str:
    """A client address not used before in this run (127.128.0.1 onwards), for one warn cycle."""
    n = next(_fresh_clients) - 1
    line, host = divmod(n, 254)  # hosts .1 to .254 of each /24
    return f"127.{128 + (line >> 8 & 127)}.{line & 255}.{host + 1}"


class Worker:
    """One client thread: picks scenarios by weight until told to stop."""

    def __init__(self, number: int, setup: Setup, stop: threading.Event) -> None:
        self.number = number
        self.setup = setup
        self.stop = stop
        self.rng = random.Random(number)
        self.client = Client(setup.proxy_port, f"127.0.99.{number + 1}", setup.tls)
        self.tally = Tally()
        self.clicks = 0
        self.last_ref: str | None = None  # a click's reference, for the dashboard's click view

    def run(self, covered: threading.Barrier) -> None:
        """The covering round, then scenarios by weight until the stop event; connections closed at last."""
        names, weights = zip(*SCENARIOS.items(), strict=True)
        try:
            for name in self.covering_round():
                self.play(name)
            # BrokenBarrierError: the run gave up waiting for the others (it says so); the load goes on
            with contextlib.suppress(threading.BrokenBarrierError):
                covered.wait()
            while not self.stop.is_set():
                self.play(self.rng.choices(names, weights)[0])
        finally:
            self.client.close()

    def covering_round(self) -> list[str]:
        """Every scenario once, shuffled; the dashboard first, only for the first WARMUP_LOGINS workers."""
        others = [name for name in SCENARIOS if name != "dashboard"]
        self.rng.shuffle(others)
        return (["dashboard"] if self.number < WARMUP_LOGINS else []) + others

    def play(self, name: str) -> None:
        """One scenario; a bug of the soak's own is counted and shown, and the load goes on."""
        try:
            getattr(self, name)()
        except Exception as e:
            self.tally.error(f"{name} (the soak itself)", f"{type(e).__name__}: {e}")

    def fetch(self, kind: str, url: str, headers: Mapping[str, str] = NAVIGATE, *, method: str = "GET",
              form: Mapping[str, str] | None = None, body: bytes | None = None,
              client: Client | None = None, check: Callable[[Answer], str | None] | None = None
              ) -> Answer | None:
        """One request checked against its kind; the answer, or None when it was an error (counted)."""
        expect = KINDS[kind]
        self.tally.requests[kind] += 1
        try:
            answer = (client or self.client).send(method, url, headers, form)
        except (OSError, http.client.HTTPException) as e:
            self.tally.error(kind, f"{method} {url[:160]}: {type(e).__name__}: {e}")
            if expect.audited_anyway:
                self.tally.expected.update(expect.records)
            return None
        ref = answer.headers.get("x-clickguard-ref")
        if ref:
            self.tally.refs.add(ref)
        problem = expect.problem(answer, body) or (check(answer) if check else None)
        if problem is None or expect.audited_anyway:
            self.tally.expected.update(expect.records)
        if problem is not None:
            self.tally.error(kind, f"{method} {url[:160]}: {problem}")
            return None
        return answer

    # -- scenarios (SCENARIOS below names them with their weights)

    def browse(self) -> None:
        """A page of the ordinary site and its three sub-resources."""
        site = self.setup.site
        page = self.fetch("page", f"{site}/page/{self.rng.randrange(1000)}", body=SITE_PAGE)
        if page is None:
            return
        for path, dest in (("/static/site.css", "style"), ("/static/app.js", "script"),
                           ("/static/logo.png", "image")):
            self.fetch("subresource", site + path, fetch_headers(dest), body=SITE[path].body)

    def download_zip(self) -> None:
        """A zip from the ordinary site: allowed whole."""
        self.fetch("download zip", f"{self.setup.site}/files/report.zip", body=SITE["/files/report.zip"].body)

    def download_exe(self) -> None:
        """A Windows executable from the ordinary site: warned (response.drive_by)."""
        self.fetch("download exe (warned)", f"{self.setup.site}/files/setup.exe")

    def camera(self) -> None:
        """The camera's page (an appliance, allowed), its snapshot, and the bot binary it serves."""
        camera = self.setup.camera
        self.fetch("camera page", f"{camera}/", body=CAMERA_PAGE)
        self.fetch("camera image", f"{camera}/snapshot.jpg", fetch_headers("image"))
        self.fetch("camera ELF (blocked)", f"{camera}/bins/Mozi.m")

    def thingbot(self) -> None:
        """A page and an image from a listed Thingbot: blocked before connecting."""
        self.fetch("thingbot page (blocked)", f"{self.setup.thingbot}/i.sh")
        self.fetch("thingbot image (blocked)", f"{self.setup.thingbot}/pixel.gif", fetch_headers("image"))

    def warn_and_continue(self) -> None:
        """A warn-listed host from a new client: warned, continued through the link, then allowed."""
        client = Client(self.setup.proxy_port, fresh_address(), self.setup.tls)
        target = f"{self.setup.warned}/"
        try:
            warned = self.fetch("warned", target, client=client, check=continue_link_problem)
            if warned is None:
                return
            link = continue_link(warned.body)
            assert link is not None  # continue_link_problem saw it
            went = self.fetch("continue", link, client=client, check=location_is(target))
            if went is not None:
                self.fetch("continued", target, client=client, body=SITE_PAGE)
        finally:
            client.close()

    def click_link(self, target: str) -> str:
        """A click link to target, signed with the proxy's key as `clickguard rewrite` makes it."""
        context = ClickContext(None, f"{self.number:08x}{self.clicks:08x}", "user@example.com", "plain",
                               int(time.time()))
        self.clicks += 1
        return make_click_link(target, context, self.setup.key, click_host=CLICK_HOST)

    def click(self) -> None:
        """A click link to the site: redirected, then the hop to the target."""
        target = f"{self.setup.site}/article/{self.number}-{self.clicks}"
        if self.fetch("click", self.click_link(target), check=location_is(target)) is not None:
            self.fetch("click hop", target, body=SITE_PAGE)

    def click_blocked(self) -> None:
        """A click link to the listed Thingbot: blocked at the click."""
        answer = self.fetch("click to thingbot (blocked)", self.click_link(f"{self.setup.thingbot}/x"))
        if answer is not None:
            self.last_ref = answer.headers.get("x-clickguard-ref")

    def click_tampered(self) -> None:
        """A click link whose target was changed after signing: link.bad_signature."""
        link = self.click_link(f"{self.setup.site}/article/{self.number}-{self.clicks}")
        self.fetch("click tampered (blocked)", link.replace("/article/", "/articl3/"))

    def dashboard(self) -> None:
        """Log in over https, view the dashboard's pages, follow the http redirect, log out."""
        base = f"https://{CLICK_HOST}"
        form = self.fetch("dashboard login form", f"{base}/admin/login", check=csrf_problem)
        if form is None:
            return
        login = {"user": ADMIN_USER, "password": ADMIN_PASSWORD, "csrf": csrf_of(form.body) or ""}
        if self.fetch("dashboard login", f"{base}/admin/login", {**NAVIGATE, "Origin": base,
                      "Sec-Fetch-Site": "same-origin"}, method="POST", form=login,
                      check=location_is("/admin")) is None:
            return
        views = ["/admin?since=24h", "/admin/feeds", "/admin/policy", "/admin/host?h=localhost",
                 "/admin?since=7d"]
        if self.last_ref:
            views.append(f"/admin/click?id={self.last_ref}")
        page = None
        for view in views:
            page = self.fetch("dashboard view", base + view, check=logged_in_problem) or page
        self.fetch("dashboard http -> https", f"http://{CLICK_HOST}/admin/feeds",
                   check=location_is(f"{base}/admin/feeds"))
        csrf = re.search(rb'id=logout>.*?name="csrf" value="([^"]+)"', page.body) if page else None
        if csrf:
            self.fetch("dashboard logout", f"{base}/admin/logout", {**NAVIGATE, "Origin": base},
                       method="POST", form={"csrf": csrf[1].decode()}, check=location_is("/admin/login"))
        self.client.cookies.clear()


# Scenario (a Worker method) -> weight. A browse is four requests, so pages and their
# sub-resources are most of the traffic, as in an office; a dashboard visit logs in once
# (a password check costs the proxy ~0.1 s of CPU), so it is rare.
SCENARIOS: dict[str, float] = {
    "browse": 40, "download_zip": 2, "download_exe": 3, "camera": 5, "thingbot": 5,
    "warn_and_continue": 5, "click": 12, "click_blocked": 3, "click_tampered": 2, "dashboard": 0.5,
}
SITE = routes()["site"]
SITE_PAGE = SITE["/page/"].body
CAMERA_PAGE = camera_page()


def continue_link(page: bytes) -> str | None:
    """The href of the warn page's continue link."""
    match = re.search(rb'id="continue" href="([^"]+)"', page)
    return match[1].decode().replace("&amp;", "&") if match else None


def continue_link_problem(answer: Answer) -> str | None:
    """Why a warn page cannot be continued, or None."""
    return None if continue_link(answer.body) else "the warn page has no continue link"


def csrf_of(page: bytes) -> str | None:
    """The CSRF token of the login form."""
    match = re.search(rb'name="csrf" value="([^"]+)"', page)
    return match[1].decode() if match else None


def csrf_problem(answer: Answer) -> str | None:
    """Why a login form cannot be posted, or None."""
    return None if csrf_of(answer.body) else "the login form has no CSRF token"


def logged_in_problem(answer: Answer) -> str | None:
    """Why a dashboard page is not a logged-in view, or None."""
    return None if b"id=logout" in answer.body else f"not a logged-in page: {gist(answer.body)}"


def location_is(url: str) -> Callable[[Answer], str | None]:
    """A check that a redirect goes to url."""
    def check(answer: Answer) -> str | None:
        location = answer.headers.get("location")
        if location == url:
            return None
        error = re.search(rb'id="error">([^<]*)<', answer.body)
        return f"redirected to {location!r}, expected {url!r}" + (f": {error[1]!r}" if error else "")

    return check


# --- the run ----------------------------------------------------------------------------------------

class Memory(NamedTuple):
    """RSS (MiB) of the proxy and of its inspection workers, and the proxy's CPU seconds, at one moment."""

    seconds: float
    proxy: float
    workers: float
    worker_count: int
    cpu: float

    @classmethod
    def now(cls, pid: int, start: float) -> Memory:
        """The figures of the proxy with this pid now, `start` being the load's start (monotonic)."""
        try:
            cpu = cpu_seconds(pid)
        except OSError:  # the proxy is gone: its requests fail and say so
            cpu = float("nan")
        return cls(time.monotonic() - start, rss(pid), *workers_rss(pid), cpu)


def run_load(setup: Setup, pid: int, seconds: float, warmup: float, workers: int
             ) -> tuple[Tally, list[Memory], float, float]:
    """The workers for `seconds`; RSS sampled after the warm-up and every tenth of the run after it.

    Returns (tally, samples, elapsed, end of the warm-up): the warm-up ends at `warmup` seconds,
    or when every worker has played its covering round if that is later.
    """
    stop = threading.Event()
    covered = threading.Barrier(workers + 1)
    crew = [Worker(n, setup, stop) for n in range(workers)]
    threads = [threading.Thread(target=w.run, args=(covered,), name=f"soak-{w.number}", daemon=True)
               for w in crew]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    memory = [Memory.now(pid, start)]
    try:
        covered.wait(2 * TIMEOUT * len(SCENARIOS))
    except threading.BrokenBarrierError:
        print(f"soak: the covering round did not end in {2 * TIMEOUT * len(SCENARIOS):.0f} s; going on")
    covering = time.monotonic() - start
    memory.append(Memory.now(pid, start))
    warm_end = min(seconds, max(warmup, covering))
    for mark in sorted({warm_end, *(seconds * i / 10 for i in range(1, 11) if seconds * i / 10 > warm_end)}):
        stop.wait(max(0.0, start + mark - time.monotonic()))
        memory.append(Memory.now(pid, start))
    stop.set()
    for thread in threads:
        thread.join(TIMEOUT + 10)
    elapsed = time.monotonic() - start
    tally = Tally()
    for worker in crew:
        tally.merge(worker.tally)
    print(f"soak: covering round (every scenario once a worker, {min(WARMUP_LOGINS, workers)} dashboard "
          f"logins at once) done at {covering:.0f} s; warm-up ended at {warm_end:.0f} s")
    return tally, memory, elapsed, warm_end


def stop_proxy(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then its exit status (killed after 60 s: then not a clean stop)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9


def audit_log(path: Path) -> tuple[Counter[str], set[str], int]:
    """(records by event, their refs, torn or unreadable lines) of the JSON Lines log."""
    events: Counter[str] = Counter()
    refs: set[str] = set()
    bad = 0
    if not path.exists():
        return events, refs, bad
    with open(path, "rb") as log:
        for line in log:
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not line.endswith(b"\n"):
                bad += 1
            events[str(record.get("event"))] += 1
            refs.add(str(record.get("ref")))
    return events, refs, bad


def stored_records(path: Path) -> int | None:
    """Rows in the audit store, None when it cannot be read."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(connection.execute("SELECT count(*) FROM decisions").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.Error:
        return None


def proxy_problems(log: Path) -> list[str]:
    """The proxy's error and warning lines (tracebacks by their last line)."""
    lines = log.read_text(errors="replace").splitlines()
    found = [line for line in lines if re.search(r"\b(error|ERROR|Error|warning|WARNING|exception)\b", line)]
    found += [lines[i - 1] for i, line in enumerate(lines) if i and line.startswith("Traceback")]
    return found


def report_requests(tally: Tally, elapsed: float, cpu: float) -> int:
    """Print requests and errors by kind, and the proxy's CPU time (`cpu` seconds); the number of errors."""
    total = sum(tally.requests.values())
    errors = sum(tally.errors.values())
    print(f"soak: {total:,} requests in {elapsed:.0f} s, {total / elapsed:,.0f} requests/s, "
          f"{errors:,} errors (goal 0); proxy CPU {cpu:.0f} s ({100 * cpu / elapsed:.0f}% of a core), "
          f"{1000 * cpu / max(total, 1):.2f} ms a request")
    for kind in [*KINDS, *(k for k in tally.errors if k not in KINDS)]:
        if tally.requests[kind] or tally.errors[kind]:
            print(f"  {kind}: {tally.requests[kind]:,} requests, {tally.errors[kind]:,} errors")
            for sample in tally.samples.get(kind, []):
                print(f"    e.g. {sample}")
    return errors


def report_memory(memory: list[Memory], warmup: float) -> bool:
    """Print RSS after the warm-up (ended at `warmup` s), at the end, the samples; whether growth is met."""
    warm = next(m for m in memory if m.seconds >= warmup - 0.05)
    end = memory[-1]
    growth = 100 * (end.proxy - warm.proxy) / warm.proxy if warm.proxy else float("inf")
    print(f"proxy RSS: {warm.proxy:.0f} MiB after the warm-up ({warm.seconds:.0f} s), {end.proxy:.0f} MiB "
          f"at the end ({end.seconds:.0f} s): growth {growth:+.1f}% (goal < {GROWTH_GOAL:.0f}%); "
          f"inspection workers {warm.workers:.0f} -> {end.workers:.0f} MiB (summed over "
          f"{warm.worker_count} -> {end.worker_count})")
    print("  RSS samples (s: MiB): " + ", ".join(f"{m.seconds:.0f}: {m.proxy:.0f}" for m in memory))
    return growth < GROWTH_GOAL


def report_audit(tally: Tally, workdir: Path) -> bool:
    """Print records written vs expected, by event, and the page refs found; whether they match."""
    events, refs, bad = audit_log(workdir / "audit.jsonl")
    written, expected = sum(events.values()), sum(tally.expected.values())
    print(f"audit records written: {written:,} (JSON Lines, after the proxy stopped); decisions made: "
          f"{expected:,} (goal: equal){'' if written == expected else ' MISMATCH'}")
    for event in sorted(set(events) | set(tally.expected)):
        mark = "" if events[event] == tally.expected[event] else "  <- differs"
        print(f"  {event}: written {events[event]:,}, expected {tally.expected[event]:,}{mark}")
    missing = tally.refs - refs
    print(f"  references shown on block and warn pages: {len(tally.refs):,}, missing from the log: "
          f"{len(missing):,}{' e.g. ' + ', '.join(sorted(missing)[:5]) if missing else ''}; "
          f"torn or unreadable lines: {bad}")
    stored = stored_records(workdir / "audit.sqlite")
    print(f"  audit store rows: {stored if stored is not None else 'unreadable'} "
          f"(the log without its {events['admin_login']:,} logins: {written - events['admin_login']:,})")
    return written == expected and not missing and not bad


def main() -> None:
    """Run the soak and print its figures; exit status 1 when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before the first RSS figure (default: a quarter of the run, "
                             f"at most {WARMUP_MAX:.0f})")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the upstreams' process: {role: host} as JSON
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(json.loads(args.serve)))
        return
    if not 1 <= args.workers <= 200:
        raise SystemExit("--workers must be 1-200 (one client address each, 127.0.99.N)")
    warmup = min(args.seconds, args.warmup if args.warmup is not None else min(WARMUP_MAX, args.seconds / 4))
    with tempfile.TemporaryDirectory(prefix="clickguard-soak-") as tmp:
        workdir = Path(tmp)
        upstreams, ports = start_upstreams()
        proxy: subprocess.Popen[bytes] | None = None
        try:
            key = load_or_create_key(workdir / "certs" / "clickguard.key")  # the proxy reads this one
            proxy, port = start_proxy(workdir, write_policy(workdir))
            tls = ssl.create_default_context(cafile=str(workdir / "certs" / "mitmproxy-ca-cert.pem"))
            setup = Setup(port, tls, key,
                          f"http://localhost:{ports['site']}", f"http://{CAMERA_HOST}:{ports['camera']}",
                          f"http://{THINGBOT_HOST}:8080", f"http://{WARNED_HOST}:{ports['warned']}")
            print(f"soak: {args.workers} workers for {args.seconds:.0f} s through clickguard on port {port} "
                  f"(warm-up {warmup:.0f} s)", flush=True)
            tally, memory, elapsed, warm_end = run_load(setup, proxy.pid, args.seconds, warmup, args.workers)
            status = stop_proxy(proxy)
            errors = report_requests(tally, elapsed, memory[-1].cpu - memory[0].cpu)
            memory_ok = report_memory(memory, warm_end)
            audit_ok = report_audit(tally, workdir)
            problems = proxy_problems(workdir / "proxy.log")
            print(f"proxy stopped with exit status {status} (goal 0); {len(problems)} error or warning "
                  "lines in its log" + "".join(f"\n  {line[:300]}" for line in problems[:10]))
        finally:
            for process in (proxy, upstreams):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait()
    sys.exit(0 if errors == 0 and memory_ok and audit_ok and status == 0 else 1)


if __name__ == "__main__":
    main()
