"""Audit records sent to a SIEM over syslog (clickguard.audit.siem), received on real loopback sockets.

The policy (`audit.syslog`) is checked with clear messages; CEF escaping keeps hostile URLs
and user names from adding fields or lines; through the real proxy, a UDP receiver, a TCP one
and a unix datagram socket get one line per audit record, the same JSON as the audit log;
a TCP outage is counted, logged once and recovered from; a TCP receiver that stops reading
never holds a request up; a policy reload moves the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import ValidationError

from clickguard.audit import siem
from clickguard.audit.writer import AuditLog, record
from clickguard.errors import AuditError
from clickguard.policy.model import check_policy, load_policy
from clickguard.policy.sections import SyslogConfig
from tests.harness import HTML, Proxy, free_port, start_proxy, upstream, wait_until, write_policy

HEADER = re.compile(rb"<(\d+)>1 (\S+) (\S+) clickguard (\d+) - - ")
HOSTILE_USER = "eve|x=1 act=allow\\\r\nCEF:0|forged|x=y é\u2028\x00"


# --- receivers: real sockets on loopback or in tmp_path, each message as it arrived ---------------


class Received:
    """Messages a receiver got, appended by its thread."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()

    def add(self, message: bytes) -> None:
        with self._lock:
            self.messages.append(message)

    def all(self) -> list[bytes]:
        with self._lock:
            return list(self.messages)

    def bodies(self) -> list[bytes]:
        """The messages without their RFC 5424 header (each checked to have one)."""
        out = []
        for message in self.all():
            assert HEADER.match(message), message
            out.append(HEADER.sub(b"", message, count=1))
        return out

    def refs(self) -> list[str]:
        """The reference ids of the JSON messages received."""
        return [json.loads(body)["ref"] for body in self.bodies()]


@contextlib.contextmanager
def datagram_receiver(family: int, address: Any) -> Iterator[tuple[Received, Any]]:
    """A UDP or unix datagram socket bound to address; yields what it got and where it listens."""
    received = Received()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.1)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                received.add(sock.recv(65535))
            except TimeoutError:
                continue

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield received, sock.getsockname()
    finally:
        stop.set()
        thread.join()
        sock.close()


@contextlib.contextmanager
def tcp_receiver(host: str, port: int = 0, *, reading: bool = True) -> Iterator[tuple[Received, int]]:
    """A TCP listener splitting what it reads into lines; with reading=False it accepts and never reads."""
    received = Received()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if not reading:  # small buffers: the sender's writes block soon
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind((host, port))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()
    accepted: list[socket.socket] = []
    readers: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        buffer = b""
        conn.settimeout(0.1)
        while not stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                received.add(line)

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            received.connections += 1
            if reading:
                readers.append(threading.Thread(target=serve, args=(conn,), daemon=True))
                readers[-1].start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield received, listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for reader in readers:
            reader.join()
        for conn in accepted:
            conn.close()
        listener.close()


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """A CEF line read as a SIEM reads it: 8 header fields split at unescaped pipes, then key=value pairs.

    A key is a word before an unescaped `=` that starts the line's extension or follows a space;
    its value runs to the space before the next key. Escapes are undone.
    """
    header: list[str] = []
    field, i = "", 0
    while len(header) < 7:
        char = text[i]
        if char == "\\":
            field, i = field + text[i + 1], i + 2
        elif char == "|":
            header.append(field)
            field, i = "", i + 1
        else:
            field, i = field + char, i + 1
    extension = text[i:]
    starts = [m for m in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", extension)
              if not _escaped(extension, m.end() - 1)]
    pairs: dict[str, str] = {}
    for n, m in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(extension)
        raw = extension[m.end():end]
        assert m[1] not in pairs, f"{m[1]} twice in {extension!r}"
        pairs[m[1]] = re.sub(r"\\(.)", lambda e: {"n": "\n", "r": "\r"}.get(e[1], e[1]), raw)
    return header, pairs


