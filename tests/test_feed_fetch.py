"""URL feed fetches against real servers on loopback that misbehave on purpose.

Every way a feed server can fail or attack (HTTP errors, silence, trickling, a body
over the cap announced or streamed, a gzip bomb, a body cut short, bytes that do not
decode or parse, an empty copy) leaves the cached copy byte for byte and says why in
the feed's status, naming the feed and the URL. The servers are real: an asyncio
server speaking HTTP/1.1 byte by byte as each test scripts it, and mitmdump as the
environment's forward proxy.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clickguard.errors import PolicyError
from clickguard.intel.sources import FeedSet, FetchTimeouts, feed_session
from clickguard.policy.model import FeedConfig, check_policy, load_policy
from clickguard.policy.upstream import UpstreamConfig
from tests.harness import free_port, port_open, start_proxy, upstream, wait_until, write_policy

type Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CAP = 2**20  # the tests' max_bytes: 1 MiB
QUICK = FetchTimeouts(connect=5, read=5, total=30)  # a hang fails the test instead of stalling it
GOOD = b"# good copy\n127.0.0.3\n127.0.0.4\n"


# --- the scripted feed server ------------------------------------------------------------------


@dataclass
class FeedServer:
    """A real HTTP server on one loopback address; `script` writes its next answers byte by byte."""

    host: str
    script: Script
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)  # headers, lower-case names

    @property
    def url(self) -> str:
        """The feed's URL."""
        return f"http://{self.host}:{self.port}/feed.txt"


def _request_headers(head: bytes) -> dict[str, str]:
    """The header fields of a request head, names lower-cased."""
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)}


