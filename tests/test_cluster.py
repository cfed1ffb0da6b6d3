"""Two real nodes sharing state through a real Redis (Debian's redis-server), through the proxies.

Nodes A and B are two `clickguard run` processes with state directories of their own and
one certs directory (the signing key nodes must share), both given `--redis`. What one
learns, grants or expects, the other knows before the browser's next request reaches
it; with Redis stopped both keep serving on their own state, /readyz says degraded, and
what was learned meanwhile reaches the other node once Redis is back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clickguard.cluster import SharedState
from clickguard.tokens import load_or_create_key, sign
from tests.appliances import Route, elf, serve
from tests.harness import (
    HTML,
    THINGBOT_ORIGIN,
    Node,
    RunningRedis,
    click_link,
    continue_link,
    free_port,
    running_redis,
    start_proxy,
    upstream,
    wait_until,
    write_policy,
)

POLICY = """\
feeds:
  - {name: thingbots, format: ip, path: thingbots.txt}
"""
CAMERA = [("Server", "Hikvision-Webs"), ("Content-Type", "text/html; charset=utf-8")]


def start_node(workdir: Path, certs: Path, redis: RunningRedis, *extra: str) -> Node:
    """A node with its own state directory, the shared certs directory, and the Redis."""
    workdir.mkdir()
    (workdir / "thingbots.txt").write_text(f"{THINGBOT_ORIGIN}\n")
    policy = write_policy(workdir, POLICY)
    ops = free_port()
    proxy = start_proxy(workdir, policy, certs, "--redis", redis.url, "--ops", f"127.0.0.1:{ops}", *extra)
    node = Node(proxy, ops)
    wait_until(lambda: node.connected() and node.readyz()[0] == 200, 60,
               "the node to reach Redis and be ready (its inspection workers up)")
    return node


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRedis, Node, Node]]:
    """Redis and two nodes, for the module's tests (each uses hosts and origins of its own)."""
    base = tmp_path_factory.mktemp("cluster")
    certs = base / "certs"
    with running_redis(base / "redis") as redis:
        a = start_node(base / "a", certs, redis)
        b = start_node(base / "b", certs, redis)
        try:
            yield redis, a, b
        finally:
            a.proxy.stop()
            b.proxy.stop()


def records(node: Node, origin: str) -> list[dict[str, Any]]:
    """A node's audit records of clicks from mail with this origin (each test its own)."""
    return [r for r in node.proxy.audit() if r.get("origin_ip") == origin]


def test_a_host_learned_on_one_node_is_refused_by_the_other_before_it_connects(
        cluster: tuple[RunningRedis, Node, Node]) -> None:
    _, a, b = cluster
    routes = {"/Mozi.m": Route(headers=CAMERA, body=elf("mips", size=50_000)),
              "/": Route(headers=CAMERA, body=b"<title>camera</title>")}
    with serve("127.0.0.51", routes) as camera:
        r = a.proxy.get(f"{camera.base}/Mozi.m", HTML)
        assert r.headers["x-clickguard-action"] == "block"
        assert camera.requests == ["/Mozi.m"]
        # The other node never saw the camera: it refuses it at request time, without connecting.
        r = b.proxy.get(f"{camera.base}/", HTML)
        assert r.headers["x-clickguard-action"] == "block"
        assert camera.requests == ["/Mozi.m"]
        [record] = b.proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert record["event"] == "decision" and record["reasons"] == ["landing.thingbot"]
        assert "learned as a Thingbot" in record["details"][0]["detail"]
        assert "ELF" in record["details"][0]["detail"]  # the evidence came along
    # And B keeps it across its own restart, in its state file.
    state_file = b.proxy.workdir / "var" / "learned.json"
    wait_until(lambda: state_file.exists() and "127.0.0.51" in state_file.read_text(), 10,
               "B's learned-hosts file to have the host")


def test_a_continue_on_one_node_is_honoured_on_the_other(cluster: tuple[RunningRedis, Node, Node]) -> None:
    _, a, b = cluster
    with upstream("127.0.0.52") as site:
        target = f"{site.base}/invoice"
        r = a.proxy.get(click_link(a.proxy.certs, target, THINGBOT_ORIGIN), HTML)
        assert r.headers["x-clickguard-action"] == "warn"
        r = a.proxy.get(continue_link(r.text), HTML)
        assert r.status == 303 and r.headers["location"] == target
        # The browser's next request lands on the other node: no second warning, the click's context kept.
        r = b.proxy.get(target, HTML)
        assert r.status == 200 and site.requests == ["/invoice"]
        [warned, continued] = [x for x in records(a, THINGBOT_ORIGIN) if x["url"] == target]
        assert (warned["event"], warned["action"], continued["event"]) == ("click", "warn", "continue")
        [hop] = [x for x in records(b, THINGBOT_ORIGIN) if x["url"] == target]
        assert (hop["event"], hop["action"], hop["click_id"]) == ("hop", "allow", warned["ref"])