def _escaped(text: str, at: int) -> bool:
    """Whether the character at `at` follows an odd number of backslashes."""
    count = 0
    while at - count - 1 >= 0 and text[at - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def syslog_policy(directory: Path, target: str, *extra: str) -> Path:
    """A policy denying 127.0.0.4 whose audit records also go to target."""
    lines = "".join(f"    {line}\n" for line in extra)
    return write_policy(directory, "version: 1\ndeny: {networks: [127.0.0.4]}\n"
                                   f"audit:\n  store: off\n  syslog:\n    target: '{target}'\n{lines}")


def audit_status(proxy: Proxy) -> dict[str, Any]:
    """The syslog sender's state the proxy published for `clickguard feeds status` (empty until then)."""
    try:
        status = json.loads((proxy.workdir / "var" / "feeds-status.json").read_text())
    except (OSError, ValueError):
        return {}
    return (status.get("audit") or {}).get("syslog") or {}


# --- the policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "normalised"), [
    ("udp://127.0.0.1:5514", "udp://127.0.0.1:5514"),
    ("UDP://SIEM.Example.com", "udp://siem.example.com:514"),
    ("tcp://[::1]:6514", "tcp://[::1]:6514"),
    ("unix:/dev/log", "unix:/dev/log"),
    ("unix:///run/systemd/journal/syslog", "unix:/run/systemd/journal/syslog"),
])
def test_targets_are_normalised(target: str, normalised: str) -> None:
    assert SyslogConfig(target=target).target == normalised


def test_a_relative_unix_path_is_beside_the_policy(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "audit: {syslog: 'unix:sock/log'}\n")
    assert check_policy(path) == []
    assert load_policy(path).policy.audit.syslog == SyslogConfig(target=f"unix:{tmp_path}/sock/log")


@pytest.mark.parametrize(("fields", "message"), [
    ({"target": "http://siem.example:514"}, "must be udp://HOST:PORT, tcp://HOST:PORT or unix:PATH"),
    ({"target": "udp:siem.example"}, "must be udp://HOST:PORT, tcp://HOST:PORT or unix:PATH"),
    ({"target": "udp://siem.example:70000"}, "the port must be a number from 1 to 65535"),
    ({"target": "udp://siem.example:0"}, "needs a host, and a port from 1 to 65535"),
    ({"target": "tcp://siem.example:514/path"}, "must be only a host and a port"),
    ({"target": "tcp://user@siem.example:514"}, "must be only a host and a port"),
    ({"target": "unix:"}, "unix: needs a socket path"),
    ({"target": 514}, "must be udp://HOST:PORT"),
    ({"target": "udp://siem.example", "format": "xml"}, "'json' or 'cef'"),
    ({"target": "udp://siem.example", "facility": "local9"}, "must be a syslog facility"),
    ({"target": "udp://siem.example", "app_name": "click guard"}, "1 to 48 printable ASCII"),
    ({"target": "udp://siem.example", "max_queue": 0}, "greater than or equal to 1"),
    ({"target": "udp://siem.example", "max_message": "1MiB"}, "less than or equal to 65507"),
    ({"target": "udp://siem.example", "framing": "lines"}, "'newline' or 'octet_counting'"),
])
def test_bad_settings_say_what_is_wrong(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        SyslogConfig.model_validate(fields)


def test_a_bad_target_is_a_problem_at_its_line(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "version: 1\naudit:\n  syslog:\n    target: ftp://siem.example\n")
    problems = [str(p) for p in check_policy(path)]
    assert problems == [f"{path}:4: audit.syslog.target: must be udp://HOST:PORT, tcp://HOST:PORT or "
                        "unix:PATH (got 'ftp://siem.example')"]


@pytest.mark.parametrize(("written", "target"), [
    ("udp://10.0.0.9", "udp://10.0.0.9:514"), ("{target: 'tcp://10.0.0.9:601'}", "tcp://10.0.0.9:601"),
    ("off", None), ("", None),
])
def test_syslog_shorthands(tmp_path: Path, written: str, target: str | None) -> None:
    config = load_policy(write_policy(tmp_path, f"audit:\n  syslog: {written}\n")).policy.audit.syslog
    assert (config.target if config else None) == target


# --- CEF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "header", "value"), [
    ("plain", "plain", "plain"),
    ("a|b", "a\\|b", "a|b"),
    ("a=b", "a=b", "a\\=b"),
    ("a\\b", "a\\\\b", "a\\\\b"),
    ("a\nb\rc\r\nd", "a\ufffdb\ufffdc\ufffd\ufffdd", "a\\nb\\rc\\nd"),
    ("\\=", "\\\\=", "\\\\\\="),
    ("tab\there\x00\x7f\x85\u2028\u2029\udcff", "tab\ufffdhere" + "\ufffd" * 6,
     "tab\ufffdhere" + "\ufffd" * 6),
    ("é 日本 🙂", "é 日本 🙂", "é 日本 🙂"),
])
def test_cef_escaping(text: str, header: str, value: str) -> None:
    assert siem.cef_header(text) == header
    assert siem.cef_value(text) == value


