"""Devices no fingerprint names: generic evidence, leave-one-vendor-out, the proxy's facts, the real proxy.

The full measurement (four response shapes, the whole python3-doc corpus) is
``bench/device_recognition.py``; here a bounded run of the same code keeps the
figures from sliding back.
"""

from __future__ import annotations

import datetime
import email.utils
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


# --- shapes, not names: what unseen models share ---------------------------------------------

PAGE = "<html><head><title>{}</title><script src=/a.js></script></head><body>" + "<p>x</p>" * 200 + "</body>"


def titled(url: str, title: str) -> DeviceEvidence:
    """A modern stack's page with this title (Date, HTTP/1.1, Title-Case names: no firmware tell)."""
    headers = [DATE, ("Content-Type", "text/html; charset=utf-8")]
    return device_evidence(url=normalize_url(url), status=200, headers=headers,
                           body=PAGE.format(title).encode(), server_header=None, authenticate=None,
                           title=title, server=MODERN, now=NOW)


@pytest.mark.parametrize(
    ("title", "device"),
    [
        # Words run together as firmware writes them are split before the word lists are read.
        ("NETSurveillance WEB", True),
        ("XRCamera", True),
        ("Zq_Router_Admin", True),
        ("iPhone Store", False),  # one lower-case letter in front stays: no "Phone" here
        ("PlayStation Store", False),
        # A title that is only a model number, or little else around a strong one.
        ("Q731", True),
        ("ZX-4410N", True),
        ("Acme - XR200N", True),
        ("Acme MX-L5900DW series", True),
        ("Acme SHARPQ01234", True),
        ("QX2IR Setup and Configuration", True),  # letters, a digit, letters: a model, plus admin words
        # Product pages, standards and years are no models, or not strong enough alone.
        ("Galaxy S24 Ultra", False),
        ("X509 Certificates", False),
        ("COVID-19 Dashboard", False),
        ("SHA256 checksums", False),
        ("Annual Report 2024 - Login", False),
        ("Windows Server 2022", False),
        ("Intel Core i7-13700K Processor | PC Shop", False),
        # Device words in the languages of the markets devices are sold in; admin words alone are not.
        ("Netzwerkkamera", True),
        ("Routeur - Connexion", True),
        ("Видеорегистратор", True),
        ("网络摄像机 登录", True),
        ("Anmeldung - Intranet", False),
        ("后台管理系统 - 登录", False),
        # Narrower words: a card that is a device's, a fibre box, a powerline adapter, an embedded server.
        ("Acme Web Card", True),
        ("Gift Card Balance", False),
        ("Credit Card Login", False),
        ("Acme Fiber Network Box Diagnostics", True),
        ("ZQ!Powerline", True),
        ("Acme Embedded Web Server", True),
    ],
)
def test_title_shapes_on_a_bare_ip(title: str, device: bool) -> None:
    found = titled("http://203.0.113.7/", title)
    assert found.device is device, found.pieces


@pytest.mark.parametrize("title", ["Login", "Sign in", "Web Management", "Management Console", "Settings"])
@pytest.mark.parametrize("url", ["http://10.20.30.40:8080/", "http://192.168.10.5/", "http://203.0.113.7:8080/"])
def test_an_intranet_app_login_page_is_no_device(title: str, url: str) -> None:
    """An app on a private IP and port 8080 titled "Login" is no device on that alone."""
    assert not titled(url, title).device


@pytest.mark.parametrize(
    ("realm", "device", "label"),
    [
        ('Basic realm="ZQlink"', True, "product-named realm"),  # one name of no ordinary word
        ('Basic realm="XRCamera"', True, "realm"),
        ('Basic realm="Acme_CWMP_TCPCR"', True, "realm"),
        ('Basic realm="XR500g.Deluxe"', True, "realm"),  # a model before a dot is still a model
        ('Basic realm="Default: admin/admin"', True, "default login"),
        ('Digest realm="Acme", nonce="0618JT3:00-14-7F-32-27-C6:1738017", qop="auth"', True, "MAC address"),
        ('Basic realm="Shenzhen Acme Technology Co., Ltd."', True, "maker-named realm"),
        ('Basic realm="Acme SOHO Configuration"', True, "realm"),
        ('Basic realm="Acme Home Networking"', True, "realm"),
        # What ordinary sites and server software write.
        ('Basic realm="Acme Staging"', False, "product-named realm"),
        ('Basic realm="Acme Corp Intranet"', False, "product-named realm"),
        ('Basic realm="Restricted Content"', False, "login realm"),
        ('Basic realm="closed site"', False, "login realm"),
        ('Basic realm="Tomcat Manager Application"', False, "login realm"),
        ('Basic realm="traefik"', False, "login realm"),
        ('Basic realm="Jenkins"', False, "login realm"),
        ('Basic realm="Registry Realm"', False, "login realm"),
        ('Basic realm="phpMyAdmin localhost"', False, "login realm"),
        ('Digest realm="files@example.org", nonce="abc"', False, None),
    ],
)
def test_realm_shapes(realm: str, device: bool, label: str | None) -> None:
    headers = [DATE, ("WWW-Authenticate", realm), ("Content-Type", "text/html")]
    found = evidence("http://203.0.113.7/", headers, b"<html><body>401 Unauthorized</body></html>",
                     status=401, server=MODERN)
    assert found.device is device, found.pieces
    realms = [p.label for p in found.pieces if "realm" in p.label or "challenge" in p.label]
    assert (label is None and not realms) or (label is not None and realms and label in realms[0]), realms


