"""A hostile server's framing over HTTP/2, through the real proxy: inspection holds whatever the framing.

The browser (httpx with h2, offering h2 and http/1.1 as browsers do) speaks
HTTP/2 to the proxy inside CONNECT + TLS; the proxy speaks HTTP/2 upstream to a
server on the `h2` package (ALPN h2), or HTTP/1.1 to one that only offers that.
The server is a camera on a bare address and picks the frames: a body in many
DATA frames with no content-length, a content-length that lies, a reset stream
mid-body, trailers with no body. The payload never reaches the browser, and the
proxy keeps serving after each. Addresses 127.0.0.160–175.

The upstream's certificate is self-signed for those addresses and given to the
proxy as its trusted CA for upstreams (`ssl_verify_upstream_trusted_ca`):
upstream certificates are still verified, as in production.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import random
import ssl
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.appliances import elf
from tests.harness import HTML, Proxy, ProxyPool

MAX_BODY = 65536
POLICY = f"feeds: []\ninspect: {{max_body: {MAX_BODY}, learn: false}}\n"
ADDRESSES = [f"127.0.0.{n}" for n in range(160, 176)]
CAMERA = ("server", "Hikvision-Webs")
HTML_TYPE = ("content-type", "text/html; charset=utf-8")
BINARY = ("content-type", "application/octet-stream")
FRAME = 4096  # bytes of body in each DATA frame the server sends
PAGE = b"<html><head><title>Live view</title></head><body>camera 1</body></html>"

type Headers = Sequence[tuple[str, str]]


# --- the upstream: TLS on a bare address, HTTP/2 frame by frame (or HTTP/1.1) -------------------------

@dataclass(frozen=True)
class Answer:
    """One response as the server frames it: headers, DATA frames, then trailers, an end or a reset."""

    headers: Headers
    body: bytes = b""
    status: int = 200
    frame: int = FRAME  # bytes of body per DATA frame (HTTP/1.1: per chunk, or one write)
    trailers: Headers = ()
    reset_after: int | None = None  # RST_STREAM (HTTP/1.1: close) after this many bytes of body

    def pieces(self) -> list[bytes]:
        """The body cut as it goes out (up to the reset, if there is one)."""
        body = self.body if self.reset_after is None else self.body[: self.reset_after]
        return [body[i:i + self.frame] for i in range(0, len(body), self.frame)]


@dataclass
class TLSServer:
    """A running server: where it listens, what was asked, which protocol each connection chose."""

    host: str
    port: int = 0
    requests: list[str] = field(default_factory=list)
    protocols: list[str | None] = field(default_factory=list)

    @property
    def base(self) -> str:
        """https://host:port"""
        return f"https://{self.host}:{self.port}"


@dataclass(frozen=True)
class UpstreamCert:
    """A self-signed certificate for ADDRESSES, and its key, as PEM files."""

    cert: Path
    key: Path


