"""Dashboard sessions and lock-outs shared between nodes through a real Redis (Debian's redis-server).

First `Sessions` on `SharedState`s of their own (two processes' worth in this one), then
two real nodes (`clickguard run --redis`, one certs directory) reached through their
click hosts over https as a browser does: a session made on one is valid on the other, a
logout on one ends it on both, failures on one lock the client out on the other; with
Redis gone the nodes refuse cluster sessions (fail closed) and make sessions of their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickguard.cluster import SharedState
from clickguard.errors import TokenError
from clickguard.tokens import b64url_decode
from clickguard.web.sessions import Session, Sessions
from tests.harness import (
    Node,
    RunningRedis,
    free_port,
    ops_get,
    running_redis,
    start_proxy,
    wait_until,
    write_policy,
)
from tests.test_dashboard import HASH, PASSWORD, Client

KEY = b"k" * 32
USERS = {"admin": HASH}
BASE = "https://clickguard.local"
POLICY = f"""\
feeds: []
admin:
  lockout_after: 3
  users:
    admin: {HASH}
"""


# -- Sessions on shared states --------------------------------------------------------------------


def linked(redis: RunningRedis) -> tuple[Sessions, SharedState]:
    """One process's sessions, sharing through the Redis; connected."""
    sessions, shared = Sessions(), SharedState(redis.url, KEY, retry=0.05)
    sessions.share(shared)
    shared.start()
    wait_until(lambda: shared.connected, 10, "the shared state to connect")
    return sessions, shared


def ended(sessions: Sessions, token: str) -> bool:
    """Whether the token's session is refused as logged out (other nodes' logouts applied first)."""
    try:
        sessions.check(token, USERS, KEY, now=time.time())
    except TokenError as e:
        return "logged out" in str(e)
    return False


