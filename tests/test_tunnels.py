"""Tunnels and connections through the real proxy: every name judged, and only the address judged reached.

`intercept.exclude` names domains whose TLS clickguard does not open (pinned apps,
banking). A tunnel names its destination up to three times: the CONNECT host, the
TLS ClientHello's SNI, and (plain HTTP) the Host header. Each test here shapes a
tunnel whose names disagree, against a policy that excludes one and denies the
other, and checks that the denied host's content never arrives.

Only `localhost` resolves on the test machines (to loopback), so it plays the
connected host; the other name never needs to resolve. The connection tests give
the proxy a name server that answers a name differently the second time it is
asked (`REBINDING_DNS`): what was judged must be what is connected to.
"""

from __future__ import annotations

import base64
import socket
import ssl
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickguard.proxy.guard import tunnel_passage
from tests.harness import HTML, Proxy, ProxyPool, raw_server, start_proxy, upstream, write_policy

MARKER = b"content of the host behind the tunnel"


def client_hello(sni: str | None) -> bytes:
    """The ClientHello a TLS client sends, naming sni (or no name)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def through_tunnel(proxy: Proxy, connect_host: str, port: int, first_bytes: bytes,
                   credentials: str | None = None) -> bytes:
    """CONNECT connect_host:port (with `user:password` for the proxy, if given), send first_bytes into
    the tunnel; everything that comes back until close."""
    auth = f"Proxy-Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n" \
        if credentials else ""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(f"CONNECT {connect_host}:{port} HTTP/1.1\r\nHost: {connect_host}:{port}\r\n"
                  f"{auth}\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                return answer
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return answer
        s.sendall(first_bytes)
        received = rest
        try:
            while (chunk := s.recv(65536)) and MARKER not in received + chunk:
                received += chunk
            received += chunk
        except ConnectionResetError:
            pass
        return received


def plain_get(host: str) -> bytes:
    """An HTTP/1.1 GET naming host in its Host header."""
    return f"GET /inside HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize(("connect_host", "sni", "passage"), [
    ("bank.example", "bank.example", "pass"),
    ("www.bank.example", "login.bank.example", "pass"),  # subdomains of excluded domains
    ("bank.example", "pinned.example", "pass"),  # two excluded domains
    ("BANK.example.", "bank.EXAMPLE", "pass"),  # as the judge spells names
    ("bank.example", None, "pass"),  # no SNI: the server only has the excluded host's address
    ("bank.example", "evil.example", "refuse"),  # an excluded host fronting another name
    ("evil.example", "bank.example", "refuse"),  # another host dressed as an excluded one
    ("127.0.0.4", "bank.example", "refuse"),  # an address is never an excluded domain
    ("notbank.example", "notbank.example", "intercept"),  # names, not substrings
    ("evil.example", None, "intercept"),
    ("evil.example", "other.example", "intercept"),  # each request inside is judged
])
def test_tunnel_passage(connect_host: str, sni: str | None, passage: str) -> None:
    excluded = frozenset({"bank.example", "pinned.example"})
    assert tunnel_passage(excluded, connect_host, sni) == passage


# localhost (the connected host) is denied; bank.example is excluded (and never needs to resolve).
DENY_CONNECTED = "intercept: {exclude: [bank.example]}\ndeny: {domains: [localhost]}\n"
# localhost (the connected host) is excluded; evil.example is denied.
EXCLUDE_CONNECTED = "intercept: {exclude: [localhost]}\ndeny: {domains: [evil.example]}\n"


@pytest.mark.parametrize(("policy", "sni"), [
    (DENY_CONNECTED, "bank.example"),  # a denied CONNECT host dressed as an excluded name
    (EXCLUDE_CONNECTED, "evil.example"),  # an excluded CONNECT host fronting a denied name
    (EXCLUDE_CONNECTED, "elsewhere.example"),  # ... or any name not excluded
], ids=["denied-host-excluded-sni", "excluded-host-denied-sni", "excluded-host-other-sni"])
def test_tls_tunnel_whose_names_disagree_is_refused(shared_proxy: ProxyPool, policy: str, sni: str) -> None:
    proxy = shared_proxy(policy)
    with raw_server(reply=MARKER) as server:
        received = through_tunnel(proxy, "localhost", server.port, client_hello(sni))
        assert MARKER not in received
        assert server.connections == []  # the proxy never connected to it
    # (The CONNECT host alone is judged, and allowed, at the CONNECT when it is an excluded one.)
    [record] = [r for r in proxy.audit_of(f"https://localhost:{server.port}") if r["action"] != "allow"]
    assert (record["event"], record["action"]) == ("tunnel", "block")
    assert sni in str(record)


@pytest.mark.parametrize("sni", ["localhost", "www.localhost", None],
                         ids=["same-name", "subdomain", "no-sni"])
def test_tls_tunnel_whose_names_are_all_excluded_passes(shared_proxy: ProxyPool, sni: str | None) -> None:
    proxy = shared_proxy(EXCLUDE_CONNECTED)
    with raw_server(reply=MARKER) as server:
        received = through_tunnel(proxy, "localhost", server.port, client_hello(sni))
        assert MARKER in received  # passed through uninspected, byte for byte
        assert len(server.connections) == 1


def test_plain_tunnel_to_excluded_host_is_judged_by_its_host_header(shared_proxy: ProxyPool) -> None:
    proxy = shared_proxy(EXCLUDE_CONNECTED)
    with upstream("127.0.0.1") as site:
        received = through_tunnel(proxy, "localhost", site.port, plain_get("evil.example"))
        assert b"403" in received.split(b"\r\n", 1)[0]
        assert b"x-clickguard-action: block" in received.lower()
        assert site.requests == []


def test_plain_tunnel_to_denied_host_with_excluded_host_header_is_judged(shared_proxy: ProxyPool) -> None:
    proxy = shared_proxy(DENY_CONNECTED)
    with upstream("127.0.0.1") as site:
        received = through_tunnel(proxy, "localhost", site.port, plain_get("bank.example"))
        assert b"403" in received.split(b"\r\n", 1)[0]
        assert site.requests == []


def test_plain_tunnel_to_excluded_host_with_its_own_host_header_passes(shared_proxy: ProxyPool) -> None:
    proxy = shared_proxy(EXCLUDE_CONNECTED)
    with upstream("127.0.0.1") as site:
        received = through_tunnel(proxy, "localhost", site.port, plain_get(f"localhost:{site.port}"))
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
        assert site.requests == ["/inside"]


def test_tunnel_of_neither_tls_nor_http_is_judged_by_its_host(shared_proxy: ProxyPool) -> None:
    proxy = shared_proxy(DENY_CONNECTED)
    with raw_server(reply=MARKER) as server:
        received = through_tunnel(proxy, "localhost", server.port, b"SSH-2.0-OpenSSH_9.6\r\n")
        assert MARKER not in received
        assert server.connections == []
    [record] = [r for r in proxy.audit_of(f"https://localhost:{server.port}") if r["action"] != "allow"]
    assert (record["event"], record["action"], record["reasons"]) == ("tunnel", "block", ["policy.deny"])


# The proxy's name server, as a rebinding attacker runs it: each name's answers in turn (the last
# one repeats); None is "no such name". Installed in the proxy process as its sitecustomize.
REBINDING_DNS = """\
import socket
_answers = {ANSWERS!r}
_asked = {{}}
_getaddrinfo = socket.getaddrinfo