def make_upstream_cert(directory: Path) -> UpstreamCert:
    """A self-signed certificate naming ADDRESSES (a device's own certificate, trusted by the test proxy)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IPC camera")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    files = UpstreamCert(directory / "upstream-cert.pem", directory / "upstream-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class _H2Connection:
    """One HTTP/2 connection served: answers each stream from the routes, within flow control."""

    def __init__(self, server: TLSServer, routes: Mapping[str, Answer], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server, self.routes, self.reader, self.writer = server, routes, reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.window = asyncio.Event()  # set when the peer grants more flow-control window
        self.streams: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Read frames until the peer closes; each request is answered by a task of its own."""
        self.conn.initiate_connection()
        await self.flush()
        try:
            while data := await self.reader.read(65536):
                for event in self.conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        path = dict(event.headers or [])[b":path"].decode()
                        self.server.requests.append(path)
                        task = asyncio.create_task(self.answer(event.stream_id, self.routes.get(path)))
                        self.streams.add(task)
                        task.add_done_callback(self.streams.discard)
                    elif isinstance(event, h2.events.WindowUpdated | h2.events.StreamReset):
                        self.window.set()
                await self.flush()
        finally:
            for task in list(self.streams):
                task.cancel()  # answers still waiting for window on a connection that is gone
            await asyncio.gather(*self.streams, return_exceptions=True)

    async def flush(self) -> None:
        """Send what the h2 state machine has queued."""
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def answer(self, stream_id: int, answer: Answer | None) -> None:
        """Headers, DATA frames within the window, then trailers, an end or a reset."""
        answer = answer or Answer([("content-type", "text/plain")], b"not found", status=404)
        try:
            pieces = answer.pieces()
            ends_at_headers = not pieces and not answer.trailers and answer.reset_after is None
            self.conn.send_headers(stream_id, [(":status", str(answer.status)), *answer.headers],
                                   end_stream=ends_at_headers)
            await self.flush()
            for piece in pieces:
                await self.send_data(stream_id, piece)
            if answer.reset_after is not None:
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            elif answer.trailers:
                self.conn.send_headers(stream_id, list(answer.trailers), end_stream=True)
            elif not ends_at_headers:
                self.conn.end_stream(stream_id)
            await self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            pass  # the proxy reset the stream or closed the connection: nothing left to send

    async def send_data(self, stream_id: int, data: bytes) -> None:
        """One piece of body: as DATA frames when the flow-control window has room for them."""
        while data:
            room = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.window.clear()
                await self.window.wait()
                continue
            self.conn.send_data(stream_id, data[:room])
            data = data[room:]
            await self.flush()


