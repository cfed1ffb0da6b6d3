"""Devices no fingerprint names: generic evidence, leave-one-vendor-out, the proxy's facts, the real proxy.

The full measurement (four response shapes, the whole python3-doc corpus) is
``bench/device_recognition.py``; here a bounded run of the same code keeps the
figures from sliding back.
"""

from __future__ import annotations

import datetime
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mitmproxy import certs
from mitmproxy.test import tflow, tutils

from bench.device_recognition import false_positives, leave_one_vendor_out, ordinary_cases
from clickguard.inspection.device_evidence import (
    CertificateFacts,
    DeviceEvidence,
    ServerFacts,
    device_evidence,
)
from clickguard.inspection.fingerprints import FingerprintDB, traits_from
from clickguard.proxy.facts import server_facts
from clickguard.urls import normalize_url
from tests.harness import HTML, Proxy, ProxyPool
from tests.test_fingerprint import ORDINARY

NOW = 1_790_000_000.0  # 2026-09-21
DATE = ("Date", "Mon, 21 Sep 2026 14:13:20 GMT")
FIRMWARE = ServerFacts("HTTP/1.0", "HTTP/1.1", ("Server", "Content-type", "WWW-Authenticate"))
MODERN = ServerFacts("HTTP/1.1", "HTTP/1.1", ("Server", "Date", "Content-Type"))


def evidence(url: str, headers: list[tuple[str, str]], body: bytes = b"<p>x</p>", status: int = 200,
             server: ServerFacts | None = None) -> DeviceEvidence:
    """The generic evidence about one response."""
    traits = traits_from(headers, body.decode("latin-1"))
    return device_evidence(url=normalize_url(url), status=status, headers=headers, body=body,
                           server_header=traits.server, authenticate=traits.realm, title=traits.title,
                           server=server, now=NOW)


# --- the pieces and the decision --------------------------------------------------------------


def test_the_issue_example_names_each_piece() -> None:
    found = evidence("http://203.0.113.7/", [("WWW-Authenticate", 'Basic realm="NETGEAR R7000"')],
                     status=401, server=FIRMWARE)
    assert found.device
    summary = found.summary()
    for piece in ("bare IP", "HTTP/1.0", "no Date", "realm 'NETGEAR R7000'", "header casing 'Content-type'"):
        assert piece in summary
    assert str(found.device_class) == "embedded"


@pytest.mark.parametrize(
    ("url", "headers", "server", "device"),
    [
        # A bare IP, an odd port, a device port: never a device alone; nor with one firmware tell.
        ("http://192.0.2.10/", [("Content-Type", "text/plain")], MODERN, False),
        ("http://192.0.2.10/", [DATE], ServerFacts("HTTP/1.0", "HTTP/1.1", ("Date",)), False),
        ("http://203.0.113.7/", [DATE], MODERN, False),
        ("http://203.0.113.7:47103/", [DATE], MODERN, False),
        ("http://203.0.113.7:8080/", [DATE], MODERN, False),
        # An odd word as Server (no product, no version) with a bare IP: not enough.
        ("http://203.0.113.7:47103/", [("Server", "test"), DATE], MODERN, False),
        # Firmware shape from an ordinary server: its token counts against.
        ("http://203.0.113.7/", [("Server", "nginx/1.24.0")], FIRMWARE, False),
        # A firmware server on a site's name: the place says nothing.
        ("http://www.example.com/", [("Server", "XR-Webs/2.1")], FIRMWARE, False),
        # Firmware servers where devices live.
        ("http://203.0.113.7/", [("Server", "XR-Webs/2.1"), DATE], MODERN, True),
        ("http://203.0.113.7/", [("Server", "Acme-Embedded/3.2")], None, True),
        ("http://84-12-3-4.dyn.isp.example/", [("Server", "uhttpd")], None, True),
        ("http://cam42.ddns.net/", [("Server", "Linux/3.10 UPnP/1.0 XR/1.0"), DATE], MODERN, True),
        ("http://203.0.113.7:7547/", [("Server", "Acme CWMP agent")], None, True),
        ("http://203.0.113.7/", [("Server", "ZQ-HTTP/1.0"), DATE], MODERN, True),
    ],
)
def test_decision(url: str, headers: list[tuple[str, str]], server: ServerFacts | None, device: bool) -> None:
    found = evidence(url, headers, server=server)
    assert found.device is device, found.pieces


