"""`clickguard check - --jobs N`: the same output bytes and exit status whatever N, run as IT runs it.

The CLI runs as a subprocess on feeds and a policy this module writes; the input is a
mix of what a batch meets (listed and clean URLs, malformed ones, blank lines and
comments, CRLF, lines that are not UTF-8, lines longer than a chunk), large enough to
be cut into several chunks, so `--jobs 2` judges it in forked workers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clickguard import cli
from clickguard.decision.batch import CHUNK_BYTES, LineChecker, format_result
from clickguard.decision.build import judge_as
from tests.harness import REPO

LISTED_IPS = [f"203.0.113.{n}" for n in range(1, 40)]
LISTED_URLS = [f"https://login-{n}.phish.example/verify?id={n}" for n in range(30)]
POLICY = """\
version: 1
deny: {hosts: [denied.example], domains: [evil.example]}
allow: {hosts: [allowed.example], networks: [203.0.113.32/27]}
groups:
  - name: sales
    members: [Alice]
    actions: {policy.deny: warn}
    allow: {domains: [partner.example]}
"""
# Lines that are no URL a browser would open, each of which gets its own error result.
MALFORMED = [b"http://[::1/", b"not a url", b"javascript:alert(1)", b"http://1.2.3.4:99999/",
             b"http://bad host.example/"]
NOT_UTF8 = [b"http://x.example/\xff\xfe", b"\xc3(", b"http://caf\xe9.example/"]


@pytest.fixture
def options(tmp_path: Path) -> list[str]:
    """Feeds (an IP list and a URL list) and a policy of this test's own, and its state directory."""
    ips, urls, policy = tmp_path / "bots.txt", tmp_path / "phish.txt", tmp_path / "policy.yaml"
    ips.write_text("# test feed\n" + "\n".join(LISTED_IPS) + "\n")
    urls.write_text("\n".join(LISTED_URLS) + "\n")
    policy.write_text(POLICY)
    return ["--feed", f"ip:{ips}", "--feed", f"urls:{urls}", "--policy", str(policy),
            "--state-dir", str(tmp_path / "state")]


def _run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """`clickguard check -` with these options, fed these bytes."""
    return subprocess.run([sys.executable, "-m", "clickguard.cli", "check", "-", *args], cwd=REPO,
                          input=stdin, capture_output=True, timeout=300, check=False)


def _clean_or_listed(rng: random.Random) -> bytes:
    """One URL that parses: listed by a feed or the policy, or clean."""
    r = rng.random()
    if r < 0.2:
        return f"http://{rng.choice(LISTED_IPS)}:{rng.randrange(1024, 65535)}/bins/mips".encode()
    if r < 0.3:
        return rng.choice(LISTED_URLS).encode()
    if r < 0.35:
        return rng.choice([b"http://denied.example/", b"https://a.evil.example/x", b"https://allowed.example/",
                           b"http://shop.partner.example/"])
    return f"https://www.site{rng.randrange(10**6)}.example.com/a?q={rng.random()}".encode()