def getaddrinfo(host, port, *args, **kwargs):
    if host not in _answers:
        return _getaddrinfo(host, port, *args, **kwargs)
    turn = _asked[host] = _asked.get(host, -1) + 1
    answer = _answers[host][min(turn, len(_answers[host]) - 1)]
    if answer is None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _getaddrinfo(answer, port, *args, **kwargs)

socket.getaddrinfo = getaddrinfo
"""
LISTED = "127.0.0.3"  # the Thingbot the second answers name
ANSWERS = {
    "rebind.test": ["127.0.0.2", LISTED],  # an ordinary address for the check, then the Thingbot's
    # No answer for the check, the Thingbot's for the connect (a name for each test: the check's
    # failure is cached only so long).
    "late-held.test": [None, LISTED],
    "late-streamed.test": [None, LISTED],
}


def http_reply(body: bytes, *, length: bool = True) -> bytes:
    """A whole HTTP/1.1 response, closing its connection; without length its body runs to the close."""
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n"
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


@pytest.fixture(scope="module")
def rebinding_proxy(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Proxy]:
    """A proxy whose name server rebinds (ANSWERS), with LISTED in its Thingbot feed."""
    tmp_path = tmp_path_factory.mktemp("rebinding")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(REBINDING_DNS.format(ANSWERS=ANSWERS))
    (tmp_path / "thingbots.txt").write_text(f"{LISTED}\n")
    policy = write_policy(tmp_path, textwrap.dedent("""\
        feeds:
          - {name: thingbots, format: ip, path: thingbots.txt}
        """))
    proxy = start_proxy(tmp_path, policy, certs, env={"PYTHONPATH": str(site)})
    try:
        yield proxy
    finally:
        proxy.stop()


def test_connection_goes_to_the_address_judged_not_to_a_later_answer(rebinding_proxy: Proxy) -> None:
    with raw_server("127.0.0.2", reply=http_reply(b"the site judged")) as judged, \
            raw_server(LISTED, judged.port, reply=http_reply(MARKER)) as thingbot:
        r = rebinding_proxy.get(f"http://rebind.test:{judged.port}/page", HTML)
        assert (r.status, r.body) == (200, b"the site judged")
        assert thingbot.connections == []  # the request never reached the later answer
        assert len(judged.connections) == 1


@pytest.mark.parametrize("length", [True, False], ids=["held", "streamed"])
def test_connection_found_listed_once_connected_delivers_no_body(rebinding_proxy: Proxy,
                                                                 length: bool) -> None:
    # The check could not resolve the name (on_check_error: open lets it pass); the connect could.
    body = MARKER * (1 if length else 100_000)  # 3.7 MB without a length: streamed past max_body
    name = "late-held.test" if length else "late-streamed.test"
    with raw_server(LISTED, reply=http_reply(body, length=length)) as thingbot:
        r = rebinding_proxy.get(f"http://{name}:{thingbot.port}/payload", HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        assert MARKER not in r.body
        # (Its request was allowed, unchecked, under on_check_error: open, and recorded so.)
        [record] = [a for a in rebinding_proxy.audit_of(f"http://{name}:{thingbot.port}")
                    if a["event"] == "connected"]
        assert (record["action"], record["reasons"]) == ("block", ["landing.thingbot"])


def test_request_in_an_intercepted_tunnel_is_judged_by_its_host_header(shared_proxy: ProxyPool) -> None:
    # Inside a tunnel mitmproxy takes the request's host from the CONNECT; the server goes by Host.
    proxy = shared_proxy(EXCLUDE_CONNECTED)
    r = proxy.get_tls("127.0.0.2", 8443, "/fronted", {"Host": "evil.example", **HTML})
    assert (r.status, r.headers["x-clickguard-action"]) == (403, "block")
    [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
    assert record["url"] == "https://evil.example:8443/fronted" and record["reasons"] == ["policy.deny"]


# The CONNECT host localhost both excluded from interception and denied: refused at the CONNECT.
DENY_EXCLUDED = "intercept: {exclude: [localhost]}\ndeny: {domains: [localhost]}\n"
PROXY_USER = ("--set", "proxyauth=alice:tunnel-secret")


@pytest.mark.parametrize(("policy", "first_bytes", "event"), [
    (DENY_EXCLUDED, b"", "tunnel"),  # refused at the CONNECT itself
    (DENY_CONNECTED, client_hello("bank.example"), "tunnel"),  # at the ClientHello: its names disagree
    (DENY_CONNECTED, b"SSH-2.0-OpenSSH_9.6\r\n", "tunnel"),  # before connecting: neither TLS nor HTTP
    (DENY_CONNECTED, plain_get("localhost"), "decision"),  # plain HTTP inside: its request refused
], ids=["at-connect", "names-disagree", "neither-tls-nor-http", "plain-request-inside"])
def test_tunnel_refused_is_recorded_with_the_proxy_user(shared_proxy: ProxyPool, policy: str,
                                                        first_bytes: bytes, event: str) -> None:
    """With proxy authentication (on the CONNECT only), the record of a refused tunnel names its user."""
    proxy = shared_proxy(policy, *PROXY_USER)
    with raw_server(reply=MARKER) as server:
        received = through_tunnel(proxy, "localhost", server.port, first_bytes, "alice:tunnel-secret")
        assert MARKER not in received
        assert server.connections == []
    under = f"://localhost:{server.port}/"  # https for a tunnel, http for the plain request inside
    [record] = [r for r in proxy.audit() if under in r["url"] and r["action"] != "allow"]
    assert (record["event"], record["action"], record["user"]) == (event, "block", "alice"), record