@asynccontextmanager
async def feed_server(host: str, script: Script) -> AsyncIterator[FeedServer]:
    """Serve script's answers on host (a 127.0.0.x address) in the test's own event loop."""
    state = FeedServer(host, script)
    writers: set[asyncio.StreamWriter] = set()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            state.requests.append(_request_headers(await reader.readuntil(b"\r\n\r\n")))
            await state.script(reader, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up on purpose: that is what these tests provoke
        finally:
            writer.close()
            writers.discard(writer)

    server = await asyncio.start_server(handle, host, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        # Scripts still writing see their connection closing and return by themselves.
        for writer in list(writers):
            writer.close()
        await asyncio.gather(*handlers)
        server.close()
        await server.wait_closed()


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    """A response head that closes the connection after the answer."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in {**headers, "Connection": "close"}.items())
    return f"HTTP/1.1 {status} Scripted\r\n{fields}\r\n".encode()


def answer(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
           length: int | None = None) -> Script:
    """An answer with a Content-Length (the body's own unless given), then the connection closes."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = len(body) if length is None else length
        writer.write(_head(status, {"Content-Length": str(size), **(headers or {})}) + body)
    return script


def raw(data: bytes) -> Script:
    """These bytes, then the connection closes."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
    return script


def stall(head: bytes) -> Script:
    """This head, then silence until the client hangs up."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()
        await reader.read()  # returns when the client closes the connection
    return script


def _hung_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the client closed the connection (it sends nothing after its request)."""
    return reader.at_eof() or writer.is_closing()


def trickle(every: float) -> Script:
    """A feed one byte at a time, each well inside the read timeout (a slowloris)."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_head(200, {"Content-Length": "100000"}))
        while not _hung_up(reader, writer):
            writer.write(b"\n")
            await writer.drain()
            await asyncio.sleep(every)
    return script


def endless_chunks(piece: bytes) -> Script:
    """A chunked body that would go on far past any cap (no Content-Length to refuse early)."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_head(200, {"Transfer-Encoding": "chunked"}))
        for _ in range(64 * CAP // len(piece)):
            if _hung_up(reader, writer):
                return
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
    return script


# --- helpers ---------------------------------------------------------------------------------


def remote_feed(url: str, tmp_path: Path, **keys: object) -> tuple[FeedSet, FeedConfig]:
    """A FeedSet holding one URL feed named 'remote', cached under tmp_path."""
    feed = FeedConfig.model_validate({"name": "remote", "format": "ip", "url": url,
                                      "max_bytes": CAP, **keys})
    return FeedSet([feed], tmp_path / "cache"), feed


def _files(directory: Path) -> dict[str, bytes]:
    """Every file in directory, by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def bomb() -> bytes:
    """16 MiB of newlines in 16 KiB of gzip: far below the cap on the wire, far past it decoded."""
    return gzip.compress(b"\n" * (16 * CAP), compresslevel=9)


def cut_gzip() -> bytes:
    """A gzip body whose HTTP framing is whole but whose gzip stream stops before its end."""
    whole = gzip.compress(GOOD * 1000)
    return whole[: len(whole) // 2]


BAD_ANSWERS: list[tuple[str, Script, str, FetchTimeouts]] = [
    ("http error", answer(500, b"broken"), "HTTP 500", QUICK),
    ("not found", answer(404, b""), "HTTP 404", QUICK),
    ("partial content", answer(206, GOOD), "HTTP 206", QUICK),
    ("announced over the cap", answer(200, b"", length=CAP + 1),
     f"Content-Length {CAP + 1} is over the cap of {CAP} bytes (max_bytes)", QUICK),
    ("streamed over the cap", endless_chunks(b"127.0.0.9\n" * 6553),
     f"body over the cap of {CAP} bytes (max_bytes); stopped reading", QUICK),
    ("gzip bomb", answer(200, bomb(), {"Content-Encoding": "gzip"}),
     f"body over the cap of {CAP} bytes decoded (max_bytes)", QUICK),
    ("deflate bomb", answer(200, zlib.compress(b"\n" * (16 * CAP)), {"Content-Encoding": "deflate"}),
     f"body over the cap of {CAP} bytes decoded (max_bytes)", QUICK),
    ("unparseable", answer(200, b"not an address\nnor this\n"),
     "/feed.txt:1: ip: not an IP address: 'not an address' (no usable line)", QUICK),
    ("not utf-8", answer(200, b"\xff\xfe\x80\x81\n" * 50), "/feed.txt:1: ip: not an IP address", QUICK),
    ("empty", answer(200, b""), "no entries in 0 bytes", QUICK),
    ("comments only", answer(200, b"# nothing today\n\n"), "no entries in 17 bytes", QUICK),
    ("cut short", answer(200, GOOD[:10], length=len(GOOD) * 40), "ClientPayloadError", QUICK),
    ("chunked cut short", raw(_head(200, {"Transfer-Encoding": "chunked"}) + b"a\r\n127.0.0.3\n\r\n"),
     "ClientPayloadError", QUICK),
    ("gzip that does not decode", answer(200, b"\x1f\x8b\x08\x00garbage" * 20, {"Content-Encoding": "gzip"}),
     "the compressed body does not decode", QUICK),
    ("gzip cut short", answer(200, cut_gzip(), {"Content-Encoding": "gzip"}),
     "the compressed body ends early", QUICK),
    ("bytes after the gzip stream", answer(200, gzip.compress(GOOD) + b"127.0.0.9\n",
                                           {"Content-Encoding": "gzip"}),
     "data after the end of the compressed body", QUICK),
    ("encoding not asked for", answer(200, GOOD, {"Content-Encoding": "br"}),
     "Content-Encoding 'br' was not asked for (gzip, deflate)", QUICK),
    ("stacked encodings", answer(200, gzip.compress(gzip.compress(GOOD)), {"Content-Encoding": "gzip, gzip"}),
     "Content-Encoding 'gzip, gzip' was not asked for", QUICK),
    ("not HTTP", raw(b"SSH-2.0-OpenSSH_9.6\r\n"), "ClientResponseError", QUICK),
    ("silent after the head", stall(_head(200, {"Content-Length": "1000"})),
     "timed out (connect 5s, read 0.3s, total 30s)", FetchTimeouts(connect=5, read=0.3, total=30)),
    ("silent before the head", stall(b""), "timed out (connect 5s, read 0.3s, total 30s)",
     FetchTimeouts(connect=5, read=0.3, total=30)),
    ("trickling", trickle(0.02), "timed out (connect 5s, read 5s, total 0.5s)",
     FetchTimeouts(connect=5, read=5, total=0.5)),
]


# --- the last good copy on every failure ------------------------------------------------------


@pytest.mark.parametrize(("script", "why", "timeouts"), [case[1:] for case in BAD_ANSWERS],
                         ids=[case[0] for case in BAD_ANSWERS])
async def test_bad_answer_keeps_the_cached_copy(tmp_path: Path, script: Script, why: str,
                                                timeouts: FetchTimeouts) -> None:
    async with feed_server("127.0.0.21", answer(200, GOOD, {"ETag": '"v1"'})) as server, \
            feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is True
        assert feeds.status["remote"].last_error is None
        before = _files(tmp_path / "cache")
        assert before["remote.feed"] == GOOD

        server.script = script
        assert await feeds.fetch(session, feed, timeouts=timeouts) is False

    assert _files(tmp_path / "cache") == before  # the copy and its validators, byte for byte
    error = feeds.status["remote"].last_error
    assert error is not None
    assert error.startswith(f"feed remote: {server.url}")
    assert why in error
    assert error.endswith("; keeping the last good copy")
    assert feeds.build_index().counts["remote"] == 2  # and it still serves


async def test_connect_timeout(tmp_path: Path) -> None:
    # A listener with a full backlog never completes another handshake: the connect hangs.
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.22", 0))
        listener.listen(0)
        queued.connect(listener.getsockname())
        url = f"http://127.0.0.22:{listener.getsockname()[1]}/feed.txt"
        feeds, feed = remote_feed(url, tmp_path)
        async with feed_session() as session:
            timeouts = FetchTimeouts(connect=0.3, read=5, total=30)
            assert await feeds.fetch(session, feed, timeouts=timeouts) is False
    error = feeds.status["remote"].last_error
    assert error is not None and f"feed remote: {url}: timed out (connect 0.3s" in error
    assert not (tmp_path / "cache" / "remote.feed").exists()


async def test_connection_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.23:{free_port('127.0.0.23')}/feed.txt"
    feeds, feed = remote_feed(url, tmp_path)
    async with feed_session() as session:
        assert await feeds.fetch(session, feed, timeouts=QUICK) is False
    error = feeds.status["remote"].last_error
    assert error is not None and "ClientConnectorError" in error and url in error


async def test_first_fetch_of_an_empty_feed_is_taken(tmp_path: Path) -> None:
    # With no copy to keep, an empty list is what the server says today: the feed is loaded.
    async with feed_server("127.0.0.24", answer(200, b"# nothing listed\n")) as server, \
            feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is True
    assert feeds.status["remote"].last_error is None
    assert feeds.build_index().counts.get("remote", 0) == 0 and feeds.unloaded() == []


# --- what a good answer does -----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["", "gzip", "x-gzip", "deflate"])
async def test_encoded_feed_is_decoded_and_cached_as_text(tmp_path: Path, encoding: str) -> None:
    text = b"".join(b"10.0.%d.%d\n" % divmod(n, 256) for n in range(50_000))  # 600 KB: many chunks
    body = {"": text, "deflate": zlib.compress(text)}.get(encoding) or gzip.compress(text)
    headers = {"Content-Encoding": encoding} if encoding else {}
    async with feed_server("127.0.0.25", answer(200, body, headers)) as server, \
            feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is True
    assert server.requests[0]["accept-encoding"] == "gzip, deflate"
    assert (tmp_path / "cache" / "remote.feed").read_bytes() == text
    assert feeds.build_index().counts["remote"] == 50_000


async def test_a_body_exactly_at_the_cap_is_taken(tmp_path: Path) -> None:
    line = b"127.0.0.3\n"
    text = line * (CAP // len(line)) + b"#" * (CAP % len(line))
    assert len(text) == CAP
    async with feed_server("127.0.0.26", answer(200, gzip.compress(text), {"Content-Encoding": "gzip"})) \
            as server, feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is True
        assert (tmp_path / "cache" / "remote.feed").read_bytes() == text
        feed = feed.model_copy(update={"max_bytes": CAP - 1})
        server.script = answer(200, text + b"127.0.0.4\n")
        assert await feeds.fetch(session, feed, timeouts=QUICK) is False
    assert "over the cap of 1048575 bytes" in str(feeds.status["remote"].last_error)


async def test_conditional_get_and_not_modified(tmp_path: Path) -> None:
    headers = {"ETag": '"v1"', "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT"}
    async with feed_server("127.0.0.27", answer(200, GOOD, headers)) as server, \
            feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is True
        server.script = answer(500)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is False
        server.script = answer(304)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is False
    assert server.requests[1]["if-none-match"] == '"v1"'
    assert server.requests[2]["if-modified-since"] == headers["Last-Modified"]
    assert feeds.status["remote"].last_error is None  # the server is fine again, the copy current


# --- the event loop keeps running while a big feed is parsed ------------------------------------


async def test_parsing_a_big_feed_leaves_the_event_loop_running(tmp_path: Path) -> None:
    # An ipsum-shaped feed of 150,000 lines (2.1 MB), the size that stalled the proxy in issue 11.
    text = b"".join(b"%d.%d.%d.%d\t%d\n" % (10 + n % 200, n // 256 % 256, n % 256, n % 7 + 1, n % 9 + 1)
                    for n in range(150_000))
    assert len(text) > 2_000_000
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with feed_server("127.0.0.28", answer(200, text)) as server, feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path, format="ipsum", max_bytes=8 * CAP)
        ticking = asyncio.create_task(ticker())
        started = time.perf_counter()
        assert await feeds.fetch(session, feed, timeouts=QUICK) is True
        took = time.perf_counter() - started
        done.set()
        await ticking
    # Parsed on the loop, one gap would be most of the fetch; parsed in a thread, the loop gets
    # its turn every few milliseconds (the GIL's switch interval), whatever the machine's speed.
    assert max(gaps) < took / 5, (max(gaps), took)
    assert len(gaps) > 20, (len(gaps), took)


# --- proxies ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forward_proxy(certs: Path) -> Iterator[str]:
    """mitmdump as a plain forward proxy on loopback, marking what it forwards with a header."""
    port = free_port()
    mitmdump = Path(sys.executable).with_name("mitmdump")
    process = subprocess.Popen(
        [str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"confdir={certs}", "--set", "modify_headers=/~q/X-Forwarded-By/mitmdump"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: process.poll() is None and port_open("127.0.0.1", port), 30, "mitmdump")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.parametrize(("no_proxy", "through_proxy"), [(None, True), ("127.0.0.29", False)])
async def test_proxy_from_the_environment(tmp_path: Path, forward_proxy: str,
                                          monkeypatch: pytest.MonkeyPatch, no_proxy: str | None,
                                          through_proxy: bool) -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy)
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    async with feed_server("127.0.0.29", answer(200, GOOD)) as server, feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, timeouts=QUICK) is True
    assert feeds.status["remote"].last_error is None
    [request] = server.requests
    assert (request.get("x-forwarded-by") == "mitmdump") is through_proxy


async def test_parent_proxy_given_to_fetch(tmp_path: Path, forward_proxy: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)  # none in the environment: the proxy comes from the caller
    async with feed_server("127.0.0.30", answer(200, GOOD)) as server, feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, proxy=forward_proxy, timeouts=QUICK) is True
    assert server.requests[0].get("x-forwarded-by") == "mitmdump"


@pytest.mark.parametrize(("host", "no_proxy", "through_parent"), [
    ("127.0.0.33", [], True),
    ("127.0.0.34", ["127.0.0.34"], False),  # no_proxy: direct
    ("127.0.0.35", ["127.0.0.0/8"], False),
    ("127.0.0.36", ["feeds.example"], True),
])
async def test_the_policys_parent_proxy(tmp_path: Path, forward_proxy: str, monkeypatch: pytest.MonkeyPatch,
                                        host: str, no_proxy: list[str], through_parent: bool) -> None:
    """The policy's upstream.proxy carries feed fetches, except to its no_proxy destinations."""
    _clear_proxy_env(monkeypatch)
    parent = UpstreamConfig.model_validate({"proxy": forward_proxy, "no_proxy": no_proxy})
    async with feed_server(host, answer(200, GOOD)) as server, feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, upstream=parent, timeouts=QUICK) is True
    [request] = server.requests
    assert (request.get("x-forwarded-by") == "mitmdump") is through_parent


async def test_an_unreachable_parent_keeps_the_copy_and_says_why(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    dead = f"http://127.0.0.37:{free_port('127.0.0.37')}"
    parent = UpstreamConfig.model_validate({"proxy": dead})
    async with feed_server("127.0.0.38", answer(200, GOOD)) as server, feed_session() as session:
        feeds, feed = remote_feed(server.url, tmp_path)
        assert await feeds.fetch(session, feed, upstream=parent, timeouts=QUICK) is False
    assert server.requests == []
    error = feeds.status["remote"].last_error
    assert error is not None and "127.0.0.37" in error and "keeping the last good copy" in error


# --- the policy key --------------------------------------------------------------------------


FEED = "feeds:\n  - name: a\n    format: ip\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FEED + "    url: https://example.com/a\n    max_bytes: 0\n",
         "5: feeds[0].max_bytes: must be at least 1 (got 0)"),
        (FEED + "    url: https://example.com/a\n    max_bytes: lots\n",
         "5: feeds[0].max_bytes: must be whole bytes or a size such as 512KiB, 1MiB (got 'lots')"),
        (FEED + "    url: https://example.com/a\n    max_bytes: true\n",
         "5: feeds[0].max_bytes: must be whole bytes"),
        (FEED + "    path: a.txt\n    max_bytes: 1MiB\n",
         "5: feeds[0].max_bytes: max_bytes only applies to feeds fetched by url"),
    ],
)
def test_max_bytes_errors_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    (tmp_path / "a.txt").write_text("1.2.3.4\n")
    [problem] = check_policy(path)
    assert str(problem).startswith(f"{path}:{expected}")
    with pytest.raises(PolicyError):
        load_policy(path)