HOSTILE_URLS = [
    "http://a.example/p|q=1\\2?x=y act=allow suser=admin",
    "http://a.example/\nCEF:0|forged|forged|1|x|y|0|act=allow\r\n<13>1 - forged",
    "http://a.example/\\=\\|\\\\\\",
    "http://a.example/é/日本?q=🙂\u2028\u0085end",
    "http://a.example/ends-with-a-backslash\\",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_values_stay_in_their_fields(url: str) -> None:
    entry = record(ref="r1", event="decision", client="127.0.0.9", user=HOSTILE_USER, url=url, action="block",
                   findings=[], origin_ip="203.0.113.5", group="staff|x=1")
    line = siem.cef(entry)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x85" not in line
    header, fields = parse_cef(line)
    assert header == ["CEF:0", "clickguard", "clickguard", header[3], "block", "block (decision)", "8"]
    assert set(fields) == {"rt", "act", "cat", "request", "suser", "src", "externalId", "cs1", "cs1Label",
                           "cs3", "cs3Label"}
    assert fields["act"] == "block" and fields["src"] == "127.0.0.9" and fields["cs1"] == "203.0.113.5"
    unsafe = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
    # A CR LF pair is one line break (\n); every other character comes back as it was, or as U+FFFD.
    assert fields["request"] == unsafe.sub("\ufffd", url.replace("\r\n", "\n"))
    assert fields["suser"] == unsafe.sub("\ufffd", HOSTILE_USER.replace("\r\n", "\n"))
    assert fields["cs3"] == "staff|x=1"


def test_cef_names_the_first_reason_and_every_code() -> None:
    entry = {"ts": "2026-12-03T10:00:00.000Z", "ref": "ab", "event": "click", "client": "::1", "user": None,
             "url": "http://x.example/", "action": "warn",
             "reasons": ["origin.thingbot", "landing.appliance"],
             "host": "x.example", "click_id": "c1"}
    header, fields = parse_cef(siem.cef(entry))
    assert header[4:] == ["origin.thingbot", "The e-mail this link came from was sent through a device known "
                          "to be infected.", "6"]
    assert fields["cs2"] == "origin.thingbot,landing.appliance" and fields["cs2Label"] == "reasons"
    assert fields["c6a2"] == "::1" and fields["dhost"] == "x.example" and fields["cs4"] == "c1"
    assert fields["rt"] == "1796292000000"


@pytest.mark.parametrize("form", ["json", "cef"])
def test_long_records_are_shortened_to_max_message(form: Literal["json", "cef"]) -> None:
    config = SyslogConfig(target="udp://127.0.0.1", format=form, max_message=1024)
    url = "http://a.example/" + "é\\=|" * 5000
    entry = record(ref="r1", event="decision", client="127.0.0.1", user="u", url=url, action="allow",
                   findings=[], big="x" * 10_000)
    line = json.dumps(entry, separators=(",", ":")) + "\n"
    data = siem.message(config, (line, entry), "host")
    assert len(data) <= 1024
    body = HEADER.sub(b"", data, count=1).decode("utf-8")
    if form == "json":
        shortened = json.loads(body)
        assert shortened["truncated"] is True and "big" not in shortened and shortened["ref"] == "r1"
        assert url.startswith(shortened["url"][:-1]) and shortened["url"].endswith("…")
    else:
        _header, fields = parse_cef(body)
        assert url.startswith(fields["request"][:-1]) and fields["request"].endswith("…")


@pytest.mark.parametrize(("framing", "expected"), [("newline", b"abc\n"), ("octet_counting", b"3 abc")])
def test_stream_framing(framing: str, expected: bytes) -> None:
    assert siem.framed(b"abc", framing) == expected


# --- the writer, without a proxy -----------------------------------------------------------------


def _write_all(log: AuditLog, count: int) -> list[bool]:
    async def main() -> list[bool]:
        return list(await asyncio.gather(*(log.write(record(
            ref=f"r{n}", event="decision", client="127.0.0.1", user=None, url=f"http://a.example/{n}",
            action="allow", findings=[])) for n in range(count))))
    return asyncio.run(main())


def test_unix_stream_socket_with_octet_counting(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    log = AuditLog(None, None, syslog=SyslogConfig(target=f"unix:{path}", framing="octet_counting"))
    try:
        assert _write_all(log, 3) == [True] * 3
        conn, _ = listener.accept()
        conn.settimeout(10)
        data = b""
        while data.count(b" - - ") < 3:
            data += conn.recv(65536)
        messages = []
        while data:
            length, _, rest = data.partition(b" ")
            messages.append(rest[:int(length)])
            data = rest[int(length):]
        assert [json.loads(HEADER.sub(b"", m))["ref"] for m in messages] == ["r0", "r1", "r2"]
        conn.close()
    finally:
        log.close()
        listener.close()


@pytest.mark.parametrize(("on_failure", "sent"), [("open", 1), ("closed", 0)])
def test_a_record_refused_under_closed_is_not_sent(on_failure: Literal["open", "closed"], sent: int) -> None:
    # /dev/full: the file takes nothing. Open serves the request anyway, so the SIEM hears of it;
    # closed refuses it, so the record (which says what would have been done) is not sent.
    with datagram_receiver(socket.AF_INET, ("127.0.0.7", 0)) as (received, (host, port)):
        log = AuditLog(Path("/dev/full"), None, on_failure=on_failure,
                       syslog=SyslogConfig(target=f"udp://{host}:{port}"))
        try:
            with contextlib.suppress(AuditError):
                assert _write_all(log, 1) == [False]
        finally:
            log.close()  # the writer threads are done, the sender drained
        assert log.health()["syslog"]["sent"] == sent
        wait_until(lambda: len(received.all()) == sent, 10, "the messages sent")


def test_a_new_target_takes_over_at_once() -> None:
    with datagram_receiver(socket.AF_INET, ("127.0.0.7", 0)) as (first, (host, first_port)), \
            datagram_receiver(socket.AF_INET, ("127.0.0.7", 0)) as (second, (_, second_port)):
        log = AuditLog(None, None, syslog=SyslogConfig(target=f"udp://{host}:{first_port}"))
        try:
            _write_all(log, 1)
            wait_until(lambda: len(first.all()) == 1, 10, "the first target's message")
            log.use_syslog(SyslogConfig(target=f"udp://{host}:{second_port}", format="cef"))
            _write_all(log, 2)
            wait_until(lambda: len(second.all()) == 2, 10, "the second target's messages")
            assert all(b"CEF:0|" in message for message in second.all()) and len(first.all()) == 1
            log.use_syslog(None)
            assert log.health()["syslog"] is None
        finally:
            log.close()


def test_a_full_queue_drops_and_counts_without_holding_the_writer(tmp_path: Path) -> None:
    # Nothing listens at the unix path: every record waits, the queue holds 5, the rest are dropped.
    config = SyslogConfig(target=f"unix:{tmp_path / 'none.sock'}", max_queue=5)
    log = AuditLog(tmp_path / "audit.jsonl", None, syslog=config)
    try:
        assert _write_all(log, 50) == [True] * 50  # acknowledged: the file has them
        # Handed to syslog right after the acknowledgement: poll until all 50 are counted.
        wait_until(lambda: log.health()["syslog"]["dropped"] + log.health()["syslog"]["backlog"] == 50
                   and log.health()["syslog"]["failing"], 10, "every record queued or dropped, the outage")
        health = log.health()["syslog"]
        assert health["backlog"] <= 5 and health["dropped"] >= 45
        assert health["failing"] and health["failures"] == 1 and "No such file" in health["last_error"]
    finally:
        log.close()
    assert log.health()["syslog"]["sent"] == 0


# --- through the proxy ---------------------------------------------------------------------------


def _two_decisions(proxy: Proxy, good_host: str = "127.0.0.2") -> list[dict[str, Any]]:
    """One allowed and one blocked navigation; their audit records once both are written."""
    with upstream(good_host) as good, upstream("127.0.0.4") as denied:
        assert proxy.get(f"{good.base}/page", HTML).status == 200
        assert proxy.get(f"{denied.base}/page", HTML).status == 403
        return proxy.wait_for_audit(lambda records: len(records) >= 2, "two audit records")


def test_udp_receives_one_json_line_per_record(tmp_path: Path, certs: Path) -> None:
    with datagram_receiver(socket.AF_INET, ("127.0.0.7", 0)) as (received, (host, port)):
        policy = write_policy(tmp_path, f"""\
            version: 1
            deny: {{networks: [127.0.0.4]}}
            audit:
              syslog: {{target: 'udp://{host}:{port}', facility: local3}}
            """)
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            records = _two_decisions(proxy)
            wait_until(lambda: len(received.all()) >= 2, 10, "two syslog messages")
            lines = proxy.audit_path.read_bytes().splitlines()
            assert sorted(received.bodies()) == sorted(lines)  # the audit log's JSON, byte for byte
            for message in received.all():
                header = HEADER.match(message)
                assert header is not None
                entry = json.loads(HEADER.sub(b"", message))
                severity = {"allow": 6, "block": 4}[entry["action"]]
                assert int(header[1]) == 19 * 8 + severity  # local3
                assert header[2].decode() == entry["ts"] and int(header[4]) == proxy.process.pid
            assert {r["action"] for r in records} == {"allow", "block"}
        finally:
            proxy.stop()
    assert len(received.all()) == 2  # nothing more: one line per record


def test_unix_datagram_socket(tmp_path: Path, certs: Path) -> None:
    path = tmp_path / "log.sock"
    with datagram_receiver(socket.AF_UNIX, str(path)) as (received, _):
        proxy = start_proxy(tmp_path, syslog_policy(tmp_path, f"unix:{path.name}"), certs)
        try:
            records = _two_decisions(proxy)
            wait_until(lambda: len(received.all()) >= 2, 10, "two syslog messages")
            assert sorted(received.refs()) == sorted(r["ref"] for r in records)
        finally:
            proxy.stop()


def test_tcp_cef_with_a_hostile_url(tmp_path: Path, certs: Path) -> None:
    with tcp_receiver("127.0.0.7") as (received, port):
        policy = syslog_policy(tmp_path, f"tcp://127.0.0.7:{port}", "format: cef")
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            with upstream("127.0.0.4") as denied:
                # What a request line can carry: pipes, equals signs, backslashes, raw UTF-8, spaces encoded.
                path = "/a|b=c\\d/%0A%0D%C3%A9?q=x\\=|y%20act=allow&suser=admin|CEF:0|x\\"
                assert proxy.get(f"{denied.base}{path}", HTML).status == 403
                recorded = proxy.wait_for_audit(lambda records: len(records) == 1)[0]
            wait_until(lambda: len(received.all()) >= 1, 10, "the CEF line")
            [message] = received.all()
            _header, fields = parse_cef(HEADER.sub(b"", message).decode("utf-8"))
            assert fields["request"] == recorded["url"]
            assert "|" in recorded["url"] and "=" in recorded["url"] and recorded["url"].endswith("\\")
            assert fields["act"] == "block" and fields["externalId"] == recorded["ref"]
            assert fields["cs2"] == "policy.deny" and fields["src"] == "127.0.0.1"
            assert received.connections == 1
        finally:
            proxy.stop()


def test_tcp_outage_is_counted_logged_once_and_recovered(tmp_path: Path, certs: Path) -> None:
    port = free_port("127.0.0.8")  # nothing listens there yet
    policy = syslog_policy(tmp_path, f"tcp://127.0.0.8:{port}", "max_queue: 2")
    proxy = start_proxy(tmp_path, policy, certs)
    try:
        with upstream("127.0.0.2") as good:
            for n in range(6):
                assert proxy.get(f"{good.base}/down{n}", HTML).status == 200
            proxy.wait_for_audit(lambda records: len(records) == 6, "six records")
            wait_until(lambda: audit_status(proxy).get("dropped", 0) >= 4, 10, "the drops in the status")
            status = audit_status(proxy)
            assert status["failing"] and status["failures"] == 1 and "refused" in status["last_error"]
            shown = subprocess.run([sys.executable, "-m", "clickguard.cli", "feeds", "status",
                                    "--state-dir", str(tmp_path / "var")],
                                   capture_output=True, text=True, timeout=60, check=False)
            assert f"audit syslog FAILING tcp://127.0.0.8:{port}, 2 records waiting" in shown.stdout, shown
            with tcp_receiver("127.0.0.8", port) as (received, _):
                # The next retry (within RETRY_MAX) sends the two records the queue kept, oldest first.
                wait_until(lambda: len(received.all()) >= 2, 30, "the records queued during the outage")
                down = [r["ref"] for r in proxy.audit_of(good.base)]
                assert received.refs() == down[:2]
                assert proxy.get(f"{good.base}/up", HTML).status == 200
                up_ref = proxy.audit_of(good.base)[-1]["ref"]
                wait_until(lambda: up_ref in received.refs(), 30, "the record made after the outage")
                wait_until(lambda: not audit_status(proxy).get("failing", True), 10, "the recovery published")
        log = proxy.log()
        assert log.count("cannot send") == 1, log  # one line for the outage, however many retries
        assert "sending again" in log
    finally:
        proxy.stop()


def test_a_receiver_that_never_reads_holds_no_request(tmp_path: Path, certs: Path) -> None:
    with tcp_receiver("127.0.0.7", reading=False) as (received, port):
        policy = syslog_policy(tmp_path, f"tcp://127.0.0.7:{port}", "max_queue: 5", "max_message: 65000")
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            with upstream("127.0.0.2") as good:
                long_path = "/" + "x" * 60_000  # ~60 KB a message: the socket buffers (a few MB) fill
                served = 0
                while not audit_status(proxy).get("dropped") and served < 400:
                    assert proxy.get(f"{good.base}{long_path}{served}", HTML, timeout=10).status == 200
                    served += 1
                assert audit_status(proxy).get("dropped"), f"{served} requests and the sender never blocked"
                assert proxy.get(f"{good.base}/after", HTML, timeout=10).status == 200
                proxy.wait_for_audit(lambda records: len(records) == served + 1, "every record on disk")
            assert received.connections >= 1
        finally:
            proxy.stop()


def test_a_policy_reload_moves_the_target(tmp_path: Path, certs: Path) -> None:
    with datagram_receiver(socket.AF_INET, ("127.0.0.7", 0)) as (first, (host, first_port)), \
            datagram_receiver(socket.AF_INET, ("127.0.0.9", 0)) as (second, (other, second_port)):
        policy = syslog_policy(tmp_path, f"udp://{host}:{first_port}")
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            with upstream("127.0.0.2") as good:
                assert proxy.get(f"{good.base}/before", HTML).status == 200
                wait_until(lambda: len(first.all()) == 1, 10, "the first target's message")
                syslog_policy(tmp_path, f"udp://{other}:{second_port}", "format: cef")

                def reloaded() -> bool:  # each poll one request, until one reaches the new target
                    assert proxy.get(f"{good.base}/after", HTML).status == 200
                    return len(second.all()) > 0
                wait_until(reloaded, 30, "a message at the new target")
            assert second.all()[0].count(b"CEF:0|clickguard|") == 1
            assert all(body.startswith(b"{") for body in first.bodies())  # the old target: JSON only
        finally:
            proxy.stop()