def test_a_clicks_hops_across_nodes_keep_its_origin(cluster: tuple[RunningRedis, Node, Node]) -> None:
    _, a, b = cluster
    origin = "192.0.2.53"
    with upstream("127.0.0.54") as final:
        routes = {"/start": (302, {"Location": "/next"}, b""),
                  "/next": (301, {"Location": f"{final.base}/landing"}, b"")}
        with upstream("127.0.0.53", routes) as site:
            r = a.proxy.get(click_link(a.proxy.certs, f"{site.base}/start", origin), HTML)
            # Each hop on the other node from the last: B, A, B.
            for node in (b, a, b):
                location = r.headers["location"]
                r = node.proxy.get(location if location.startswith("http") else site.base + location, HTML)
            assert r.status == 200 and r.body == final.body_for("/landing")
    hops = sorted(records(a, origin) + records(b, origin), key=lambda x: x.get("hop", 0))
    assert [(x["event"], x["hop"]) for x in hops] == [("click", 0), ("hop", 1), ("hop", 2), ("hop", 3)]
    assert {x["click_id"] for x in hops[1:]} == {hops[0]["ref"]}
    assert [x["ref"] for x in records(a, origin)] == [hops[0]["ref"], hops[2]["ref"]]


def test_an_event_not_signed_with_the_nodes_key_is_refused(cluster: tuple[RunningRedis, Node, Node]) -> None:
    """Whoever can write to Redis without the key cannot plant a learned host (or grant a continue)."""
    redis, _, b = cluster
    key = load_or_create_key(b.proxy.certs / "clickguard.key")

    def event(host: str, signing_key: bytes) -> str:
        now = time.time()
        entry = {"host": host, "evidence": "planted", "url": f"http://{host}/",
                 "codes": ["response.drive_by"], "learned_at": now, "expires": now + 600}
        return sign({"p": "clickguard shared state", "n": "elsewhere", "k": "learned", "i": host, "d": entry},
                    signing_key, expires=now + 600)

    refused = b.metric('clickguard_shared_events_total{outcome="refused"}') or 0.0
    assert redis.command("PUBLISH", "clickguard:events", event("127.0.0.55", b"not the key" * 3)) == "2"
    assert redis.command("PUBLISH", "clickguard:events", event("127.0.0.56", key)) == "2"
    with upstream("127.0.0.56") as signed, upstream("127.0.0.55") as forged:
        # Published in this order on one channel: once the signed one is applied, the forged one was read.
        wait_until(lambda: b.proxy.get(f"{signed.base}/", HTML).headers.get("x-clickguard-action") == "block",
                   10, "the signed event to be applied")
        assert b.proxy.get(f"{forged.base}/", HTML).status == 200
        assert forged.requests == ["/"]
    assert b.metric('clickguard_shared_events_total{outcome="refused"}') == refused + 1