@pytest.mark.parametrize(("value", "expected"), [(None, 64 * 2**20), ("8MiB", 8 * 2**20), (4096, 4096)])
def test_max_bytes_values(tmp_path: Path, value: object, expected: int) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FEED + "    url: https://example.com/a\n"
                    + ("" if value is None else f"    max_bytes: {value}\n"))
    [feed] = load_policy(path).policy.feeds
    assert feed.max_bytes == expected


def test_the_proxy_fetches_its_feeds_through_the_environments_proxy(
        tmp_path: Path, certs: Path, forward_proxy: str) -> None:
    """`clickguard run` with HTTP_PROXY set: its feed fetches go through that proxy (issue 11)."""
    routes = {"/feed.txt": (200, {"Content-Type": "text/plain"}, b"127.0.0.32\n")}
    with upstream("127.0.0.31", routes) as feed_host, upstream("127.0.0.32") as site:
        policy = write_policy(tmp_path, f"""\
            feeds:
              - {{name: remote, format: ip, url: "{feed_host.base}/feed.txt", refresh: 3600}}
            """)
        environment = {"HTTP_PROXY": forward_proxy, "http_proxy": forward_proxy,
                       "NO_PROXY": "", "no_proxy": ""}
        proxy = start_proxy(tmp_path, policy, certs, env=environment)
        try:
            wait_until(lambda: proxy.get(f"{site.base}/").status == 403, 30, "the fetched feed to block")
        finally:
            proxy.stop()
    assert feed_host.headers[0].get("x-forwarded-by") == "mitmdump"