def test_a_date_from_a_clock_never_set() -> None:
    never_set = ("Date", "Thu, 01 Jan 1970 00:02:11 GMT")
    found = evidence("http://203.0.113.7/", [("Server", "Acme/1.0"), never_set], server=MODERN)
    assert "clock never set" in found.summary() and found.device


def test_http10_answer_to_an_http10_request_is_no_evidence() -> None:
    asked = ServerFacts("HTTP/1.0", "HTTP/1.0", ("Server", "Date"))
    assert "HTTP/1.0" not in evidence("http://203.0.113.7/", [("Server", "x"), DATE], server=asked).summary()


@pytest.mark.parametrize(("name", "odd"), [("Content-type", True), ("content-Length", True),
                                           ("CONTENT-TYPE", True), ("content-type", False),
                                           ("WWW-Authenticate", False), ("X-XSS-Protection", False),
                                           ("ETag", False), ("Content-Security-Policy", False)])
def test_header_casing(name: str, odd: bool) -> None:
    facts = ServerFacts("HTTP/1.1", "HTTP/1.1", ("Server", "Date", name))
    assert ("header casing" in evidence("http://203.0.113.7/", [DATE], server=facts).summary()) is odd


@pytest.mark.parametrize(
    ("cert", "pieces"),
    [
        (CertificateFacts("192.168.1.1", None, (), True), ["device-named certificate", "self-signed"]),
        (CertificateFacts("DCS-2530L", "D-Link Corporation", (), False), ["device-named certificate"]),
        (CertificateFacts("www.example.com", "Example Inc", ("www.example.com",), False), []),
    ],
)
def test_certificate(cert: CertificateFacts, pieces: list[str]) -> None:
    facts = ServerFacts("HTTP/1.1", "HTTP/1.1", ("Date",), cert)
    summary = evidence("https://203.0.113.7/", [DATE], server=facts).summary()
    assert [p for p in ("device-named certificate", "self-signed") if p in summary] == pieces


def test_a_device_named_self_signed_certificate_on_an_ip_is_a_device() -> None:
    facts = ServerFacts("HTTP/1.1", "HTTP/1.1", ("Date",), CertificateFacts("192.168.0.1", None, (), True))
    assert evidence("https://203.0.113.7/", [DATE], server=facts).device


ORDINARY_SERVERS = [value for trait, value in ORDINARY if trait == "server" and value not in ("Router",)
                    and not value.startswith("lighttpd")]


@pytest.mark.parametrize("value", ORDINARY_SERVERS)
@pytest.mark.parametrize("url", ["http://203.0.113.7/", "http://198.51.100.9:8443/", "http://203.0.113.7:3000/"])
def test_ordinary_servers_on_bare_ips_are_no_devices(value: str, url: str) -> None:
    found = evidence(url, [("Server", value), DATE, ("Content-Type", "text/html")], server=MODERN)
    assert not found.device, found.pieces


@pytest.mark.parametrize("title", ["3.12.1 Documentation", "pprint — Data pretty printer — Python 3.12 docs",
                                   "cgi — Common Gateway Interface support", "Grafana", "Dashboard [Jenkins]",
                                   "Error 404 - Not Found", "Index of /"])
def test_ordinary_titles_on_a_bare_ip_are_no_devices(title: str) -> None:
    body = f"<html><head><title>{title}</title><script src=/a.js></script></head></html>".encode()
    assert not evidence("http://203.0.113.7:8000/", [DATE, ("Content-Type", "text/html")], body,
                        server=MODERN).device


# --- leave-one-vendor-out (bounded: the shipped examples, two shapes) ---------------------------


def test_leave_one_vendor_out_firmware_shape() -> None:
    result = leave_one_vendor_out(shape="firmware")
    assert result.total == 321 and result.rate >= 0.95, [c.fingerprint for c in result.missed]


def test_leave_one_vendor_out_plain_shape_floor() -> None:
    """Only the example's own traits, a Date and HTTP/1.1: the worst case (see the bench)."""
    result = leave_one_vendor_out(shape="plain")
    assert result.rate >= 0.69, [c.fingerprint for c in result.missed]


