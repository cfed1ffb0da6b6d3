"""Policy groups: validation, which group a request belongs to, the rules it gets, and where it shows.

Through the real proxy: clients on different loopback addresses (their sockets bound to
127.0.0.x) and a user signed in with mitmproxy's proxyauth get their group's actions, allow
and deny lists, warn and inspect settings for the same URLs; the audit records name the
group, and `clickguard report --group` and the dashboard count one group's decisions.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from clickguard.audit import store
from clickguard.audit import writer as audit
from clickguard.audit.queries import build_report
from clickguard.cli import main
from clickguard.decision.groups import GroupMatcher, group_for, group_policy
from clickguard.decision.judge import Judge
from clickguard.intel.index import ReputationIndex
from clickguard.policy.model import Policy, check_policy, parse_policy
from clickguard.proxy.runtime import Runtime
from clickguard.web.dashboard import Dashboard, Request
from clickguard.web.passwords import hash_password
from tests.harness import HTML, Proxy, ProxyPool, Response, continue_link, upstream, wait_until

GROUPS = """\
version: 1
deny: {hosts: [denied.example]}
allow: {hosts: [allowed.example]}
groups:
  - name: lab
    networks: [127.0.0.2/32, "::ffff:10.9.0.0/112"]
    deny: {hosts: [lab-denied.example]}
  - name: sales
    members: [Alice]
    ldap_groups: [Sales]
    actions: {policy.deny: warn}
    allow: {domains: [partner.example]}
    warn: {continue_minutes: 5}
  - name: everyone-else
    networks: [127.0.0.0/8]
"""


def policy_of(text: str, tmp_path: Path | None = None) -> Policy:
    """A policy from YAML text."""
    return parse_policy(text, filename="policy.yaml", base_dir=tmp_path or Path.cwd())


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "expected"), [
    ("groups:\n  - name: a\n    members: [x]\n  - name: A\n    members: [y]\n",
     ["policy.yaml:4: groups[1].name: duplicate group name 'A' (also groups[0])"]),
    ("groups:\n  - name: a\n    members: [x]\n    actions: {landing.thingbott: warn}\n",
     ["policy.yaml:4: groups[0].actions.landing.thingbott: unknown reason code; did you mean "
      "'landing.thingbot'?"]),
    ("groups:\n  - name: a\n    actions: {policy.deny: warn}\n",
     ["policy.yaml:2: groups[0]: a group needs members, ldap_groups or networks"]),
    ("groups:\n  - name: two words\n    members: [x]\n",
     ["policy.yaml:2: groups[0].name: a group name is 1-64 letters"]),
    ("groups:\n  - name: a\n    networks: [10.0.0.0/8, not-a-net]\n",
     ["policy.yaml:3: groups[0].networks[1]: must be an IP address or a network"]),
    ("groups:\n  - name: a\n    members: [x]\n    deny: {hosts: ['*.evil.example']}\n",
     ["policy.yaml:4: groups[0].deny.hosts[0]: write 'evil.example' without '*.'"]),
    ("groups:\n  - name: a\n    members: [x]\n    inspect:\n      fingerprints: [mine.yaml]\n",
     ["policy.yaml:5: groups[0].inspect.fingerprints: fingerprints apply to the whole proxy"]),
    ("groups:\n  - name: a\n    members: [x]\n    warn: {continue_minutes: 0}\n",
     ["policy.yaml:4: groups[0].warn.continue_minutes: "]),
    ("groups:\n  - name: a\n    members: [x]\n    colour: blue\n",
     ["policy.yaml:4: groups[0].colour: "]),
])
def test_bad_groups_are_reported_at_their_lines(tmp_path: Path, body: str, expected: list[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(body)
    problems = [str(p).replace(str(path), "policy.yaml") for p in check_policy(path)]
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problems


def test_a_group_may_act_on_a_feeds_category(tmp_path: Path) -> None:
    feed = tmp_path / "scams.txt"
    feed.write_text("scam.example\n")
    policy = policy_of(f"""\
