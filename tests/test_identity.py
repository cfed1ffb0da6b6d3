"""Proxy authentication (policy identity.proxy_auth) for real: an htpasswd file written by Debian's
`htpasswd -B`, and Debian's slapd started here on loopback with users and groupOfNames groups.

The proxy answers 407 with ``Proxy-Authenticate: Basic realm="clickguard"`` to requests and
CONNECTs without credentials it accepts, passes the user to the audit records (tunnels and
continues included), never hands the credentials on upstream, serves the PAC file without
asking, caches a successful check for proxy_auth.cache seconds and answers 503 (not 407)
while the directory is down.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clickguard.decision.authentication import (
    AuthenticationBusy,
    Authenticator,
    CredentialCache,
    Directory,
    DirectoryUnavailable,
    PasswordFile,
)
from clickguard.decision.identity import Identity
from clickguard.errors import PolicyError
from clickguard.policy.identity import LdapConfig, identity_file_problems, parse_htpasswd, read_htpasswd
from clickguard.policy.model import parse_policy
from clickguard.proxy.authentication import basic_credentials
from tests.harness import (
    HTML,
    Proxy,
    ProxyPool,
    continue_link,
    free_port,
    port_open,
    required_tool,
    upstream,
    wait_until,
    write_policy,
)

SITE, LISTED, DENIED = "127.0.12.1", "127.0.12.2", "127.0.12.3"  # this module's upstreams
LDAP_HOST = "127.0.12.9"
SUFFIX = "dc=example,dc=org"
SERVICE_DN = f"cn=clickguard,ou=services,{SUFFIX}"
USERS = {"alice": "alice-pw", "bob": "b0b:with colon"}  # a password may hold ':'


def auth(user: str, password: str) -> dict[str, str]:
    """The Proxy-Authorization header a browser sends."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


def with_html(headers: dict[str, str]) -> dict[str, str]:
    """A page navigation carrying these headers too."""
    return {**HTML, **headers}