async def _serve_http1(routes: Mapping[str, Answer], server: TLSServer, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    """One HTTP/1.1 request: its answer chunked when it names no content-length; then close."""
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ", 2)[1].decode()
    server.requests.append(path)
    answer = routes.get(path) or Answer([("content-type", "text/plain")], b"not found", status=404)
    chunked = not any(name == "content-length" for name, _ in answer.headers)
    lines = [f"HTTP/1.1 {answer.status} OK", *(f"{n}: {v}" for n, v in answer.headers), "connection: close"]
    if chunked:
        lines.append("transfer-encoding: chunked")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    for piece in answer.pieces():
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()
    if chunked and answer.reset_after is None:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


@contextmanager
def serve_tls(host: str, routes: Mapping[str, Answer], cert: UpstreamCert,
              alpn: Sequence[str] = ("h2", "http/1.1")) -> Iterator[TLSServer]:
    """Serve routes over TLS on host (one of ADDRESSES), speaking whichever of alpn the proxy chooses."""
    server = TLSServer(host)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    context.set_alpn_protocols(list(alpn))
    loop = asyncio.new_event_loop()
    handlers: set[asyncio.Task[Any]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        protocol = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        server.protocols.append(protocol)
        try:
            if protocol == "h2":
                await _H2Connection(server, routes, reader, writer).run()
            else:
                await _serve_http1(routes, server, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass  # the proxy went away mid-answer
        finally:
            writer.close()
            writers.discard(writer)
            handlers.discard(task)

    async def start() -> asyncio.Server:
        listening = await asyncio.start_server(handle, host, 0, ssl=context)
        server.port = listening.sockets[0].getsockname()[1]
        return listening

    async def stop(listening: asyncio.Server) -> None:
        listening.close()
        for writer in list(writers):
            writer.transport.abort()  # each handler's read ends; it returns by itself
        await asyncio.gather(*handlers, return_exceptions=True)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listening = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(stop(listening), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


# --- the browser's side: HTTP/2 to the proxy inside CONNECT + TLS ---------------------------------------

@dataclass(frozen=True)
class Got:
    """What the client got: the status and headers (None if no response came), the body as far as it
    arrived, the HTTP version spoken to the proxy, and the error that ended the exchange, if one did."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    http_version: str | None
    error: str | None


class BrowserTLS(ssl.SSLContext):
    """A client TLS context offering h2 before http/1.1, as browsers do.

    httpcore's proxy tunnel offers ["http/1.1", "h2"], and mitmproxy honours the
    client's order: without this the browser's side would be HTTP/1.1.
    """

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        super().set_alpn_protocols(sorted(alpn_protocols, key=lambda protocol: protocol != "h2"))


def h2_get(proxy: Proxy, url: str, headers: Mapping[str, str] | None = None) -> Got:
    """GET an https:// URL through the proxy over HTTP/2, trusting the proxy's CA; never raises for
    a broken exchange (a reset stream, a body cut short): the error is in the result."""
    context = BrowserTLS(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=proxy.certs / "mitmproxy-ca-cert.pem")
    body = bytearray()
    with httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", verify=context, http2=True,
                      trust_env=False, timeout=60) as client:
        try:
            with client.stream("GET", url, headers=dict(headers or HTML)) as response:
                got = {k.lower(): v for k, v in response.headers.items()}
                try:
                    for chunk in response.iter_raw():
                        body += chunk
                except (httpx.TransportError, h2.exceptions.ProtocolError) as e:
                    # A body shorter than its content-length ends in h2's own error (httpcore
                    # passes it on unwrapped): the browser's failed download.
                    return Got(response.status_code, got, bytes(body), response.http_version, repr(e))
                return Got(response.status_code, got, bytes(body), response.http_version, None)
        except (httpx.TransportError, h2.exceptions.ProtocolError) as e:
            return Got(None, {}, b"", None, repr(e))


def decoded(body: bytes) -> bytes:
    """A gzip body as far as it decodes (a body cut short decodes partly)."""
    with suppress(zlib.error):
        return zlib.decompressobj(31).decompress(body)
    return b""


def noise(size: int, seed: int = 16) -> bytes:
    """Bytes that do not compress: a body stays larger than max_body when encoded."""
    return random.Random(seed).randbytes(size)


def blocked_records(proxy: Proxy, base: str) -> list[dict[str, Any]]:
    """The block records of one server's URLs, once written (a streamed body's are written off-path)."""
    def blocked() -> list[dict[str, Any]]:
        return [r for r in proxy.audit_of(base) if r["action"] == "block"]

    proxy.wait_for_audit(lambda _: bool(blocked()), f"a block record for {base}")
    return blocked()


def assert_still_serving(proxy: Proxy, server: TLSServer) -> None:
    """The proxy is alive, logged no traceback, and answers the next request over HTTP/2."""
    assert proxy.process.poll() is None, proxy.log()
    assert "Traceback" not in proxy.log(), proxy.log()
    got = h2_get(proxy, f"{server.base}/live")
    assert (got.status, got.body, got.http_version) == (200, PAGE, "HTTP/2"), got


# Each case's routes carry a harmless page at /live: the request that shows the proxy still serves.
LIVE = Answer([CAMERA, HTML_TYPE, ("content-length", str(len(PAGE)))], PAGE)
UPSTREAMS = {"h2": ("h2", "http/1.1"), "http1": ("http/1.1",)}


@pytest.fixture(scope="module")
def upstream_cert(tmp_path_factory: pytest.TempPathFactory) -> UpstreamCert:
    """The certificate every upstream here presents."""
    return make_upstream_cert(tmp_path_factory.mktemp("upstream-cert"))


def trusting(cert: UpstreamCert) -> tuple[str, str]:
    """The proxy arguments that make it trust the upstreams' certificate (and nothing less)."""
    return ("--set", f"ssl_verify_upstream_trusted_ca={cert.cert}")


@pytest.fixture
def proxy(shared_proxy: ProxyPool, upstream_cert: UpstreamCert) -> Proxy:
    """The module's proxy: no feeds, a small max_body, nothing learned (each case is judged afresh)."""
    return shared_proxy(POLICY, *trusting(upstream_cert))


@contextmanager
def camera(host: str, routes: Mapping[str, Answer], cert: UpstreamCert,
           upstream: str = "h2") -> Iterator[TLSServer]:
    """A camera serving routes (and /live) on host, speaking h2 or HTTP/1.1 only to the proxy."""
    with serve_tls(host, {**routes, "/live": LIVE}, cert, UPSTREAMS[upstream]) as server:
        yield server
    expected = "h2" if upstream == "h2" else "http/1.1"
    assert server.protocols and set(server.protocols) == {expected}, server.protocols


# --- the attacks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("upstream", ["h2", "http1"])
def test_an_elf_labelled_html_in_many_data_frames_is_stopped(proxy: Proxy, upstream_cert: UpstreamCert,
                                                             upstream: str) -> None:
    """Three times max_body in 4 KiB frames, no content-length, `text/html`: held, then streamed
    mid-body when it outgrows max_body, and sniffed."""
    routes = {"/index.html": Answer([CAMERA, HTML_TYPE], elf("mips", size=MAX_BODY * 3))}
    with camera(ADDRESSES[0 + (upstream == "http1")], routes, upstream_cert, upstream) as server:
        got = h2_get(proxy, f"{server.base}/index.html")
        assert got.http_version == "HTTP/2" and b"\x7fELF" not in got.body, got
        assert got.error is not None and "StreamReset" in got.error, got  # cut: the stream reset
        [record] = blocked_records(proxy, server.base)
        assert record["inspection"]["payload"]["kind"] == "elf" and record["streamed"] is True
        assert_still_serving(proxy, server)


@pytest.mark.parametrize("upstream", ["h2", "http1"])
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no-length"])
def test_a_gzip_download_streamed_with_a_neutral_name_is_stopped(proxy: Proxy, upstream_cert: UpstreamCert,
                                                                 upstream: str, length: bool) -> None:
    """A gzip-encoded ELF too large to hold, `/file` as octet-stream: sniffed after decoding, cut short,
    and the stream reset (RST_STREAM): with or without a content-length, a failed download, never a
    complete short body."""
    body = gzip.compress(elf("mips", size=1024) + noise(MAX_BODY * 3))
    headers = [CAMERA, BINARY, ("content-encoding", "gzip")]
    if length:
        headers.append(("content-length", str(len(body))))
    host = ADDRESSES[2 + length * 2 + (upstream == "http1")]
    with camera(host, {"/file": Answer(headers, body)}, upstream_cert, upstream) as server:
        got = h2_get(proxy, f"{server.base}/file")
        assert got.http_version == "HTTP/2", got
        assert len(got.body) < len(body) and b"\x7fELF" not in decoded(got.body), got.error
        assert got.error is not None and "StreamReset" in got.error, got
        [record] = blocked_records(proxy, server.base)
        assert record["streamed"] is True and record["inspection"]["payload"]["kind"] == "elf"
        assert_still_serving(proxy, server)


def test_a_download_named_as_a_bot_binary_gets_the_block_page(proxy: Proxy,
                                                              upstream_cert: UpstreamCert) -> None:
    """Too large to hold, but its name (`Mozi.m`) is enough: the block page replaces it before its body."""
    headers = [CAMERA, BINARY, ("content-length", str(MAX_BODY * 3)),
               ("content-disposition", 'attachment; filename="Mozi.m"')]
    with camera(ADDRESSES[10], {"/dl": Answer(headers, noise(MAX_BODY * 3))}, upstream_cert) as server:
        got = h2_get(proxy, f"{server.base}/dl")
        assert (got.status, got.headers.get("x-clickguard-action"), got.error) == (403, "block", None), got
        assert got.http_version == "HTTP/2" and b"clickguard" in got.body
        assert_still_serving(proxy, server)


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_decompression_bomb_in_data_frames_costs_bounded_memory(proxy_factory: ProxyPool,
                                                                  upstream_cert: UpstreamCert) -> None:
    """About 250 KiB of gzip in DATA frames, no content-length, decoding to 256 MiB: as a page it is
    held (under the default max_body), as a file it streams; each judged on what was seen, in bounded
    memory."""
    proxy = proxy_factory("feeds: []\ninspect: {learn: false}\n", *trusting(upstream_cert), private=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    bomb = b"".join([compressor.compress(elf("mips", size=4096))]
                    + [compressor.compress(zeros) for _ in range(256)] + [compressor.flush()])
    assert len(bomb) < 1 << 20
    routes = {"/bomb": Answer([CAMERA, HTML_TYPE, ("content-encoding", "gzip")], bomb),
              "/bomb.bin": Answer([CAMERA, BINARY, ("content-encoding", "gzip")], bomb)}
    with camera(ADDRESSES[6], routes, upstream_cert) as server:
        assert_still_serving(proxy, server)  # warmed up: the baseline
        before = peak_rss_kib(proxy.process.pid)
        held = h2_get(proxy, f"{server.base}/bomb")
        streamed = h2_get(proxy, f"{server.base}/bomb.bin")
        grown = peak_rss_kib(proxy.process.pid) - before
        assert (held.status, held.headers.get("x-clickguard-action")) == (403, "block"), held
        assert grown < 64 * 1024, f"the proxy's peak memory grew by {grown} KiB"
        [record] = proxy.audit_of_ref(held.headers["x-clickguard-ref"])
        assert record["inspection"]["truncated"] in ("decoded cap", "ratio cap")
        assert record["inspection"]["payload"]["kind"] == "elf"
        assert b"\x7fELF" not in decoded(streamed.body) and len(streamed.body) < len(bomb), streamed
        assert any(r.get("streamed") and r["url"].endswith("/bomb.bin")
                   for r in blocked_records(proxy, server.base))
        assert_still_serving(proxy, server)


REDIRECTS = {
    "meta-refresh": b'<html><head><title>x</title><meta http-equiv="refresh" '
                    b'content="0; url=http://127.0.0.29/landing"></head><body></body></html>',
    "script": b"<html><body><script>window.location.replace('http://127.0.0.29/landing');"
              b"</script></body></html>",
}


@pytest.mark.parametrize("name", list(REDIRECTS))
def test_a_device_page_sending_the_browser_elsewhere_is_blocked(proxy: Proxy, upstream_cert: UpstreamCert,
                                                               name: str) -> None:
    """A camera's page in 16-byte DATA frames, no content-length, whose meta refresh or script leaves it."""
    routes = {"/": Answer([CAMERA, HTML_TYPE], REDIRECTS[name], frame=16)}
    with camera(ADDRESSES[7], routes, upstream_cert) as server:
        got = h2_get(proxy, f"{server.base}/")
        assert (got.status, got.headers.get("x-clickguard-action")) == (403, "block"), got
        assert got.http_version == "HTTP/2"
        [record] = proxy.audit_of_ref(got.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
        assert any("127.0.0.29" in str(n["target"]) for n in record["inspection"]["navigations"])
        assert_still_serving(proxy, server)


def test_a_blocked_stream_leaves_the_connections_other_streams_alone(proxy: Proxy,
                                                                     upstream_cert: UpstreamCert) -> None:
    """One HTTP/2 connection: a payload's stream is cut while a page's stream on it is served whole."""
    routes = {"/index.html": Answer([CAMERA, HTML_TYPE], elf("mips", size=MAX_BODY * 3))}
    context = BrowserTLS(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=proxy.certs / "mitmproxy-ca-cert.pem")
    with camera(ADDRESSES[11], routes, upstream_cert) as server, \
            httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", verify=context, http2=True,
                         trust_env=False, timeout=60, headers=HTML) as client:
        with client.stream("GET", f"{server.base}/index.html") as payload:
            page = client.get(f"{server.base}/live")  # while the payload's stream is open
            body = bytearray()
            with pytest.raises(httpx.RemoteProtocolError, match="StreamReset"):
                for chunk in payload.iter_raw():  # the payload's stream alone is reset
                    body += chunk
        after = client.get(f"{server.base}/live")
    assert (payload.http_version, page.http_version) == ("HTTP/2", "HTTP/2")
    assert len(server.protocols) == 1  # one connection each side: the streams shared them
    assert b"\x7fELF" not in body
    assert (page.status_code, page.content) == (200, PAGE)
    assert (after.status_code, after.content) == (200, PAGE)


LENGTHS = {
    # Announces a page within max_body (held), sends an ELF three times as long.
    "longer-than-announced": ([("content-length", "100")], elf("mips", size=MAX_BODY * 3)),
    # Announces more than max_body (streamed from its headers), ends at half of it.
    "shorter-than-announced": ([("content-length", str(MAX_BODY * 4))], elf("mips", size=MAX_BODY * 2)),
    # Two lengths that disagree.
    "two-lengths": ([("content-length", "100"), ("content-length", str(MAX_BODY * 2))],
                    elf("mips", size=MAX_BODY * 2)),
    "not-a-number": ([("content-length", "0x10000")], elf("mips", size=MAX_BODY * 2)),
}


@pytest.mark.parametrize("case", list(LENGTHS))
def test_a_content_length_the_frames_contradict_neither_crashes_nor_passes(
        proxy: Proxy, upstream_cert: UpstreamCert, case: str) -> None:
    """content-length says one size, the DATA frames another (h2 framing mismatch)."""
    lengths, body = LENGTHS[case]
    routes = {"/cam.html": Answer([CAMERA, HTML_TYPE, *lengths], body)}
    with camera(ADDRESSES[8], routes, upstream_cert) as server:
        got = h2_get(proxy, f"{server.base}/cam.html")
        assert b"\x7fELF" not in got.body, got
        assert_still_serving(proxy, server)


RESETS = {
    "held": elf("mips", size=MAX_BODY // 2),  # reset while the body is held for inspection
    "streamed": elf("mips", size=MAX_BODY * 3),  # reset after the body started streaming
}


@pytest.mark.parametrize("case", list(RESETS))
def test_a_stream_reset_mid_body_neither_crashes_nor_passes(proxy: Proxy, upstream_cert: UpstreamCert,
                                                            case: str) -> None:
    """RST_STREAM after part of the body: the browser gets an error, never the ELF."""
    body = RESETS[case]
    routes = {"/reset.html": Answer([CAMERA, HTML_TYPE], body, reset_after=len(body) - FRAME)}
    with camera(ADDRESSES[9], routes, upstream_cert) as server:
        got = h2_get(proxy, f"{server.base}/reset.html")
        assert b"\x7fELF" not in got.body, got
        # The stream reset, or mitmproxy's 502 page for a server that reset before the body was whole.
        assert got.error is not None or got.status == 502, got
        if case == "streamed":  # judged on its first bytes, before the reset
            [record] = blocked_records(proxy, server.base)
            assert record["streamed"] is True and record["inspection"]["payload"]["kind"] == "elf"
        assert_still_serving(proxy, server)


def test_trailers_without_a_body_and_after_a_payload(proxy: Proxy, upstream_cert: UpstreamCert) -> None:
    """HEADERS then trailing HEADERS and no DATA: an empty page, served; trailers after an ELF: blocked."""
    routes = {"/empty": Answer([CAMERA, HTML_TYPE], trailers=[("x-status", "0")]),
              "/payload": Answer([CAMERA, HTML_TYPE], elf("mips", size=8192), trailers=[("x-status", "0")])}
    with camera(ADDRESSES[12], routes, upstream_cert) as server:
        got = h2_get(proxy, f"{server.base}/empty")
        assert (got.status, got.body, got.error, got.http_version) == (200, b"", None, "HTTP/2"), got
        got = h2_get(proxy, f"{server.base}/payload")
        assert (got.status, got.headers.get("x-clickguard-action")) == (403, "block"), got
        assert b"\x7fELF" not in got.body
        assert_still_serving(proxy, server)
