"""The parent proxy (policy `upstream`), with Debian's real Squid as the parent.

Squid runs on 127.0.0.61 (started here, in the foreground, its access log read by the tests to
prove what went through it); the sites run on other loopback addresses. The proxy is
`clickguard run` in regular mode with the policy naming Squid as its parent:

- a plain HTTP request and an intercepted HTTPS one go through Squid, as a CONNECT to the
  address clickguard resolved and judged (`localhost` → 127.0.0.1 in the log, never the name),
  with the TLS SNI still the name; by name with `connect_by: name`;
- a tunnel passed through uninspected (intercept.exclude) and a raw tunnel go through Squid
  too; a raw tunnel to a denied host never reaches it;
- Squid's stock rules (CONNECT to 443 only) with the one line README gives IT;
- a no_proxy destination goes direct (Squid logs a later request, never that one);
- a denied destination is blocked before anything reaches Squid or the site;
- a URL feed is fetched through Squid (its GET in the log);
- Squid asking for credentials gets the URL's user:password on the CONNECT;
- Squid down: a clear 502 naming the parent, and the proxy keeps serving.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import http.server
import ipaddress
import socket
import ssl
import subprocess
import threading
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clickguard.errors import PolicyError
from clickguard.intel.sources import FeedRoute, feed_route
from clickguard.policy.model import parse_policy
from tests.harness import (
    Proxy,
    ProxyPool,
    free_port,
    raw_server,
    required_tool,
    running_squid_with,
    upstream,
    wait_until,
)
from tests.harness import (
    RunningSquid as Squid,
)

SQUID_HOST = "127.0.0.61"
USER, PASSWORD = "clickguard", "s3cret:pass"  # a colon in the password, as Basic allows


# Debian's stock access rules (CONNECT to port 443 only), with the one line README tells IT to
# add before them: clickguard tunnels every request it sends through the parent, to any port.
# (tests.harness.running_squid_with writes the rest of squid.conf: port, logs, no cache.)
SQUID_RULES = """\
{auth}
acl SSL_ports port 443
acl Safe_ports port 80 21 443 70 210 1025-65535 280 488 591 777
acl clickguard src 127.0.0.1
acl clients src 127.0.0.0/8
{require}
http_access allow CONNECT clickguard
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access allow clients
http_access deny all
"""


def _password_line(user: str, password: str) -> str:
    """An htpasswd line (MD5-crypt, made by openssl) as Squid's basic_ncsa_auth reads it."""
    openssl = required_tool("openssl", "apt-get install openssl")
    hashed = subprocess.run([openssl, "passwd", "-1", "-stdin"], input=password.encode(),
                            capture_output=True, check=True).stdout.decode().strip()
    return f"{user}:{hashed}\n"


@contextmanager
def running_squid(conf_dir: Path, *, with_auth: bool = False) -> Iterator[Squid]:
    """Squid on SQUID_HOST with Debian's stock rules (and, with_auth, Basic credentials required)."""
    auth = require = ""
    if with_auth:
        helper = "/usr/lib/squid/basic_ncsa_auth"
        assert Path(helper).exists(), "Squid's basic_ncsa_auth helper is missing"
        auth = (f"auth_param basic program {helper} {{work}}/passwords\n"
                "auth_param basic realm parent\nacl signed_in proxy_auth REQUIRED")
        require = "http_access deny !signed_in"

    def passwords(work: Path) -> None:
        if with_auth:
            (work / "passwords").write_text(_password_line(USER, PASSWORD))

    rules = SQUID_RULES.replace("{auth}", auth).replace("{require}", require)
    with running_squid_with(conf_dir, rules, host=SQUID_HOST, before_start=passwords) as running:
        yield running


@pytest.fixture(scope="module")
def squid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Squid]:
    """The module's Squid, open to loopback clients."""
    with running_squid(tmp_path_factory.mktemp("squid")) as running:
        yield running


# --- an HTTPS site with a name, recording the SNI it was asked for ------------------------------