@pytest.mark.parametrize(
    ("value", "device"),
    [
        ("Acme-Software-PageServ/ 2.10", True),  # a version after "/ "
        ("Acme-EmbWeb/R4_01", True),  # a version with a letter in front
        ("Acme//8.1RC2", True),
        ("Acme_MicroServer/Acme11", True),  # run together: Micro Server
        ("ZQ MiniAVServer", True),
        ("XR_SettingServer", True),
        ("$ProjectRevision: 4.0.2.38 $", True),  # a build banner, no product
        ("Acme/OS/192.168.1.20", True),  # the device's own LAN address
        ("Apache/2.4.41 (Unix) UPnP/1.0", True),  # firmware words after an ordinary token
        # Ordinary application servers with long names: no device.
        ("GlassFish Server Open Source Edition  4.1.2", False),
        ("WebSphere Application Server/9.0", False),
        ("SAP NetWeaver Application Server 7.53 / AS Java 7.50", False),
        ("Microsoft-Azure-Application-Gateway/v2", False),
        ("pve-api-daemon/3.0", False),
        ("Cheroot/10.0.0", False),
    ],
)
def test_server_shapes_on_a_bare_ip(value: str, device: bool) -> None:
    found = evidence("http://203.0.113.7/", [("Server", value), DATE, ("Content-Type", "text/html")],
                     server=MODERN)
    assert found.device is device, found.pieces


def test_device_class_from_words_in_other_languages() -> None:
    assert str(titled("http://203.0.113.7/", "Drukarka - Ustawienia").device_class) == "printer"
    assert str(titled("http://203.0.113.7/", "路由器 - 登录").device_class) == "router"


# --- leave-one-vendor-out (bounded: the shipped examples, two shapes) ---------------------------


def test_leave_one_vendor_out_firmware_shape() -> None:
    result = leave_one_vendor_out(shape="firmware")
    assert result.total == 321 and result.rate >= 0.95, [c.fingerprint for c in result.missed]


def test_leave_one_vendor_out_plain_shape_floor() -> None:
    """Only the example's own traits, a Date and HTTP/1.1: the worst case (see the bench)."""
    result = leave_one_vendor_out(shape="plain")
    assert result.rate >= 0.84, [c.fingerprint for c in result.missed]


def test_leave_one_vendor_out_one_firmware_tell_floor() -> None:
    result = leave_one_vendor_out(shape="no Date")
    assert result.rate >= 0.90, [c.fingerprint for c in result.missed]


def test_no_ordinary_server_response_is_a_device() -> None:
    total, found = false_positives(ordinary_cases())
    assert total > 2000 and found == [], [(c.vendor, c.url, c.status) for c, _ in found[:10]]


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


def _modern(title: str) -> bytes:
    """An HTTP/1.1 answer as any modern stack writes it (Date now, Title-Case names), sending the
    browser off-site by script: nothing of the firmware's way of answering, only the title."""
    body = f"<html><head><title>{title}</title></head><body>".encode() + GO_THERE + b"</body></html>"
    head = ["HTTP/1.1 200 OK", f"Date: {email.utils.formatdate(usegmt=True)}", "Content-Type: text/html",
            f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(head).encode() + body


def test_unknown_model_title_on_a_bare_ip_redirecting_off_site_is_blocked(proxy: Proxy) -> None:
    """A model the database does not know, named only by its title, gets the appliance treatment."""
    traits = traits_from([("Content-Type", "text/html")], "<title>ZX-4410N</title>")
    assert FingerprintDB.default().match(traits) is None
    with raw_server("127.0.0.124", _modern("ZX-4410N")) as base:
        r = proxy.get(f"{base}/", HTML)
        assert (r.status, r.headers.get("x-clickguard-action")) == (403, "block")
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
        appliance = next(d for d in record["details"] if d["code"] == "landing.appliance")
        assert "title 'ZX-4410N'" in appliance["detail"] and "bare IP" in appliance["detail"]


def test_same_page_with_an_ordinary_title_passes(proxy: Proxy) -> None:
    """The control: the same answer titled "Login" is an app's page, and its redirect passes."""
    with raw_server("127.0.0.125", _modern("Login")) as base:
        r = proxy.get(f"{base}/", HTML)
        assert r.status == 200 and "x-clickguard-action" not in r.headers


def test_ordinary_server_on_a_bare_ip_redirecting_passes(proxy: Proxy) -> None:
    answer = (b"HTTP/1.1 302 Found\r\nServer: nginx/1.24.0\r\nDate: Mon, 21 Sep 2026 14:13:20 GMT\r\n"
              b"Location: " + LANDING.encode() + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    with raw_server("127.0.0.123", answer) as base:
        r = proxy.get(f"{base}/", HTML)
        assert r.status == 302 and "x-clickguard-action" not in r.headers