feeds: [{{name: scams, format: domains, path: {feed}, category: scam}}]
groups: [{{name: a, members: [x], actions: {{landing.scam: block}}}}]
""")
    assert policy.groups[0].actions == {"landing.scam": "block"}


# --- which group, and its rules -----------------------------------------------------------------

@pytest.mark.parametrize(("user", "ldap", "client", "group"), [
    (None, (), "127.0.0.2", "lab"),
    (None, (), "::ffff:127.0.0.2", "lab"),  # a dual-stack listener's IPv4 client
    (None, (), "::ffff:10.9.1.1", "lab"),
    (None, (), "127.0.0.3", "everyone-else"),
    (None, (), "192.0.2.1", None),
    ("alice", (), "192.0.2.1", "sales"),
    ("ALICE", (), "192.0.2.1", "sales"),  # user names compare case-insensitively
    ("alice", (), "127.0.0.2", "lab"),  # the first group matching wins, whatever matched
    ("alice", (), "127.0.0.9", "sales"),
    ("bob", ("sales",), None, "sales"),
    ("bob", ("cn=Sales,ou=groups,dc=example,dc=org",), None, "sales"),  # a DN names its group
    ("bob", ("cn=support,ou=groups,dc=example,dc=org",), None, None),
    (None, (), "not an address", None),
])
def test_the_first_group_matching_applies(user: str | None, ldap: tuple[str, ...], client: str | None,
                                          group: str | None) -> None:
    policy = policy_of(GROUPS)
    found = group_for(policy, user, ldap, client)
    assert (found.name if found else None) == group
    judge = Judge(policy, ReputationIndex()).for_client(client, user, ldap)
    assert judge.group == group


def test_no_groups_costs_one_test_and_matches_nothing() -> None:
    policy = policy_of("version: 1\n")
    assert group_for(policy, "alice", ("x",), "127.0.0.1") is None
    judge = Judge(policy, ReputationIndex())
    assert judge.for_client("127.0.0.1", "alice") is judge
    assert GroupMatcher(()).index("alice", (), "127.0.0.1") is None


def test_a_groups_keys_override_and_its_lists_extend() -> None:
    policy = policy_of(GROUPS)
    sales = group_policy(policy, policy.groups[1])
    assert sales.action_for("policy.deny") == "warn"
    assert sales.action_for("landing.thingbot") == policy.action_for("landing.thingbot")  # kept
    assert sales.allow.hosts == {"allowed.example"} and sales.allow.domains == {"partner.example"}
    assert sales.deny.hosts == {"denied.example"}  # the organisation's deny list holds for everyone
    assert (sales.warn.continue_minutes, sales.warn.token_minutes) == (5, policy.warn.token_minutes)
    assert sales.groups == () and sales.inspect == policy.inspect
    lab = group_policy(policy, policy.groups[0])
    assert lab.deny.hosts == {"denied.example", "lab-denied.example"}
    assert lab.action_for("policy.deny") == "block"


# --- the command line -------------------------------------------------------------------------------

class Ran(NamedTuple):
    """What a command printed, and its exit status."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run `clickguard ARGS…` in this process (its paths absolute): what it printed, its status."""
    def run(*args: str) -> Ran:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)
    return run


@pytest.mark.parametrize(("extra", "action", "group"), [
    ((), "block", None),
    (("--user", "alice"), "warn", "sales"),
    (("--user", "bob"), "block", None),
    (("--group", "SALES"), "warn", "sales"),  # as a member of one of its ldap_groups
    (("--client", "127.0.0.2"), "block", "lab"),
])
def test_check_judges_as_a_user_or_group(cli: Callable[..., Ran], tmp_path: Path, extra: tuple[str, ...],
                                         action: str, group: str | None) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GROUPS)
    result = cli("check", "--json", "--policy", str(policy), "--state-dir", str(tmp_path / "var"), *extra, "http://denied.example/")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["action"], out.get("group")) == (action, group)