def connect(proxy: Proxy, host: str, port: int, headers: dict[str, str], inner: str | None = None) -> bytes:
    """CONNECT host:port through the proxy (and one plain HTTP request inside); everything read back."""
    lines = [f"CONNECT {host}:{port} HTTP/1.1", f"Host: {host}:{port}",
             *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = _read_head(s)
        if inner is None or not answer.startswith(b"HTTP/1.1 200"):
            return answer
        s.sendall(inner.encode())  # with Connection: close, read until the proxy closes
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
        return answer + rest


def _read_head(s: socket.socket) -> bytes:
    """The CONNECT answer: up to its blank line, and its body when it says how long it is."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := s.recv(1)):
        data += chunk
    head = data.decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
            while len(data) < len(head) + length and (chunk := s.recv(65536)):
                data += chunk
    return data


def status_of(answer: bytes) -> int:
    """The status code of an HTTP/1.1 answer's first line."""
    return int(answer.split(b" ", 2)[1])


# --- the users file, as Debian's htpasswd writes it ------------------------------------------------

@pytest.fixture(scope="module")
def htpasswd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice and bob, bcrypt (htpasswd -B, its default cost)."""
    tool = required_tool("htpasswd", "apt-get install apache2-utils")
    path = tmp_path_factory.mktemp("users") / "users.htpasswd"
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run([tool, "-B", "-b", *(["-c"] if i == 0 else []), str(path), user, password],
                       check=True, capture_output=True)
    return path


def htpasswd_policy(path: Path, extra: str = "") -> str:
    """A policy authenticating against path; 127.0.12.2 listed (warn), 127.0.12.3 and localhost denied."""
    return textwrap.dedent(f"""\
        feeds:
          - {{name: thingbots, format: ip, path: thingbots.txt}}
        actions: {{landing.thingbot: warn}}
        deny: {{networks: [{DENIED}], domains: [localhost]}}
        intercept: {{exclude: [localhost]}}
        identity:
          proxy_auth:
            htpasswd: {path}
        """) + extra


FILES = {"thingbots.txt": f"{LISTED}\n"}


@pytest.fixture
def proxy(shared_proxy: ProxyPool, htpasswd_file: Path) -> Proxy:
    """The module's proxy, authenticating against the htpasswd file."""
    return shared_proxy(htpasswd_policy(htpasswd_file), files=FILES)


@pytest.mark.parametrize("headers", [
    {},
    auth("alice", "wrong"),
    auth("alice", ""),
    auth("nobody", "alice-pw"),
    auth("alice", "alice-pw" + "x"),
    {"Proxy-Authorization": "Bearer alice-pw"},
    {"Proxy-Authorization": "Basic !!!"},
    auth("ALICE", "alice-pw"),
], ids=["none", "wrong", "empty", "unknown", "longer", "scheme", "garbage", "case"])
def test_407_without_the_right_credentials(proxy: Proxy, headers: dict[str, str]) -> None:
    with upstream(SITE) as site:
        r = proxy.get(f"{site.base}/", with_html(headers))
        assert r.status == 407
        assert r.headers["proxy-authenticate"] == 'Basic realm="clickguard"'
        answer = connect(proxy, SITE, site.port, headers)
        assert status_of(answer) == 407
        assert b'proxy-authenticate: basic realm="clickguard"' in answer.lower()
        assert site.requests == []


def test_the_right_credentials_pass_and_name_the_user(proxy: Proxy) -> None:
    with upstream(SITE) as site:
        for user, password in USERS.items():
            r = proxy.get(f"{site.base}/{user}", with_html(auth(user, password)))
            assert r.status == 200, r.text
        # The password never goes further than the proxy.
        assert all("proxy-authorization" not in h for h in site.headers)
        records = proxy.wait_for_audit(lambda a: len(proxy.audit_of(site.base)) == 2)
        assert {(r["url"].rsplit("/", 1)[1], r["user"]) for r in proxy.audit_of(site.base)} == {
            ("alice", "alice"), ("bob", "bob")}
        assert records


def test_a_tunnel_belongs_to_the_user_of_its_connect(proxy: Proxy) -> None:
    with upstream(SITE) as site:
        inner = f"GET /tunnelled HTTP/1.1\r\nHost: {SITE}:{site.port}\r\nAccept: text/html\r\n" \
                "Sec-Fetch-Mode: navigate\r\nConnection: close\r\n\r\n"
        answer = connect(proxy, SITE, site.port, auth("alice", "alice-pw"), inner)
        assert status_of(answer) == 200 and b"hello from" in answer, answer
        assert site.requests == ["/tunnelled"]
        proxy.wait_for_audit(lambda a: bool(proxy.audit_of(site.base)))
        assert [r["user"] for r in proxy.audit_of(site.base)] == ["alice"]


def test_a_refused_tunnel_names_its_user(proxy: Proxy) -> None:
    # localhost is excluded from interception, so its CONNECT is judged (and denied) as a tunnel.
    port = free_port()
    answer = connect(proxy, "localhost", port, auth("bob", USERS["bob"]))
    assert status_of(answer) == 403 and b"x-clickguard-action: block" in answer.lower()
    records = proxy.wait_for_audit(lambda a: any(r["url"] == f"https://localhost:{port}/" for r in a))
    mine = [r for r in records if r["url"] == f"https://localhost:{port}/"]
    assert [(r["event"], r["action"], r["user"]) for r in mine] == [("tunnel", "block", "bob")]


def test_block_warn_and_continue_for_a_signed_in_user(proxy: Proxy) -> None:
    alice = auth("alice", "alice-pw")
    with upstream(DENIED) as denied, upstream(LISTED) as listed:
        r = proxy.get(f"{denied.base}/", with_html(alice))
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        r = proxy.get(f"{listed.base}/page", with_html(alice))
        assert r.status == 403 and r.headers["x-clickguard-action"] == "warn"
        link = continue_link(r.text)
        assert proxy.get(link, HTML).status == 407  # the continue link wants the user too
        r = proxy.get(link, with_html(alice))
        assert r.status == 303 and r.headers["location"] == f"{listed.base}/page"
        assert proxy.get(f"{listed.base}/page", with_html(alice)).status == 200
        # Continued for alice, not for bob on the same address.
        assert proxy.get(f"{listed.base}/page", with_html(auth("bob", USERS["bob"]))).status == 403
        proxy.wait_for_audit(lambda a: len([r for r in a if r["event"] == "continue"]) >= 1)
        mine = [r for r in proxy.audit() if r["url"].startswith((denied.base, listed.base))]
        assert [(r["event"], r["action"], r["user"]) for r in mine] == [
            ("decision", "block", "alice"), ("decision", "warn", "alice"), ("continue", "allow", "alice"),
            ("decision", "allow", "alice"), ("decision", "warn", "bob")]


@pytest.mark.parametrize("path", ["/proxy.pac", "/wpad.dat"])
def test_the_pac_file_needs_no_credentials(proxy: Proxy, path: str) -> None:
    # Browsers fetch it before they use (or authenticate to) the proxy.
    assert proxy.get(f"http://clickguard.local{path}").status != 407
    assert proxy.get("http://clickguard.local/").status == 407
    assert proxy.get("http://clickguard.local/", auth("alice", "alice-pw")).status == 200


def test_a_changed_htpasswd_file_is_picked_up(tmp_path: Path, proxy_factory: ProxyPool,
                                              htpasswd_file: Path) -> None:
    users = tmp_path / "users.htpasswd"
    shutil.copy(htpasswd_file, users)
    (tmp_path / "thingbots.txt").write_text(FILES["thingbots.txt"])
    proxy = proxy_factory(htpasswd_policy(users))
    with upstream(SITE) as site:
        assert proxy.get(f"{site.base}/", auth("carol", "carol-pw")).status == 407
        assert proxy.get(f"{site.base}/", auth("alice", "alice-pw")).status == 200
        subprocess.run(["htpasswd", "-B", "-b", str(users), "carol", "carol-pw"], check=True,
                       capture_output=True)
        subprocess.run(["htpasswd", "-D", str(users), "alice"], check=True, capture_output=True)
        wait_until(lambda: proxy.get(f"{site.base}/", auth("carol", "carol-pw")).status == 200, 30,
                   "carol to be let in")
        # alice's cached check went with the old file.
        assert proxy.get(f"{site.base}/", auth("alice", "alice-pw")).status == 407
        # A broken file keeps the last good users, and says where it is broken.
        users.write_text(users.read_text() + "mallory:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        proxy.wait_for_log("users.htpasswd:3: user 'mallory': unsalted SHA-1")
        assert proxy.get(f"{site.base}/", auth("carol", "carol-pw")).status == 200


def test_turned_on_by_a_reload_with_a_broken_file_nobody_passes(tmp_path: Path,
                                                               proxy_factory: ProxyPool) -> None:
    users = tmp_path / "users.htpasswd"
    users.write_text("alice:plain-text\n")
    proxy = proxy_factory("version: 1\n")
    with upstream(SITE) as site:
        assert proxy.get(f"{site.base}/").status == 200  # authentication off
        write_policy(tmp_path, "identity: {proxy_auth: {htpasswd: users.htpasswd}}\n")
        wait_until(lambda: proxy.get(f"{site.base}/").status == 503, 30, "the new policy")
        assert proxy.get(f"{site.base}/", auth("alice", "plain-text")).status == 503
        proxy.wait_for_log("users.htpasswd:1: user 'alice': not a bcrypt hash")
        subprocess.run(["htpasswd", "-B", "-b", "-c", str(users), "alice", "alice-pw"], check=True,
                       capture_output=True)
        wait_until(lambda: proxy.get(f"{site.base}/").status == 407, 30, "the repaired file")
        assert proxy.get(f"{site.base}/", auth("alice", "alice-pw")).status == 200


def test_a_bad_htpasswd_file_stops_the_start(tmp_path: Path, certs: Path) -> None:
    users = tmp_path / "users.htpasswd"
    users.write_text("alice:$apr1$abc$def\n")
    (tmp_path / "thingbots.txt").write_text(FILES["thingbots.txt"])
    policy = write_policy(tmp_path, htpasswd_policy(users))
    assert [str(p) for p in identity_file_problems(parse_policy(
        policy.read_text(), filename=str(policy), base_dir=tmp_path).identity)] == [
        f"{users}:1: user 'alice': Apache MD5 (htpasswd -m), fast to crack; write the entry again "
        "with `htpasswd -B`"]
    run = subprocess.run([sys.executable, "-m", "clickguard.cli", "run", "--listen",
                          f"127.0.0.1:{free_port()}", "--policy", str(policy), "--certs", str(certs),
                          "--state-dir", str(tmp_path / "var")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "users.htpasswd:1: user 'alice': Apache MD5" in run.stdout + run.stderr


# --- the file format and the policy section, without a proxy --------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("alice\n", "f:1: not a 'user:hash' line"),
    ("# comment\n\n:$2y$05$" + "a" * 53 + "\n", "f:3: not a 'user:hash' line"),
    ("a:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "f:1: user 'a': unsalted SHA-1"),
    ("a:$apr1$x$y\n", "f:1: user 'a': Apache MD5"),
    ("a:plain\n", "f:1: user 'a': not a bcrypt hash"),
    ("a:$2y$03$" + "a" * 53 + "\n", "f:1: user 'a': bcrypt cost 3 is outside 4..14"),
    ("a:$2y$15$" + "a" * 53 + "\n", "f:1: user 'a': bcrypt cost 15 is outside 4..14"),
    ("a:$2y$05$" + "a" * 53 + "\na:$2y$05$" + "a" * 53 + "\n", "f:2: user 'a' is listed twice"),
])
def test_htpasswd_lines(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_htpasswd(text, "f")
    assert str(e.value).startswith(expected)


@pytest.mark.parametrize(("body", "field", "message"), [
    ("proxy_auth: {}", "identity.proxy_auth", "exactly one"),
    ("proxy_auth: {htpasswd: u, ldap: {url: 'ldap://h', user_base: 'o=x'}}", "identity.proxy_auth",
     "exactly one"),
    ("proxy_auth: {htpasswd: u, cache: 0}", "identity.proxy_auth.cache", "at least 1 second"),
    ("proxy_auth: {ldap: {url: 'http://h', user_base: 'o=x'}}", "identity.proxy_auth.ldap.url", "ldap://"),
    ("proxy_auth: {ldap: {url: 'ldap://h', user_base: 'o=x', user_filter: '(uid=%s)'}}",
     "identity.proxy_auth.ldap.user_filter", "{user}"),
    ("proxy_auth: {ldap: {url: 'ldap://h', user_base: 'o=x', group_filter: '(member={dn}'}}",
     "identity.proxy_auth.ldap.group_filter", "balanced"),
    ("proxy_auth: {ldap: {url: 'ldap://h', user_base: 'o=x', bind_dn: 'cn=s'}}",
     "identity.proxy_auth.ldap.bind_dn", "bind_password_file"),
    ("proxy_auth: {ldap: {url: 'ldaps://h', user_base: 'o=x', start_tls: true}}",
     "identity.proxy_auth.ldap.start_tls", "TLS already"),
    ("proxy_auth: {ldap: {url: 'ldap://h'}}", "identity.proxy_auth.ldap.user_base", ""),
    ("proxy_auth: {htpasswd: u, realm: x}", "identity.proxy_auth.realm", ""),
])
def test_policy_problems_name_line_and_field(tmp_path: Path, body: str, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(f"version: 1\nidentity:\n  {body}\n", filename="p.yaml", base_dir=tmp_path)
    assert f"p.yaml:3: {field}: " in str(e.value) and message in str(e.value), str(e.value)


def test_policy_paths_are_relative_to_the_policy(tmp_path: Path) -> None:
    policy = parse_policy("identity: {proxy_auth: {htpasswd: users}}\n", filename="p", base_dir=tmp_path)
    auth = policy.identity.proxy_auth
    assert auth is not None and auth.htpasswd == tmp_path / "users"
    assert parse_policy("version: 1\n", filename="p", base_dir=tmp_path).identity.proxy_auth is None


@pytest.mark.parametrize(("header", "expected"), [
    ("Basic " + base64.b64encode(b"alice:pw").decode(), ("alice", "pw")),
    ("basic  " + base64.b64encode(b"a:b:c").decode(), ("a", "b:c")),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
    ("Basic " + base64.b64encode(b"\xff:pw").decode(), None),
    ("Basic YWxpY2U6cHc", None),  # unpadded
    ("Digest abc", None),
    ("", None),
])
def test_basic_credentials(header: str, expected: tuple[str, str] | None) -> None:
    assert basic_credentials(header) == expected


def test_the_cache_forgets_after_its_time() -> None:
    now = [0.0]
    cache = CredentialCache(10.0, maxsize=2, timer=lambda: now[0])
    key = cache.digest("alice", "pw")
    assert key != cache.digest("alic", "epw") and key != CredentialCache(10.0).digest("alice", "pw")
    cache.put(key, Identity("alice"))
    assert cache.get(key) == Identity("alice")
    now[0] = 10.5
    assert cache.get(key) is None
    for i in range(5):  # bounded: the oldest go
        cache.put(cache.digest(f"u{i}", "pw"), Identity(f"u{i}"))
    assert len(cache) == 2


def test_the_password_file_checks_bcrypt_as_apache_wrote_it(htpasswd_file: Path) -> None:
    users = PasswordFile.load(htpasswd_file)
    assert users.check("alice", "alice-pw") == Identity("alice")
    assert users.check("bob", USERS["bob"]) == Identity("bob")
    assert users.check("alice", "bob") is None
    assert users.check("carol", "alice-pw") is None
    assert users.check("alice", "x" * 5000) is None


class CountedFile(PasswordFile):
    """The real htpasswd check, counting how often it runs."""

    calls = 0

    def check(self, user: str, password: str) -> Identity | None:
        CountedFile.calls += 1
        return super().check(user, password)


def test_one_check_for_many_requests_and_a_bound_on_waiting(htpasswd_file: Path) -> None:
    async def run() -> None:
        users = CountedFile(read_htpasswd(htpasswd_file))
        authenticator = Authenticator(users, 60.0, max_pending=3)
        try:
            # A browser's six connections at once: one bcrypt check, then the cache.
            found = await asyncio.gather(*(authenticator.authenticate("alice", "alice-pw") for _ in range(6)))
            assert found == [Identity("alice")] * 6 and CountedFile.calls == 1
            assert await authenticator.authenticate("alice", "alice-pw") == Identity("alice")
            assert CountedFile.calls == 1
            # Guesses are not cached, and past max_pending they are not even started.
            guesses = [authenticator.authenticate("alice", f"guess{i}") for i in range(5)]
            outcomes = await asyncio.gather(*guesses, return_exceptions=True)
            assert outcomes[:3] == [None] * 3
            assert all(isinstance(o, AuthenticationBusy) for o in outcomes[3:])
            assert CountedFile.calls == 4 and len(authenticator.cache) == 1
        finally:
            authenticator.close()

    asyncio.run(run())


# --- Debian's slapd -------------------------------------------------------------------------------

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
suffix "{suffix}"
directory {dir}/db
# Users bind as themselves (auth); only the service account reads the directory.
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{service}" read by * none
"""

LDIF = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{suffix}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{suffix}
objectClass: organizationalUnit
ou: services

dn: {service}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: clickguard
userPassword: service-secret

dn: uid=alice,ou=people,{suffix}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Example
userPassword: alice-ldap

dn: uid=bob,ou=people,{suffix}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Example
userPassword: bob-ldap

dn: cn=finance,ou=groups,{suffix}
objectClass: groupOfNames
cn: finance
member: uid=alice,ou=people,{suffix}

dn: cn=staff,ou=groups,{suffix}
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,{suffix}
member: uid=bob,ou=people,{suffix}
"""


@dataclass
class Slapd:
    """Debian's slapd on one loopback address, its database loaded by slapadd, in the foreground."""

    directory: Path
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    def start(self) -> None:
        """Start slapd and wait until it answers (-d 0: in the foreground, nothing logged)."""
        self.process = subprocess.Popen(
            ["/usr/sbin/slapd", "-h", f"{self.url}/", "-f", str(self.directory / "slapd.conf"), "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"slapd exited with {self.process.returncode}")
            return port_open(self.host, self.port)

        wait_until(ready, 30, "slapd to listen")

    def stop(self) -> None:
        """Stop slapd and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def new_slapd(directory: Path, host: str) -> Slapd:
    """A loaded, running slapd in directory."""
    if not os.access("/usr/sbin/slapd", os.X_OK):
        pytest.fail("/usr/sbin/slapd not found; the tests need it: apt-get install slapd ldap-utils")
    slapadd = required_tool("slapadd", "apt-get install slapd")
    (directory / "db").mkdir(parents=True)
    values = {"dir": directory, "suffix": SUFFIX, "service": SERVICE_DN}
    (directory / "slapd.conf").write_text(SLAPD_CONF.format(**values))
    (directory / "data.ldif").write_text(LDIF.format(**values))
    subprocess.run([slapadd, "-f", str(directory / "slapd.conf"), "-l", str(directory / "data.ldif")],
                   check=True, capture_output=True)
    slapd = Slapd(directory, host, free_port(host))
    slapd.start()
    return slapd


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """The module's directory server."""
    server = new_slapd(tmp_path_factory.mktemp("slapd"), LDAP_HOST)
    yield server
    server.stop()


def ldap_policy(url: str, cache: str = "5m") -> str:
    """A policy authenticating against the directory at url (the service password in a file)."""
    return textwrap.dedent(f"""\
        identity:
          proxy_auth:
            cache: {cache}
            ldap:
              url: {url}
              bind_dn: "{SERVICE_DN}"
              bind_password_file: service.secret
              user_base: "ou=people,{SUFFIX}"
              group_base: "ou=groups,{SUFFIX}"
        """)


LDAP_FILES = {"service.secret": "service-secret\n"}


def directory_config(url: str, password: str = "service-secret") -> LdapConfig:
    return LdapConfig(url=url, bind_dn=SERVICE_DN, bind_password=password,
                      user_base=f"ou=people,{SUFFIX}", group_base=f"ou=groups,{SUFFIX}")


def test_the_directory_checks_passwords_and_reads_groups(slapd: Slapd) -> None:
    directory = Directory(directory_config(slapd.url), "service-secret")
    assert directory.check("alice", "alice-ldap") == Identity("alice", frozenset({"finance", "staff"}))
    assert directory.check("bob", "bob-ldap") == Identity("bob", frozenset({"staff"}))
    # The directory matches names ignoring case and spaces: the identity is its own spelling.
    assert directory.check(" ALICE ", "alice-ldap") == Identity("alice", frozenset({"finance", "staff"}))
    for user, password in [("alice", "bob-ldap"), ("alice", ""), ("carol", "x"), ("*", "alice-ldap"),
                           ("alice)(uid=*", "alice-ldap"), ("clickguard", "service-secret")]:
        assert directory.check(user, password) is None, (user, password)
    with pytest.raises(DirectoryUnavailable, match="service account"):
        Directory(directory_config(slapd.url), "wrong").check("alice", "alice-ldap")


def test_ldap_users_through_the_proxy(shared_proxy: ProxyPool, slapd: Slapd) -> None:
    proxy = shared_proxy(ldap_policy(slapd.url), files=LDAP_FILES)
    with upstream(SITE) as site:
        assert proxy.get(f"{site.base}/", with_html(auth("alice", "bob-ldap"))).status == 407
        assert proxy.get(f"{site.base}/", with_html(auth("alice", ""))).status == 407
        assert status_of(connect(proxy, SITE, site.port, auth("bob", "alice-ldap"))) == 407
        r = proxy.get(f"{site.base}/a", with_html(auth("Alice", "alice-ldap")))
        assert r.status == 200, (r.text, proxy.log())
        answer = connect(proxy, SITE, site.port, auth("bob", "bob-ldap"))
        assert status_of(answer) == 200, (answer, proxy.log())
        proxy.wait_for_audit(lambda a: bool(proxy.audit_of(site.base)))
        assert [r["user"] for r in proxy.audit_of(site.base)] == ["alice"]


def test_a_directory_outage_answers_503_after_the_cache(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    server = new_slapd(tmp_path / "slapd", "127.0.12.10")
    try:
        proxy = proxy_factory(ldap_policy(server.url, cache="5s"), files=LDAP_FILES)
        alice = with_html(auth("alice", "alice-ldap"))
        with upstream(SITE) as site:
            # Checked against the directory (the click host's page: served at once, by the proxy).
            assert proxy.get("http://clickguard.local/", alice).status == 200
            server.stop()
            # Within the cache's time: no round trip, alice passes (decided as the headers arrive).
            assert proxy.get(f"{site.base}/", alice).status == 200
            # Not cached: nobody can say who bob is; 503, not a password prompt.
            r = proxy.get(f"{site.base}/", with_html(auth("bob", "bob-ldap")))
            assert r.status == 503 and "proxy-authenticate" not in r.headers
            # Past it, alice is asked to the directory again, which does not answer.
            wait_until(lambda: proxy.get(f"{site.base}/", alice).status == 503, 30, "the cache to expire")
            proxy.wait_for_log("answering 503 until it answers again")
            server.start()
            wait_until(lambda: proxy.get(f"{site.base}/", alice).status == 200, 30, "slapd to answer")
            proxy.wait_for_log("the directory answers again")
    finally:
        server.stop()
