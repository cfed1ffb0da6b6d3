"""`clickguard squid-helper`: Squid's external ACL protocol, spoken by the real command and through Squid."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from clickguard.decision.squid_helper import MAX_LINE, parse_line, quoted, target_url, verdict_answer
from clickguard.decision.verdict import Finding, Verdict
from tests.appliances import Route, elf, serve
from tests.harness import (
    HTML,
    REPO,
    running_redis,
    running_squid_with,
    start_proxy,
    upstream,
    wait_until,
    write_policy,
)

CLICKGUARD = REPO / ".venv" / "bin" / "clickguard"
POLICY = """\
version: 1
feeds:
  - {{name: bad, format: ip, path: {feeds}/ips.txt, category: thingbot}}
  - {{name: names, format: domains, path: {feeds}/names.txt, category: thingbot}}
"""
BLOCKED = 'OK message="landing.thingbot" log="block:landing.thingbot" clickguard_action="block"'


def write_setup(directory: Path) -> Path:
    """A policy naming two feed files in directory: 127.66.0.5 and evil.example are listed."""
    (directory / "ips.txt").write_text("127.66.0.5\n")
    (directory / "names.txt").write_text("evil.example\n")
    policy = directory / "policy.yaml"
    policy.write_text(POLICY.format(feeds=directory))
    return policy


class HelperProcess:
    """A running `clickguard squid-helper`, spoken to line by line."""

    def __init__(self, directory: Path, prefix: Sequence[str] = (), extra: Sequence[str] = ()) -> None:
        policy = write_setup(directory)
        self.process = subprocess.Popen(
            [*prefix, str(CLICKGUARD), "squid-helper", "--policy", str(policy),
             "--state-dir", str(directory / "var"), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def answer(self, timeout: float = 30.0) -> str:
        """The next answer line (fails after timeout: an answer never written)."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "no answer from the helper"
        return self.process.stdout.readline().decode().rstrip("\n")

    def finish(self) -> list[str]:
        """Close its input; every answer still to come, and its exit status 0."""
        out, err = self.process.communicate(timeout=60)  # closes its input first
        assert self.process.returncode == 0, err.decode()
        return out.decode().splitlines()


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[HelperProcess]:
    running = HelperProcess(tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def test_request_lines_are_read_as_squid_writes_them() -> None:
    assert parse_line(b"7 http://a.example/%20x -") == ("7", "http://a.example/ x", None)
    assert parse_line(b"http://a.example/") == (None, "http://a.example/", None)
    assert parse_line(b"12").uri is None
    assert parse_line(b"3 %FF -").problem is not None
    assert target_url("evil.example:443") == "https://evil.example:443/"
    assert target_url("[::1]:8443") == "https://[::1]:8443/"
    assert quoted('a "b" \\ c') == '"a \\"b\\" \\\\ c"'


def test_a_warning_blocks_unless_told_to_pass_and_says_it_was_a_warning() -> None:
    warned = Verdict("warn", (Finding("landing.phishing", "listed"), Finding("url.odd", "odd \"quote\"")))
    pairs = (b'message="landing.phishing url.odd" log="warn:landing.phishing,url.odd" '
             b'clickguard_action="warn"\n')
    assert verdict_answer("4", warned, "block") == b"4 OK " + pairs
    assert verdict_answer("4", warned, "pass") == b"4 ERR " + pairs
    assert verdict_answer(None, Verdict("allow"), "block") == b"ERR\n"


def test_answers_carry_the_channel_of_their_request(helper: HelperProcess) -> None:
    helper.send(b"0 http://127.66.0.5/x -\n1 http://127.0.0.1:8000/ -\n2 127.66.0.5:443 -\n"
                b"3 http://evil.example/path -\n4 http://www.evil.example/ -\n5 evil.example:443\n")
    answers = dict(line.split(" ", 1) for line in helper.finish())
    assert answers == {"0": BLOCKED, "1": "ERR", "2": BLOCKED, "3": BLOCKED, "4": BLOCKED, "5": BLOCKED}


def test_without_channel_ids_answers_keep_the_order(helper: HelperProcess) -> None:
    helper.send(b"http://127.0.0.1/\nhttp://127.66.0.5/\n127.0.0.1:443\nhttp://evil.example/\n")
    assert helper.finish() == ["ERR", BLOCKED, "ERR", BLOCKED]


def test_malformed_and_overlong_lines_get_an_answer_and_the_next_is_served(helper: HelperProcess) -> None:
    helper.send(b"8\n")
    assert helper.answer() == '8 BH message="the request line names no URI"'
    helper.send(b"9 \xff\xfe -\n")
    assert helper.answer() == '9 BH message="the request line is not UTF-8 text"'
    helper.send(b"10 http://127.0.0.1/" + b"a" * (MAX_LINE * 3) + b" -\n")
    assert helper.answer().startswith("10 ")  # judged as policy says for what it cannot check
    helper.send(b"11 http://127.66.0.5/ -\n12 http://127.0.0.1/ -")  # the last one without a newline
    assert sorted(helper.finish()) == [f"11 {BLOCKED}", "12 ERR"]


def test_a_changed_feed_is_used_without_a_restart(helper: HelperProcess, tmp_path: Path) -> None:
    helper.send(b"1 http://127.0.0.9/ -\n")
    assert helper.answer() == "1 ERR"
    time.sleep(0.01)  # a different mtime even on coarse clocks
    (tmp_path / "ips.txt").write_text("127.66.0.5\n127.0.0.9\n")
    answers: list[str] = []

    def listed() -> bool:
        helper.send(b"2 http://127.0.0.9/ -\n")
        answers.append(helper.answer())
        return answers[-1] == f"2 {BLOCKED}"

    wait_until(listed, 30, "the helper to use the changed feed")
    (tmp_path / "policy.yaml").write_text("version: [not a policy")
    errors: list[str] = []

    def refused() -> bool:
        assert helper.process.stderr is not None
        if select.select([helper.process.stderr], [], [], 0.1)[0]:
            errors.append(helper.process.stderr.readline().decode())
        return any("kept the last good policy" in line for line in errors)

    wait_until(refused, 30, "the helper to refuse the broken policy")
    helper.send(b"3 http://127.0.0.9/ -\n")
    assert helper.answer() == f"3 {BLOCKED}"  # the last good judge keeps serving


class SlowDNS:
    """A DNS server on 127.0.0.70:53 answering A queries with 127.66.0.5 (a listed address) or 127.0.0.1.

    Names starting with "slow" get no answer until `release()`; AAAA queries get an empty answer.
    """

    ADDRESS = "127.0.0.70"

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ADDRESS, 53))
        self.asked: list[str] = []
        self.released = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def release(self) -> None:
        """Let the slow names' answers go."""
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.sock.close()

    def serve(self) -> None:
        while True:
            try:
                query, client = self.sock.recvfrom(512)
            except OSError:
                return
            threading.Thread(target=self.answer, args=(query, client), daemon=True).start()

    def answer(self, query: bytes, client: tuple[str, int]) -> None:
        labels, at = [], 12
        while query[at]:
            labels.append(query[at + 1:at + 1 + query[at]].decode())
            at += 1 + query[at]
        name, qtype = ".".join(labels), struct.unpack("!H", query[at + 1:at + 3])[0]
        question = query[12:at + 5]
        self.asked.append(name)
        if name.startswith("slow"):
            self.released.wait(30)
        records = b""
        if qtype == 1:
            address = "127.66.0.5" if "listed" in name else "127.0.0.1"
            records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
        header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if records else 0, 0, 0)
        with contextlib.suppress(OSError):  # closed at the end of the test
            self.sock.sendto(header + question + records, client)


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[tuple[SlowDNS, list[str]]]:
    """The slow DNS server, and the prefix running a command with it as its only name server."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a DNS server on port 53 and a mount namespace for /etc/resolv.conf")
    server = SlowDNS()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {SlowDNS.ADDRESS}\noptions attempts:1 timeout:30\n")
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh"]
    yield server, prefix
    server.close()


def test_a_slow_name_lookup_delays_only_its_own_answer(dns: tuple[SlowDNS, list[str]],
                                                     tmp_path: Path) -> None:
    server, prefix = dns
    helper = HelperProcess(tmp_path, prefix)
    try:
        helper.send(b"1 http://slow.one.test/ -\n")
        wait_until(lambda: "slow.one.test" in server.asked, 30, "the helper to ask for slow.one.test")
        helper.send(b"2 http://listed.test/ -\n3 http://127.66.0.5/ -\n4 http://fast.test/ -\n")
        first = sorted(helper.answer() for _ in range(3))
        assert first == [f"2 {BLOCKED}", f"3 {BLOCKED}", "4 ERR"]  # listed.test resolves to a listed address
        server.release()
        assert helper.answer() == "1 ERR"
        # Without channel IDs the answers keep the order of the requests, slow or not.
        helper.send(b"http://slow.two.test/\nhttp://127.66.0.5/\n")
        assert helper.finish() == ["ERR", BLOCKED]
    finally:
        if helper.process.poll() is None:
            helper.process.kill()
            helper.process.wait()


def test_a_host_the_proxy_learned_is_blocked_once_its_file_changes(helper: HelperProcess,
                                                                  tmp_path: Path) -> None:
    helper.send(b"1 http://127.0.0.77/ -\n")
    assert helper.answer() == "1 ERR"
    now = time.time()
    learned = {"host": "127.0.0.77", "evidence": "served a Mirai loader", "url": "http://127.0.0.77/",
               "codes": ["response.drive_by"], "learned_at": now, "expires": now + 3600}
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "learned.json").write_text(json.dumps({"hosts": [learned]}))
    answers: list[str] = []

    def blocked() -> bool:
        helper.send(b"2 http://127.0.0.77/ -\n")
        answers.append(helper.answer())
        return answers[-1] == f"2 {BLOCKED}"

    wait_until(blocked, 30, "the helper to read the learned hosts")


def test_a_host_a_proxy_node_learns_is_blocked_at_once_through_redis(tmp_path: Path, certs: Path) -> None:
    """cluster.redis: the helper takes what the proxy nodes learn as they learn it, no file in between."""
    (tmp_path / "node").mkdir()
    (tmp_path / "helper").mkdir()
    with running_redis(tmp_path / "redis") as redis:
        proxy = start_proxy(tmp_path / "node", write_policy(tmp_path / "node", "feeds: []\n"), certs,
                            "--redis", redis.url)
        helper = HelperProcess(tmp_path / "helper", extra=["--redis", redis.url, "--certs", str(certs)])
        camera = [("Server", "Hikvision-Webs"), ("Content-Type", "text/html")]
        camera_routes = {"/Mozi.m": Route(headers=camera, body=elf("mips", size=20_000))}
        try:
            helper.send(b"1 http://127.0.0.59/ -\n")
            assert helper.answer() == "1 ERR"
            with serve("127.0.0.59", camera_routes) as server:
                assert proxy.get(f"{server.base}/Mozi.m", HTML).headers["x-clickguard-action"] == "block"
            answers: list[str] = []

            def blocked() -> bool:
                helper.send(b"2 http://127.0.0.59/ -\n")
                answers.append(helper.answer())
                return answers[-1].startswith("2 OK ") and "landing.thingbot" in answers[-1]

            wait_until(blocked, 30, "the helper to take the host the proxy learned")
            assert not (tmp_path / "helper" / "var" / "learned.json").exists()  # through Redis, not a file
            assert helper.finish() == []
        finally:
            proxy.stop()
            if helper.process.poll() is None:
                helper.process.kill()
                helper.process.wait()


def test_a_helper_told_of_a_redis_needs_the_proxies_key(tmp_path: Path) -> None:
    policy = write_setup(tmp_path)
    result = subprocess.run([str(CLICKGUARD), "squid-helper", "--policy", str(policy), "--redis",
                             "redis://127.0.0.1:9/0", "--certs", str(tmp_path / "nowhere")],
                            input=b"", capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert b"clickguard.key: no signing key" in result.stderr


SQUID_RULES = """\
external_acl_type clickguard ttl=60 negative_ttl=60 children-max=2 concurrency=50 %URI \
{clickguard} squid-helper --policy {{work}}/policy.yaml --state-dir {{work}}/var
acl thingbot external clickguard
acl clients src 127.0.0.0/8
error_directory {{work}}/errors
deny_info ERR_CLICKGUARD thingbot
http_access deny thingbot
http_access allow clients
http_access deny all
"""


def fetch_through(host: str, port: int, url: str) -> tuple[int, bytes]:
    """GET url through the proxy at host:port."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def squid_site(work: Path) -> None:
    """The policy and feeds, and the error page IT gives the helper's ACL (%o: the helper's message)."""
    write_setup(work)
    (work / "errors").mkdir()
    (work / "errors" / "ERR_CLICKGUARD").write_text("<p>Blocked by clickguard: %o</p>\n")


def test_squid_with_the_helper_denies_a_listed_host_and_passes_an_ordinary_one(tmp_path: Path) -> None:
    rules = SQUID_RULES.format(clickguard=CLICKGUARD)
    with running_squid_with(tmp_path, rules, before_start=squid_site) as squid, \
            upstream("127.0.0.68") as site:
        status, page = fetch_through(squid.host, squid.port, "http://127.66.0.5/landing")
        assert (status, page) == (403, b"<p>Blocked by clickguard: landing.thingbot</p>\n")
        status, body = fetch_through(squid.host, squid.port, f"{site.base}/page")
        assert (status, body) == (200, b"hello from 127.0.0.68 at /page\n")
        squid.wait_for("GET http://127.66.0.5/landing", "TCP_DENIED/403")
        squid.wait_for(f"GET {site.base}/page", "/200")
    assert site.requests == ["/page"]