def test_check_refuses_an_unknown_group_and_policy_check_counts_groups(cli: Callable[..., Ran],
                                                                      tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GROUPS)
    state = ("--state-dir", str(tmp_path / "var"))
    result = cli("check", "--policy", str(policy), *state, "--group", "nope", "http://a.example/")
    assert result.returncode == 2 and "no such group" in result.stderr and "lab, sales" in result.stderr
    result = cli("check", "--policy", str(policy), *state, "--user", "alice", "http://lab-denied.example/")
    assert result.stdout.startswith("allow\t") and "  group: sales\n" in result.stdout
    result = cli("policy", "check", str(policy))
    assert result.returncode == 0 and "3 groups" in result.stdout


# --- the store and reports ----------------------------------------------------------------------------

def a_record(ts: float, url: str, action: str, *, group: str | None = None, user: str | None = None,
             event: str = "decision") -> dict[str, Any]:
    """An audit record as the proxy writes it."""
    entry = audit.record(ref=audit.new_ref(), event=event, client="127.0.0.1", user=user, url=url,
                         action=action, findings=(), group=group)
    entry["ts"] = ts
    return entry


def test_a_version_1_store_gets_the_group_column(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    old = "\n".join(line for line in store._SCHEMA.splitlines() if "group" not in line)
    with sqlite3.connect(path) as connection:
        connection.executescript(old)
        connection.execute("INSERT INTO decisions (ts, ref, event, url, action, record) "
                           "VALUES (1, 'r', 'decision', 'http://a.example/', 'block', '{}')")
        connection.execute("PRAGMA user_version=1")
    reader = store.connect(path, readonly=True)  # readers never write: still version 1
    assert not store.has_groups(reader)
    assert build_report(reader, group="lab").totals.decisions == 0  # no decision of it is any group's
    assert build_report(reader).totals.decisions == 1
    reader.close()
    writer = store.connect(path)
    assert store.has_groups(writer)
    assert writer.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    store.insert(writer, [a_record(2, "http://b.example/", "warn", group="lab")])
    assert writer.execute("SELECT group_name FROM decisions ORDER BY ts").fetchall() == [(None,), ("lab",)]
    store.close(writer)


def test_report_group_counts_that_groups_decisions(cli: Callable[..., Ran], tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    now = time.time()
    connection = store.connect(path)
    store.insert(connection, [
        a_record(now - 60, "http://a.example/", "block", group="lab"),
        a_record(now - 50, "http://b.example/", "warn", group="lab"),
        a_record(now - 40, "http://c.example/", "block", group="sales", user="alice", event="click"),
        a_record(now - 30, "http://d.example/", "allow"),
    ])
    store.close(connection)
    everyone = json.loads(cli("report", "--store", str(path), "--json").stdout)
    assert "group" not in everyone and everyone["totals"]["decisions"] == 4
    lab = json.loads(cli("report", "--store", str(path), "--json", "--group", "lab").stdout)
    assert lab["group"] == "lab"
    assert (lab["totals"]["decisions"], lab["totals"]["blocks"], lab["totals"]["warns"]) == (2, 1, 1)
    assert sum(b["decisions"] for b in lab["totals"]["timeline"]) == 2
    assert lab.keys() == everyone.keys() | {"group"}
    sales = json.loads(cli("report", "--store", str(path), "--json", "--group", "sales").stdout)
    assert sales["users"]["blocked_or_warned"]["top"][0]["user"] == "alice"
    text = cli("report", "--store", str(path), "--group", "lab").stdout
    assert text.splitlines()[0].endswith(", group lab")
    html = tmp_path / "lab.html"
    cli("report", "--store", str(path), "--group", "lab", "--html", str(html))
    assert "<title>clickguard report: group lab</title>" in html.read_text()
    refused = cli("report", "--store", str(path), "--group", "lab", "--host", "a.example")
    assert refused.returncode == 2


# --- the dashboard ------------------------------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A proxy runtime on the groups policy with one dashboard user, its store in tmp_path."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(GROUPS + "audit: {log: audit.jsonl, store: audit.sqlite}\n"
                      f"admin:\n  users:\n    admin: {hash_password(PASSWORD)}\n")
    runtime = Runtime(state_dir=tmp_path / "var", certs_dir=tmp_path / "certs")
    runtime.policy_path = policy
    runtime.install(runtime.build())
    yield runtime
    runtime.close()


def request(method: str, path: str, *, query: str = "", body: str = "", cookie: str = "") -> Request:
    """A request as the endpoint hands it to the dashboard."""
    return Request(method, path, query, {"cookie": cookie}, body.encode(), "127.0.0.1", "https")


def set_cookies(headers: list[tuple[str, str]]) -> dict[str, str]:
    """name -> value of each Set-Cookie."""
    pairs = (v.split(";")[0].partition("=") for k, v in headers if k == "Set-Cookie")
    return {name: value for name, _, value in pairs}


async def session_cookie(board: Dashboard) -> str:
    """Log in as admin; the session cookie."""
    form = await board.handle(request("GET", "/admin/login"))
    nonce = set_cookies(form.headers)["clickguard_login"]
    token = re.search(r'name="csrf" value="([^"]+)"', form.body.decode())
    assert token
    body = urllib.parse.urlencode({"user": "admin", "password": PASSWORD, "csrf": token[1]})
    answer = await board.handle(request("POST", "/admin/login", body=body,
                                        cookie=f"clickguard_login={nonce}"))
    return f"clickguard_admin={set_cookies(answer.headers)['clickguard_admin']}"


async def test_dashboard_filters_by_group(runtime: Runtime) -> None:
    assert runtime.store_path is not None
    now = time.time()
    connection = store.connect(runtime.store_path)
    store.insert(connection, [
        a_record(now - 60, "http://a.example/", "block", group="lab", user="lab-user", event="click"),
        a_record(now - 50, "http://b.example/", "block", user="someone-else", event="click"),
    ])
    store.close(connection)
    board = Dashboard(runtime)
    cookie = await session_cookie(board)
    everyone = (await board.handle(request("GET", "/admin", query="since=24h", cookie=cookie))).body.decode()
    assert "lab-user" in everyone and "someone-else" in everyone
    assert '<option value="lab">lab</option>' in everyone and '<option value="">everyone</option>' in everyone
    answer = await board.handle(request("GET", "/admin", query="since=7d&group=lab", cookie=cookie))
    page = answer.body.decode()
    assert answer.status == 200 and "lab-user" in page and "someone-else" not in page
    assert '<option value="lab" selected>lab</option>' in page
    assert 'href="/admin?since=24h&amp;group=lab"' in page  # the ranges keep the group
    bad = await board.handle(request("GET", "/admin", query="group=%3Cscript%3E", cookie=cookie))
    assert bad.status == 400 and "<script>" not in bad.body.decode()


# --- through the real proxy -----------------------------------------------------------------------------

def get_from(proxy: Proxy, source: str, url: str, headers: Mapping[str, str] | None = None) -> Response:
    """GET url through the proxy from a client socket bound to source (a 127.0.0.x address)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", url, headers={**HTML, **(headers or {})})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


EXE = b"MZ\x90\x00" + bytes(60) + b"PE\x00\x00" + bytes(2000)
PROXY_POLICY = """\
version: 1
audit: {store: audit.sqlite}
deny: {networks: [127.0.0.61/32]}
groups:
  - name: lab
    networks: [127.0.0.2/32]
    deny: {networks: [127.0.0.62/32]}
    actions: {response.drive_by: block}
  - name: relaxed
    networks: [127.0.0.3/32]
    actions: {policy.deny: warn}
    warn: {allow_continue: false}
  - name: sales
    members: [alice]
    actions: {policy.deny: warn}
"""


def judged(proxy: Proxy, r: Response) -> tuple[str, str | None]:
    """The action a response says, and the group its decision's audit record names."""
    [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
    return r.headers["x-clickguard-action"], record.get("group")


def test_clients_on_different_addresses_get_their_groups_rules(proxy_factory: ProxyPool,
                                                              cli: Callable[..., Ran]) -> None:
    proxy = proxy_factory(PROXY_POLICY)
    exe = (200, {"Server": "nginx/1.24.0", "Content-Type": "application/octet-stream"}, EXE)
    with upstream("127.0.0.61") as denied, upstream("127.0.0.62") as lab_denied, \
            upstream("127.0.0.63", {"/setup.exe": exe}) as downloads:
        # The organisation's deny list: blocked for the top level and for lab (lists extend);
        # relaxed warns instead, with no continue link (its warn section).
        r = get_from(proxy, "127.0.0.1", f"{denied.base}/")
        assert judged(proxy, r) == ("block", None)
        r = get_from(proxy, "127.0.0.2", f"{denied.base}/")
        assert judged(proxy, r) == ("block", "lab")
        r = get_from(proxy, "127.0.0.3", f"{denied.base}/")
        assert r.status == 403 and judged(proxy, r) == ("warn", "relaxed") and 'id="continue"' not in r.text
        assert denied.requests == []
        # lab's own deny entry holds for lab only.
        r = get_from(proxy, "127.0.0.1", f"{lab_denied.base}/")
        assert r.status == 200 and r.body.startswith(b"hello from 127.0.0.62")
        r = get_from(proxy, "127.0.0.2", f"{lab_denied.base}/")
        assert r.headers["x-clickguard-action"] == "block" and lab_denied.requests == ["/"]
        # The response is judged by the group's actions too: a payload warns, for lab it is blocked.
        r = get_from(proxy, "127.0.0.1", f"{downloads.base}/setup.exe")
        assert r.headers["x-clickguard-action"] == "warn" and continue_link(r.text)
        r = get_from(proxy, "127.0.0.2", f"{downloads.base}/setup.exe")
        assert r.headers["x-clickguard-action"] == "block" and EXE not in r.body
        ref = r.headers["x-clickguard-ref"]
        [record] = [rec for rec in proxy.audit_of_ref(ref) if rec["event"] == "response"]
        assert record["group"] == "lab" and "response.drive_by" in record["reasons"]
    store_path = proxy.workdir / "audit.sqlite"

    def report(*extra: str) -> dict[str, Any]:
        result = cli("report", "--store", str(store_path), "--json", *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    # The store is written off the request path: wait for every record to be there.
    wait_until(lambda: report()["totals"]["decisions"] >= len(proxy.audit()), what="the audit store")
    lab = report("--group", "lab")["totals"]
    assert (lab["blocks"], lab["warns"]) == (3, 0)
    relaxed = report("--group", "relaxed")["totals"]
    assert (relaxed["decisions"], relaxed["warns"]) == (1, 1)


def test_a_signed_in_user_gets_their_groups_rules(proxy_factory: ProxyPool) -> None:
    proxy = proxy_factory(PROXY_POLICY, "--set", "proxyauth=alice:alice-pw")
    credentials = base64.b64encode(b"alice:alice-pw").decode()
    with upstream("127.0.0.61") as denied:
        r = get_from(proxy, "127.0.0.1", f"{denied.base}/")
        assert r.status == 407
        r = get_from(proxy, "127.0.0.1", f"{denied.base}/", {"Proxy-Authorization": f"Basic {credentials}"})
        assert r.status == 403 and r.headers["x-clickguard-action"] == "warn"
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert (record["user"], record["group"]) == ("alice", "sales")
        # The network's group comes first in the file: from 127.0.0.2 alice is judged as lab.
        r = get_from(proxy, "127.0.0.2", f"{denied.base}/", {"Proxy-Authorization": f"Basic {credentials}"})
        assert judged(proxy, r) == ("block", "lab")