def test_nodes_serve_through_a_redis_outage_and_share_what_they_learned_meanwhile(
        tmp_path: Path, certs: Path) -> None:
    with running_redis(tmp_path / "redis") as redis, upstream("127.0.0.57") as site:
        a = start_node(tmp_path / "a", certs, redis)
        b = start_node(tmp_path / "b", certs, redis)
        try:
            stop = threading.Event()
            outcomes: list[int | str] = []

            def load(node: Node) -> None:
                """Plain requests through a node, one after another, until told to stop."""
                while not stop.is_set():
                    try:
                        outcomes.append(node.proxy.get(f"{site.base}/plain", HTML, timeout=10).status)
                    except OSError as e:
                        outcomes.append(repr(e))

            with concurrent.futures.ThreadPoolExecutor(2) as pool, _stopping(stop):
                running = [pool.submit(load, node) for node in (a, b)]
                wait_until(lambda: len(outcomes) >= 20, 30, "requests under way")
                redis.stop()
                for node in (a, b):
                    wait_until(lambda: not node.connected(), 30, "the node to notice Redis is gone")  # noqa: B023
                    status, ready = node.readyz()
                    assert status == 200 and ready["ready"] is True, ready
                    [reason] = ready["degraded"]
                    assert redis.url in reason and "unreachable" in reason, reason
                # Learned on A while Redis is down.
                routes = {"/x.sh": Route(headers=CAMERA, body=elf("arm", size=20_000))}
                with serve("127.0.0.58", routes) as cam:
                    assert a.proxy.get(f"{cam.base}/x.sh", HTML).headers["x-clickguard-action"] == "block"
                    during = len(outcomes)
                    wait_until(lambda: len(outcomes) >= during + 20, 30, "requests while Redis is down")
                    redis.start()
                    for node in (a, b):
                        wait_until(node.connected, 30, "the node to reconnect")
                    wait_until(lambda: redis.command("EXISTS", "clickguard:learned:127.0.0.58") == "1", 30,
                               "A to publish what it learned meanwhile")
                    learned = 'clickguard_cache_entries{cache="learned_hosts"}'
                    wait_until(lambda: (b.metric(learned) or 0) >= 1, 30, "B to apply it")
                    r = b.proxy.get(f"{cam.base}/y", HTML)
                    assert r.headers["x-clickguard-action"] == "block" and cam.requests == ["/x.sh"]
                stop.set()
                for future in running:
                    future.result()
            assert outcomes and set(outcomes) == {200}, [o for o in outcomes if o != 200][:5]
            assert b.readyz() == (200, {"ready": True, "reasons": [], "degraded": []})
            assert a.proxy.process.poll() is None and b.proxy.process.poll() is None
        finally:
            a.proxy.stop()
            b.proxy.stop()
    for node in (a, b):
        assert "Traceback" not in node.proxy.log()


@contextlib.contextmanager
def _stopping(stop: threading.Event) -> Iterator[None]:
    """Set stop when the block ends, however it ends (the load threads then finish)."""
    try:
        yield
    finally:
        stop.set()


def test_redis_down_can_make_a_node_not_ready_when_the_policy_asks(tmp_path: Path, certs: Path) -> None:
    with running_redis(tmp_path / "redis") as redis:
        (tmp_path / "n").mkdir()
        policy = write_policy(tmp_path / "n", "feeds: []\ncluster: {redis_down: not_ready}\n")
        ops = free_port()
        proxy = start_proxy(tmp_path / "n", policy, certs, "--redis", redis.url, "--ops", f"127.0.0.1:{ops}")
        node = Node(proxy, ops)
        try:
            wait_until(lambda: node.readyz()[0] == 200, 60, "ready (Redis reached, inspection workers up)")
            redis.stop()
            wait_until(lambda: node.readyz()[0] == 503, 30, "not ready")
            [reason] = node.readyz()[1]["reasons"]
            assert reason.startswith("shared state: ") and "unreachable" in reason
            redis.start()
            wait_until(lambda: node.readyz()[0] == 200, 30, "ready again")
        finally:
            proxy.stop()


def test_a_node_started_later_replays_what_the_others_learned(cluster: tuple[RunningRedis, Node, Node],
                                                              tmp_path: Path) -> None:
    redis, a, _ = cluster
    with serve("127.0.0.60", {"/m.arm": Route(headers=CAMERA, body=elf("arm", size=20_000))}) as camera:
        assert a.proxy.get(f"{camera.base}/m.arm", HTML).headers["x-clickguard-action"] == "block"
        late = start_node(tmp_path / "late", a.proxy.certs, redis)
        try:
            r = late.proxy.get(f"{camera.base}/", HTML)
            assert r.headers["x-clickguard-action"] == "block" and camera.requests == ["/m.arm"]
        finally:
            late.proxy.stop()


def test_changes_kept_while_redis_is_down_are_bounded(tmp_path: Path) -> None:
    """Redis down for long: the oldest kept changes go first (counted), memory stays bounded."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    shared = SharedState(nowhere, b"k" * 32, max_unsent=100, retry=0.05)
    shared.start()
    try:
        futures = [shared.publish("learned", f"h{i}", {"i": i}, expires=time.time() + 60) for i in range(105)]
        assert [f.result(5) for f in futures] == [False] * 105  # kept, not written
        assert (shared.unsent, shared.dropped) == (100, 5)
        wait_until(lambda: "unreachable" in (shared.problem or ""), 10, "the reason")
        assert nowhere in (shared.problem or "") and "100 changes to publish" in (shared.problem or "")
    finally:
        shared.close(timeout=0.5)