def test_no_ordinary_server_response_is_a_device() -> None:
    total, found = false_positives(ordinary_cases())
    assert total > 500 and found == []


# --- the proxy's facts ------------------------------------------------------------------------


def _self_signed(common_name: str) -> certs.Cert:
    """A self-signed certificate for common_name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("router.local")]), critical=False)
            .sign(key, hashes.SHA256()))
    return certs.Cert(cert)


def test_server_facts_from_a_flow() -> None:
    flow = tflow.tflow(resp=tutils.tresp(http_version=b"HTTP/1.0"))
    assert flow.response is not None
    flow.response.headers.fields = ((b"Server", b"XR"), (b"Content-type", b"text/html"))
    flow.server_conn.certificate_list = [_self_signed("192.168.1.1")]
    facts = server_facts(flow)
    assert facts.http_version == "HTTP/1.0" and facts.request_version == "HTTP/1.1"
    assert facts.header_names == ("Server", "Content-type")
    assert facts.certificate == CertificateFacts("192.168.1.1", None, ("router.local",), True)


def test_server_facts_without_tls() -> None:
    flow = tflow.tflow(resp=True)
    assert server_facts(flow).certificate is None


# --- through the real proxy -------------------------------------------------------------------


@contextmanager
def raw_server(host: str, answer: bytes) -> Iterator[str]:
    """A server that answers every request with exactly these bytes and closes (firmware style)."""
    listener = socket.create_server((host, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


def _answer(status: str, headers: list[str], body: bytes) -> bytes:
    """An HTTP/1.0 answer without Date, header names as firmware writes them."""
    head = [f"HTTP/1.0 {status}", *headers, f"Content-length: {len(body)}", "", ""]
    return "\r\n".join(head).encode() + body


LANDING = "http://127.0.0.139/landing"
GO_THERE = f"<script>location.href='{LANDING}'</script>".encode()
UNSEEN = [
    ("realm", "127.0.0.120", _answer("401 Unauthorized", ['WWW-Authenticate: Basic realm="Router XR-200"',
                                                         "Content-type: text/html"],
                                     f'<meta http-equiv="refresh" content="0;url={LANDING}">'.encode())),
    ("server", "127.0.0.121", _answer("302 Found", ["Server: XR-Webs/2.1", f"Location: {LANDING}"], b"")),
    ("title", "127.0.0.122", _answer("200 OK", ["Content-type: text/html"],
                                     b"<html><head><title>XR-200 Wireless Router Setup</title></head><body>"
                                     + GO_THERE + b"</body></html>")),
]


@pytest.fixture
def proxy(shared_proxy: ProxyPool) -> Proxy:
    """The module's proxy with no feeds."""
    return shared_proxy("feeds: []\n")


@pytest.mark.parametrize(("what", "host", "answer"), UNSEEN, ids=[u[0] for u in UNSEEN])
def test_unseen_device_redirecting_off_site_is_blocked(proxy: Proxy, what: str, host: str,
                                                        answer: bytes) -> None:
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    headers = [tuple(line.split(": ", 1)) for line in head.split("\r\n")[1:]]
    traits = traits_from([(n, v) for n, v in headers], answer.split(b"\r\n\r\n", 1)[1].decode())
    assert FingerprintDB.default().match(traits) is None  # a model the database does not know
    with raw_server(host, answer) as base:
        r = proxy.get(f"{base}/", HTML)
        assert r.headers.get("x-clickguard-action") == "block", what
        assert r.status == 403
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
        appliance = next(d for d in record["details"] if d["code"] == "landing.appliance")
        assert "generic device evidence: " in appliance["detail"] and "bare IP" in appliance["detail"]
        assert record["inspection"]["fingerprint"]["name"] == "generic device evidence"


def test_ordinary_server_on_a_bare_ip_redirecting_passes(proxy: Proxy) -> None:
    answer = (b"HTTP/1.1 302 Found\r\nServer: nginx/1.24.0\r\nDate: Mon, 21 Sep 2026 14:13:20 GMT\r\n"
              b"Location: " + LANDING.encode() + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    with raw_server("127.0.0.123", answer) as base:
        r = proxy.get(f"{base}/", HTML)
        assert r.status == 302 and "x-clickguard-action" not in r.headers