@dataclass
class TLSSite:
    """An HTTPS server on 127.0.0.1 with a certificate for localhost."""

    port: int = 0
    server_names: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (and 127.0.0.1) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day).not_valid_after(now + 30 * day)
            .add_extension(names, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "site.pem", directory / "site.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def tls_site(cert: tuple[Path, Path]) -> Iterator[TLSSite]:
    """Serve HTTPS on 127.0.0.1 for the duration of the block."""
    site = TLSSite()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)

    def note_sni(_socket: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> None:
        site.server_names.append(server_name)

    context.sni_callback = note_sni  # type: ignore[assignment]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            site.paths.append(self.path)
            body = f"secure hello at {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The HTTPS site's certificate and key."""
    return make_cert(tmp_path_factory.mktemp("site-cert"))


# --- the proxy with Squid as its parent --------------------------------------------------------


def parent_policy(parent: str, more: str = "") -> str:
    """The policy: Squid as the parent; 127.0.0.63 direct; 127.0.0.64 denied; and more (YAML)."""
    return f"""\
upstream:
  proxy: {parent}
  no_proxy: [127.0.0.63, direct.invalid]
deny: {{networks: [127.0.0.64]}}
{more}"""


@pytest.fixture(scope="module")
def proxy(shared_proxy: ProxyPool, squid: Squid, site_cert: tuple[Path, Path]) -> Proxy:
    """The module's proxy: Squid as its parent, trusting the HTTPS site's certificate."""
    return shared_proxy(parent_policy(squid.url), "--set", f"ssl_verify_upstream_trusted_ca={site_cert[0]}")


def test_plain_http_goes_through_the_parent_to_the_address_judged(proxy: Proxy, squid: Squid) -> None:
    with upstream("127.0.0.1") as site:
        r = proxy.get(f"http://localhost:{site.port}/plain")
    assert r.status == 200 and r.text == "hello from 127.0.0.1 at /plain\n"
    line = squid.wait_for(f":{site.port} ")
    # Squid was asked for the address clickguard resolved and judged, never to resolve the name.
    assert f"CONNECT 127.0.0.1:{site.port} " in line and "TCP_TUNNEL/200" in line
    assert not any(f"localhost:{site.port}" in entry for entry in squid.log())


def test_connect_by_name_lets_the_parent_resolve(shared_proxy: ProxyPool, squid: Squid) -> None:
    """upstream.connect_by: name: the parent's rules and logs see the name (and resolve it again)."""
    by_name = shared_proxy(parent_policy(squid.url).replace("  no_proxy:", "  connect_by: name\n  no_proxy:"))
    with upstream("127.0.0.1") as site:
        assert by_name.get(f"http://localhost:{site.port}/named").status == 200
    squid.wait_for(f"CONNECT localhost:{site.port} ", "TCP_TUNNEL/200")


def test_https_is_intercepted_then_tunnelled_through_the_parent(proxy: Proxy, squid: Squid,
                                                                 site_cert: tuple[Path, Path]) -> None:
    with tls_site(site_cert) as site:
        r = proxy.get_tls("localhost", site.port, "/secure")
    assert r.status == 200 and r.text == "secure hello at /secure\n"
    assert site.paths == ["/secure"]
    assert site.server_names == ["localhost"]  # the SNI (and the certificate check) kept the name
    line = squid.wait_for(f"CONNECT 127.0.0.1:{site.port} ")
    assert "TCP_TUNNEL/200" in line


def test_a_tunnel_passed_through_goes_through_the_parent(shared_proxy: ProxyPool, squid: Squid,
                                                        site_cert: tuple[Path, Path]) -> None:
    """intercept.exclude: the browser's own TLS, uninspected, still leaves through the parent."""
    passing = shared_proxy(parent_policy(squid.url, "intercept: {exclude: [localhost]}\n"))
    with tls_site(site_cert) as site:
        context = ssl.create_default_context(cafile=str(site_cert[0]))  # the site's own certificate
        conn = http.client.HTTPSConnection("127.0.0.1", passing.port, timeout=30, context=context)
        conn.set_tunnel("localhost", site.port)
        try:
            conn.request("GET", "/passed")
            r = conn.getresponse()
            assert r.status == 200 and r.read() == b"secure hello at /passed\n"
        finally:
            conn.close()
    assert site.server_names == ["localhost"]
    squid.wait_for(f"CONNECT 127.0.0.1:{site.port} ", "TCP_TUNNEL/200")


def raw_tunnel(proxy: Proxy, host: str, port: int) -> bytes:
    """CONNECT host:port, send bytes of neither TLS nor HTTP, return what comes back until close."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and (chunk := s.recv(65536)):
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        s.sendall(b"\x00\x01binary protocol")
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while (chunk := s.recv(65536)) and b"raw reply" not in answer:
                answer += chunk
        return answer


def test_a_raw_tunnel_goes_through_the_parent_and_a_denied_one_nowhere(proxy: Proxy, squid: Squid) -> None:
    with raw_server("127.0.0.62") as allowed, raw_server("127.0.0.64") as denied:
        assert raw_tunnel(proxy, "127.0.0.64", denied.port) == b""  # refused: the tunnel closes
        assert raw_tunnel(proxy, "127.0.0.62", allowed.port) == b"raw reply"
    assert allowed.connections == [b"\x00\x01binary protocol"] and denied.connections == []
    squid.wait_for(f"CONNECT 127.0.0.62:{allowed.port} ", "TCP_TUNNEL/200")
    assert not any(f"127.0.0.64:{denied.port}" in line for line in squid.log())


def test_a_no_proxy_destination_goes_direct(proxy: Proxy, squid: Squid) -> None:
    with upstream("127.0.0.63") as direct, upstream("127.0.0.62") as parented:
        assert proxy.get(f"{direct.base}/direct").status == 200
        assert proxy.get(f"{parented.base}/after").status == 200
    assert direct.requests == ["/direct"]
    squid.wait_for(f"127.0.0.62:{parented.port} ")  # the later request reached Squid's log…
    assert not any(f"127.0.0.63:{direct.port}" in line for line in squid.log())  # …this one never did


def test_a_denied_destination_is_blocked_before_the_parent(proxy: Proxy, squid: Squid) -> None:
    with upstream("127.0.0.64") as denied, upstream("127.0.0.62") as allowed:
        blocked = proxy.get(f"{denied.base}/x")
        assert proxy.get(f"{allowed.base}/later").status == 200
    assert blocked.status == 403 and "policy.deny" in blocked.text
    assert denied.requests == []
    squid.wait_for(f"127.0.0.62:{allowed.port} ")
    assert not any(f"127.0.0.64:{denied.port}" in line for line in squid.log())


def test_a_url_feed_is_fetched_through_the_parent(proxy_factory: ProxyPool, squid: Squid) -> None:
    routes = {"/feed.txt": (200, {"Content-Type": "text/plain"}, b"127.0.0.66\n")}
    with upstream("127.0.0.65", routes) as feed_host, upstream("127.0.0.66") as listed:
        feed = f'feeds: [{{name: remote, format: ip, url: "{feed_host.base}/feed.txt", refresh: 3600}}]\n'
        proxy = proxy_factory(parent_policy(squid.url, feed))
        wait_until(lambda: proxy.get(f"{listed.base}/").status == 403, 30, "the fetched feed to block")
    line = squid.wait_for(f"GET {feed_host.base}/feed.txt ")
    assert "TCP_MISS/200" in line


def test_the_parents_credentials_go_on_the_connect(proxy_factory: ProxyPool, tmp_path: Path) -> None:
    (tmp_path / "squid").mkdir()
    with running_squid(tmp_path / "squid", with_auth=True) as guarded, upstream("127.0.0.67") as site:
        # Without credentials the parent refuses (407), and clickguard says so.
        bare = proxy_factory(parent_policy(guarded.url), private=True)
        refused = bare.get(f"{site.base}/bare")
        assert refused.status == 502 and "407" in refused.text
        bare.stop()
        user = USER
        password = PASSWORD.replace(":", "%3A")
        signed = proxy_factory(parent_policy(f"http://{user}:{password}@{SQUID_HOST}:{guarded.port}"),
                               private=True)
        r = signed.get(f"{site.base}/signed")
        assert r.status == 200 and site.requests == ["/signed"]
        guarded.wait_for(f"CONNECT 127.0.0.67:{site.port} {USER} ", "TCP_TUNNEL/200")
        assert PASSWORD not in signed.log()


def test_the_parent_down_gives_a_clear_502_and_the_proxy_keeps_serving(proxy_factory: ProxyPool) -> None:
    dead = free_port(SQUID_HOST)  # nothing listens there
    proxy = proxy_factory(parent_policy(f"http://{SQUID_HOST}:{dead}"))
    with upstream("127.0.0.68") as site, upstream("127.0.0.63") as direct:
        for _ in range(3):
            r = proxy.get(f"{site.base}/")
            assert r.status == 502  # mitmproxy's Bad Gateway, naming the parent it could not reach
            assert "Connect call failed" in r.text and SQUID_HOST in r.text and str(dead) in r.text
        assert proxy.get(f"{direct.base}/still").status == 200  # no_proxy: direct, still served
    assert site.requests == []
    assert proxy.process.poll() is None
    log = proxy.log()
    assert "Traceback" not in log
    assert log.count(f"the parent proxy http://{SQUID_HOST}:{dead} cannot be reached") == 1  # said once


# --- the policy key and the feed route ---------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("upstream: {proxy: 'https://p.example:3128'}", "upstream.proxy: only http:// parent proxies"),
    ("upstream: {proxy: 'http://p.example'}", "upstream.proxy: give the parent's port"),
    ("upstream: {proxy: 'p.example:3128'}", "upstream.proxy: only http://"),
    ("upstream: {proxy: 'http://p.example:3128/x'}", "upstream.proxy: a proxy URL is http://HOST:PORT only"),
    ("upstream: {proxy: 'http://p.example:70000'}", "upstream.proxy: not a valid URL"),
    ("upstream: {no_proxy: [ok.example, 'bad name!']}", "upstream.no_proxy: entry 2: must be a host name"),
    ("upstream: {no_proxy: ok.example}", "upstream.no_proxy: must be a list"),
    ("upstream: {proxy: 'http://p.example:3128', via: x}", "upstream.via"),
    ("upstream: {connect_by: ip}", "upstream.connect_by"),
])
def test_upstream_errors_name_the_field(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text + "\n", filename="p.yaml", base_dir=Path("."))
    assert f"p.yaml:1: {expected}" in str(caught.value)


def test_the_password_is_never_shown() -> None:
    policy = parse_policy("upstream: {proxy: 'http://me:hunter2@p.example:3128'}\n",
                          filename="p.yaml", base_dir=Path("."))
    parent = policy.upstream.proxy
    assert parent is not None
    assert "hunter2" not in repr(parent) and "hunter2" not in repr(policy.upstream)
    assert parent.url == "http://p.example:3128"
    assert parent.authorization() == "Basic " + b64encode(b"me:hunter2").decode()


NO_PROXY = ("upstream: {proxy: 'http://p.example:3128', "
            "no_proxy: [corp.example, 10.0.0.0/8, '::1']}\n")


@pytest.mark.parametrize(("host", "addresses", "direct"), [
    ("corp.example", (), True),
    ("www.corp.example", ("198.51.100.1",), True),  # a listed name covers its subdomains
    ("notcorp.example", (), False),
    ("intranet.example", ("10.1.2.3",), True),  # every address clickguard resolved is listed
    ("mixed.example", ("10.1.2.3", "198.51.100.1"), False),
    ("unresolved.example", (), False),
    ("10.9.9.9", ("10.9.9.9",), True),
    ("::1", ("::1",), True),
    ("p.example", (), True),  # the parent itself
])
def test_what_goes_direct(host: str, addresses: tuple[str, ...], direct: bool) -> None:
    upstream_config = parse_policy(NO_PROXY, filename="p.yaml", base_dir=Path(".")).upstream
    assert upstream_config.goes_direct(host, addresses) is direct


THROUGH_PARENT = FeedRoute("http://p.example:3128",
                           {"Proxy-Authorization": "Basic " + b64encode(b"u:p").decode()})


@pytest.mark.parametrize(("url", "route"), [
    ("http://feeds.example/a.csv", THROUGH_PARENT),
    ("https://feeds.example/a.csv", THROUGH_PARENT),
    ("https://mirror.corp.example/a.csv", FeedRoute()),
    ("http://10.1.1.1:8080/a.csv", FeedRoute()),
    ("http://[::1]/a.csv", FeedRoute()),
])
def test_feed_routes(url: str, route: FeedRoute) -> None:
    upstream_config = parse_policy(NO_PROXY.replace("http://p.", "http://u:p@p."), filename="p.yaml",
                                   base_dir=Path(".")).upstream
    assert feed_route(upstream_config, url) == route