def mixed_input(lines: int, seed: int = 14) -> tuple[bytes, list[bytes]]:
    """(stdin bytes, the lines that get a result, in order): a batch over several chunks."""
    rng = random.Random(seed)
    out: list[bytes] = []
    judged: list[bytes] = []
    for _ in range(lines):
        r = rng.random()
        if r < 0.03:
            line = rng.choice(MALFORMED)
        elif r < 0.05:
            line = rng.choice(NOT_UTF8)
        elif r < 0.08:
            out.append(rng.choice([b"", b"   ", b"# a comment", b"\t"]))
            continue
        else:
            line = _clean_or_listed(rng)
        judged.append(line)
        out.append(line + b"\r" if r > 0.9 else line)  # CRLF on some lines
    for at in (lines // 3, 2 * lines // 3):  # longer than a chunk: read across chunk boundaries
        line = b"https://long.example/" + b"a" * (CHUNK_BYTES + 1000)
        out.insert(at, line)
        judged.insert(sum(1 for x in out[:at] if x.strip() and not x.startswith(b"#")), line)
    data = b"\n".join(out) + b"\nhttp://last.example/no-newline"
    judged.append(b"http://last.example/no-newline")
    assert len(data) > 8 * CHUNK_BYTES  # more chunks than --jobs 2 keeps in flight
    return data, judged


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_same_bytes_whatever_the_jobs(options: list[str], json_flag: list[str]) -> None:
    data, judged = mixed_input(40000)
    one = _run([*options, *json_flag, "--jobs", "1"], data)
    assert one.returncode == 1, one.stderr  # malformed lines: judged as errors, the batch went on
    assert one.stderr == b""
    for jobs in ("2", "3"):
        many = _run([*options, *json_flag, "--jobs", jobs], data)
        assert (many.returncode, many.stderr) == (1, b"")
        assert many.stdout == one.stdout, f"--jobs {jobs} wrote other bytes than --jobs 1"
    assert one.stdout.count(b"\n") == len(judged)


def test_each_line_its_result_in_order(options: list[str]) -> None:
    data, judged = mixed_input(40000, seed=15)
    result = _run([*options, "--json", "--jobs", "2", "--user", "Alice"], data)
    assert result.returncode == 1, result.stderr
    out = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert [o["url"] for o in out] == [x.strip().decode("utf-8", "backslashreplace") for x in judged]
    for line, o in zip(judged, out, strict=True):
        bad = line in MALFORMED or line in NOT_UTF8
        assert ("error" in o) == bad, o
        if line.startswith(b"http://203.0.113.") and int(line[17:].split(b":")[0]) < 32:
            assert o["action"] == "block", o
        elif line.startswith(b"http://203.0.113."):
            assert o["action"] == "allow" and o["allowed_by"] == "allow list: network 203.0.113.32/27", o
        elif line.decode("latin-1") in LISTED_URLS:
            assert o["action"] == "block" and o["reasons"][0]["code"] == "landing.thingbot", o
        elif line == b"http://denied.example/":
            assert o["action"] == "warn", o  # the sales group's action for policy.deny
        elif line == b"http://shop.partner.example/":
            assert o["allowed_by"] == "allow list: domain partner.example", o
    assert {o.get("group") for o, x in zip(out, judged, strict=True) if x not in NOT_UTF8} == {"sales"}


def test_exit_0_when_every_url_was_judged(options: list[str]) -> None:
    rng = random.Random(3)
    data = b"\n".join(_clean_or_listed(rng) for _ in range(12000)) + b"\n"
    assert len(data) > 2 * CHUNK_BYTES
    one, two = _run([*options, "--jobs", "1"], data), _run([*options, "--jobs", "2"], data)
    assert (one.returncode, two.returncode) == (0, 0), two.stderr
    assert one.stdout == two.stdout
    assert two.stdout.count(b"\n") == 12000


def test_jobs_must_be_a_count(options: list[str]) -> None:
    result = _run([*options, "--jobs", "0"], b"https://example.org/\n")
    assert result.returncode == 2
    assert b"--jobs: expected a count of processes" in result.stderr


def _children(pid: int) -> list[int]:
    """The processes whose parent is pid."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # ended meanwhile
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_a_worker_that_dies_is_an_error_not_a_hang(options: list[str]) -> None:
    args = [sys.executable, "-m", "clickguard.cli", "check", "-", "--jobs", "2", *options]
    proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    block = b"https://www.site.example.com/a/b?q=1\n" * 20000

    def feed() -> None:
        """Far more input than the batch judges before the kill; stops when the parent has gone."""
        assert proc.stdin is not None
        try:
            for _ in range(300):
                proc.stdin.write(block)
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    deadline = time.monotonic() + 120
    while not (workers := _children(proc.pid)):
        assert proc.poll() is None and time.monotonic() < deadline, "no worker was started"
        time.sleep(0.05)
    os.kill(workers[0], signal.SIGKILL)
    try:
        status = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert status == 2
    assert b"clickguard: a worker process of check --jobs 2 died" in proc.stderr.read()


def test_the_direct_lines_are_the_results_formatted(tmp_path: Path) -> None:
    """LineChecker.line writes each line without the result dict: the bytes format_result makes of it."""
    ips, urls, policy = tmp_path / "bots.txt", tmp_path / "phish.txt", tmp_path / "policy.yaml"
    ips.write_text("\n".join(LISTED_IPS) + "\n")
    urls.write_text("\n".join(LISTED_URLS) + "\n")
    policy.write_text(POLICY)
    judge, _feeds = cli.load_judge(policy, [f"ip:{ips}", f"urls:{urls}"], tmp_path / "state")
    rng = random.Random(4)
    raws = [_clean_or_listed(rng).decode() for _ in range(400)]
    raws += ["http://[2001:db8::cb00:7101]/", "https://caf\u00e9.example/\u2603?q=\"x\"<y>", "HTTP://A.Example:80/../b"]
    raws += [m.decode() for m in MALFORMED]
    for group in (None, "sales"):
        for origin in (None, LISTED_IPS[0]):
            for as_json in (False, True):
                checker = LineChecker(judge_as(judge, group=group), as_json=as_json, origin_ip=origin)
                for raw in raws * 2:  # the second time from the memo
                    text, failed = checker.line(raw)
                    result = checker.result(raw)
                    assert text == format_result(result, as_json), raw
                    assert failed == ("error" in result)