def test_a_cluster_session_is_valid_everywhere_and_a_logout_ends_it_everywhere(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        (one, shared_one), (two, shared_two) = linked(redis), linked(redis)
        try:
            token, session = one.issue("admin", HASH, KEY, minutes=60, now=time.time())
            assert session.shared and json.loads(b64url_decode(token.split(".")[0]))["e"] == shared_one.epoch
            assert two.check(token, USERS, KEY, now=time.time()) == session._replace(
                expires=float(int(session.expires)))
            assert one.end(two.check(token, USERS, KEY, now=time.time()), now=time.time()) is not None
            # Ended on `one` at once; on `two` as the event arrives.
            assert ended(one, token)
            wait_until(lambda: ended(two, token), 10, "the logout to reach the other process")
            # A process started later replays it from Redis.
            three, shared_three = linked(redis)
            try:
                assert ended(three, token)
            finally:
                shared_three.close()
        finally:
            shared_one.close()
            shared_two.close()


def test_without_redis_cluster_sessions_are_refused_but_can_be_ended(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        sessions, shared = linked(redis)
        try:
            token, _ = sessions.issue("admin", HASH, KEY, minutes=60, now=time.time())
            kept, _ = sessions.issue("admin", HASH, KEY, minutes=60, now=time.time())
            redis.stop()
            wait_until(lambda: not shared.connected, 10, "the shared state to notice Redis is gone")
            with pytest.raises(TokenError, match="cannot reach"):
                sessions.check(token, USERS, KEY, now=time.time())
            # Made meanwhile: this process's own session, which only it takes.
            local, session = sessions.issue("admin", HASH, KEY, minutes=60, now=time.time())
            assert not session.shared and sessions.check(local, USERS, KEY, now=time.time()) == Session(
                "admin", session.sid, float(int(session.expires)))
            # A logout of the cluster session still ends it, and waits for Redis to tell the others.
            cluster = sessions.check(token, USERS, KEY, now=time.time(), ending=True)
            written = sessions.end(cluster, now=time.time())
            assert written is not None and written.result(1) is False and shared.unsent == 1
            redis.start()  # empty: a new epoch, so every cluster session of the old one ends
            wait_until(lambda: shared.connected and shared.unsent == 0, 10, "the logout to be published")
            assert redis.command("EXISTS", f"clickguard:session_end:{cluster.sid}") == "1"
            with pytest.raises(TokenError, match="lost its data"):
                sessions.check(kept, USERS, KEY, now=time.time())
            assert sessions.check(local, USERS, KEY, now=time.time()).sid == session.sid
        finally:
            shared.close()


def test_cluster_sessions_work_again_once_redis_is_back_with_its_data(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        sessions, shared = linked(redis)
        assert redis.process is not None
        pid = redis.process.pid
        try:
            token, _ = sessions.issue("admin", HASH, KEY, minutes=60, now=time.time())
            epoch = shared.epoch
            # Frozen (as if cut off by the network): no error comes, yet an idle process notices.
            os.kill(pid, signal.SIGSTOP)
            try:
                wait_until(lambda: not shared.connected, 10, "the shared state to notice Redis is frozen")
                with pytest.raises(TokenError, match="cannot reach"):
                    sessions.check(token, USERS, KEY, now=time.time())
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_until(lambda: shared.connected, 10, "the shared state to reconnect")
            assert shared.epoch == epoch and sessions.check(token, USERS, KEY, now=time.time()).shared
        finally:
            shared.close()


# -- two nodes, through their click hosts ----------------------------------------------------------


def start_node(workdir: Path, certs: Path, redis: RunningRedis) -> Node:
    """A node with a dashboard user (admin.lockout_after: 3), its own state, the shared certs and Redis."""
    workdir.mkdir()
    ops = free_port()
    proxy = start_proxy(workdir, write_policy(workdir, POLICY), certs, "--redis", redis.url,
                        "--ops", f"127.0.0.1:{ops}")
    node = Node(proxy, ops)
    wait_until(node.connected, 30, "the node to reach Redis")
    return node


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRedis, Node, Node, Path]]:
    """Redis and two nodes (each test uses client addresses of its own); the base folder."""
    base = tmp_path_factory.mktemp("cluster-dashboard")
    with running_redis(base / "redis") as redis:
        a = start_node(base / "a", base / "certs", redis)
        b = start_node(base / "b", base / "certs", redis)
        try:
            yield redis, a, b, base
        finally:
            a.proxy.stop()
            b.proxy.stop()


def logout_csrf(page: str) -> str:
    """The logout form's CSRF token on a dashboard page."""
    match = re.search(r'id=logout>.*?name="csrf" value="([^"]+)"', page)
    assert match, page
    return match[1]


def sid_of(client: Client) -> str:
    """The session id in a client's session cookie."""
    return str(json.loads(b64url_decode(client.cookies["clickguard_admin"].split(".")[0]))["sid"])


def logins(node: Node, client: str) -> list[tuple[str, str]]:
    """A node's audited login attempts from one client address: (action, result)."""
    return [(r["action"], r["result"]) for r in node.proxy.audit()
            if r["event"] == "admin_login" and r["client"] == client]


def test_a_session_made_on_one_node_is_valid_on_the_other_until_logged_out_on_either(
        nodes: tuple[RunningRedis, Node, Node, Path]) -> None:
    redis, a, b, base = nodes
    user = Client(a.proxy, source="127.0.0.21")
    assert user.log_in("admin", PASSWORD)[0] == 303
    on_b = Client(b.proxy, dict(user.cookies), source="127.0.0.21")
    status, _, page = on_b.send("GET", f"{BASE}/admin/feeds")
    assert status == 200 and "Learned Thingbots" in page
    # Every node's feed status, as each put it in Redis: both nodes listed, B as "this one".
    nodes_table = page.split("<h2>Nodes</h2>")[1]
    assert nodes_table.count(" (this one)") == 1 and nodes_table.count("<tr>") >= 3, nodes_table
    other = Client(b.proxy, source="127.0.0.22")  # a second session, made on B
    assert other.log_in("admin", PASSWORD)[0] == 303
    # Logged out on A with the form B served (its CSRF token is the session's, on every node)...
    status, _, _ = user.send("POST", f"{BASE}/admin/logout", {"csrf": logout_csrf(page)}, {"Origin": BASE})
    assert status == 303 and "clickguard_admin" not in user.cookies
    # ...refused on B at the browser's next request.
    status, headers, _ = on_b.send("GET", f"{BASE}/admin/feeds")
    assert status == 303 and dict(headers)["Location"].startswith("/admin/login")
    assert redis.command("EXISTS", f"clickguard:session_end:{sid_of(on_b)}") == "1"
    # A node started now replays the logout from Redis, and takes the session still open.
    c = start_node(base / "c", base / "certs", redis)
    try:
        assert Client(c.proxy, dict(on_b.cookies)).send("GET", f"{BASE}/admin/feeds")[0] == 303
        assert Client(c.proxy, dict(other.cookies)).send("GET", f"{BASE}/admin/feeds")[0] == 200
    finally:
        c.proxy.stop()


def test_failures_on_one_node_lock_the_client_out_on_the_other(
        nodes: tuple[RunningRedis, Node, Node, Path]) -> None:
    _, a, b, _ = nodes
    outsider = Client(a.proxy, source="127.0.0.66")
    for _ in range(3):  # admin.lockout_after: 3, all on A
        status, _, page = outsider.log_in("admin", "not the password")
        assert status == 403 and "Wrong user name or password" in page
    # On B, even the right password is refused, unchecked, and audited there as a lock-out.
    status, headers, page = Client(b.proxy, source="127.0.0.66").log_in("admin", PASSWORD)
    assert status == 429 and "Too many failed logins" in page and int(dict(headers)["Retry-After"]) > 890
    assert logins(a, "127.0.0.66") == [("block", "bad_password")] * 2 + [
        ("block", "bad_password; now locked out")]
    assert logins(b, "127.0.0.66") == [("block", "locked_out")]
    # The outsider locked out only itself: the user, from another machine, logs in on B.
    assert Client(b.proxy, source="127.0.0.67").log_in("admin", PASSWORD)[0] == 303


def test_a_success_on_one_node_clears_that_clients_failures_on_the_other(
        nodes: tuple[RunningRedis, Node, Node, Path]) -> None:
    _, a, b, _ = nodes
    on_a, on_b = Client(a.proxy, source="127.0.0.68"), Client(b.proxy, source="127.0.0.68")
    for _ in range(2):
        assert on_a.log_in("admin", "typo")[0] == 403
    assert on_b.log_in("admin", PASSWORD)[0] == 303
    # Two more on A: without the clearing, the first of them would have locked the client out.
    for _ in range(2):
        assert on_a.log_in("admin", "typo")[0] == 403
    assert on_a.log_in("admin", PASSWORD)[0] == 303
    assert logins(a, "127.0.0.68") == [("block", "bad_password")] * 4 + [("allow", "ok")]


def test_without_redis_nodes_refuse_cluster_sessions_and_make_their_own(tmp_path: Path, certs: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        a = start_node(tmp_path / "a", certs, redis)
        b = start_node(tmp_path / "b", certs, redis)
        try:
            user = Client(a.proxy, source="127.0.0.31")
            assert user.log_in("admin", PASSWORD)[0] == 303
            status, _, page = user.send("GET", f"{BASE}/admin/feeds")
            assert status == 200
            kept = Client(b.proxy, source="127.0.0.32")  # a second cluster session, never logged out
            assert kept.log_in("admin", PASSWORD)[0] == 303
            redis.stop()
            wait_until(lambda: not a.connected() and not b.connected(), 30, "both to notice Redis is gone")
            # B cannot hear logouts now: it refuses the cluster sessions (they are not ended)...
            assert Client(b.proxy, dict(user.cookies)).send("GET", f"{BASE}/admin/feeds")[0] == 303
            assert kept.send("GET", f"{BASE}/admin/feeds")[0] == 303
            # ...and a login there makes a session of B's own, which A does not take.
            local = Client(b.proxy, source="127.0.0.33")
            assert local.log_in("admin", PASSWORD)[0] == 303
            assert local.send("GET", f"{BASE}/admin/feeds")[0] == 200
            assert Client(a.proxy, dict(local.cookies)).send("GET", f"{BASE}/admin/feeds")[0] == 303
            # A logout on A meanwhile still ends the cluster session: kept, published once Redis is back.
            sid = sid_of(user)
            status, _, _ = user.send("POST", f"{BASE}/admin/logout", {"csrf": logout_csrf(page)},
                                     {"Origin": BASE})
            assert status == 303 and "clickguard_admin" not in user.cookies
            redis.start()
            for node in (a, b):
                wait_until(node.connected, 30, "the node to reconnect")
            wait_until(lambda: redis.command("EXISTS", f"clickguard:session_end:{sid}") == "1", 30,
                       "A to publish the logout it kept")
            # This Redis came back empty (a new epoch): the cluster sessions of the old one are over.
            assert kept.send("GET", f"{BASE}/admin/feeds")[0] == 303
            assert Client(a.proxy, dict(kept.cookies)).send("GET", f"{BASE}/admin/feeds")[0] == 303
            assert local.send("GET", f"{BASE}/admin/feeds")[0] == 200  # B's own session goes on
        finally:
            a.proxy.stop()
            b.proxy.stop()
    for node in (a, b):
        assert "Traceback" not in node.proxy.log()


def test_workers_of_one_node_share_sessions_and_lock_outs(tmp_path: Path, certs: Path) -> None:
    """`--workers 2` (their private Redis): a browser's connections land on either worker."""
    ops = free_port()
    proxy = start_proxy(tmp_path, write_policy(tmp_path, POLICY), certs, "--workers", "2",
                        "--ops", f"127.0.0.1:{ops}")
    node = Node(proxy, ops)
    try:
        wait_until(lambda: ops_get(node.ops, "/readyz")[0] == 200, 60, "every worker to be ready")
        user = Client(proxy, source="127.0.0.41")
        assert user.log_in("admin", PASSWORD)[0] == 303
        # Each request on a connection of its own: the kernel spreads them over both workers.
        pages = [user.send("GET", f"{BASE}/admin/feeds") for _ in range(20)]
        assert [status for status, _, _ in pages] == [200] * 20
        assert workers_connected_from(proxy.log(), "127.0.0.41") == {"1", "2"}
        cookie = dict(user.cookies)
        status, _, _ = user.send("POST", f"{BASE}/admin/logout", {"csrf": logout_csrf(pages[0][2])},
                                 {"Origin": BASE})
        assert status == 303
        replay = Client(proxy, cookie, source="127.0.0.41")
        assert [replay.send("GET", f"{BASE}/admin/feeds")[0] for _ in range(10)] == [303] * 10
        outsider = Client(proxy, source="127.0.0.42")
        for _ in range(3):
            assert outsider.log_in("admin", "not the password")[0] == 403
        assert [outsider.log_in("admin", PASSWORD)[0] for _ in range(6)] == [429] * 6
    finally:
        proxy.stop()


def workers_connected_from(log: str, client: str) -> set[str]:
    """The workers a client's connections reached, as the supervisor's log tells."""
    return set(re.findall(rf"^\[worker (\d+)\] \[[^\]]*\]\[{re.escape(client)}:\d+\] client connect", log,
                          re.MULTILINE))
