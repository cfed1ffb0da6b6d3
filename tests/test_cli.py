"""The command line, run as a subprocess the way IT runs it: check, policy check, feeds status.

Its error handling is run in-process: a user's mistake is one line and exit status 2,
a bug is a traceback.
"""

from __future__ import annotations

import json
import mailbox
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clickguard import cli, reasons
from clickguard.intel.learned import STATE_FILE, LearnedHosts
from tests.harness import REPO

LISTED = "203.0.113.77"
URLHAUS = "urlhaus/urlhaus_csv_online_2026-01-27.csv"


def _run(*args: str, stdin: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clickguard.cli", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def _run_bytes(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """The CLI fed bytes that need not be text in any encoding."""
    return subprocess.run([sys.executable, "-m", "clickguard.cli", *args], cwd=REPO, input=stdin,
                          capture_output=True, timeout=120, check=False)


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def state(tmp_path: Path) -> list[str]:
    """`--state-dir` of a state directory of this test's own (not the checkout's var/)."""
    return ["--state-dir", str(tmp_path / "state")]


@pytest.fixture
def ip_feed(tmp_path: Path) -> Path:
    path = tmp_path / "bots.txt"
    path.write_text(f"# test feed\n{LISTED}\n")
    return path


@pytest.mark.parametrize(
    ("url", "action", "codes"),
    [
        (f"http://{LISTED}:8080/bins/mips", "block", ["landing.thingbot"]),
        ("https://example.org/clean", "allow", []),
        ("http://127.66.0.1/", "block", ["landing.thingbot"]),  # the default policy's selftest feed
    ],
)
def test_check_json(ip_feed: Path, state: list[str], url: str, action: str, codes: list[str]) -> None:
    result = _run("check", url, "--json", "--feed", f"ip:{ip_feed}", *state)
    assert result.returncode == 0, result.stderr
    (decision,) = _json_lines(result.stdout)
    assert decision["action"] == action
    assert [r["code"] for r in decision["reasons"]] == codes
    assert all(r["detail"] for r in decision["reasons"])
    if url.startswith(f"http://{LISTED}"):
        assert decision["reasons"][0]["feed"] == "bots"
        assert decision["reasons"][0]["indicator"] == LISTED


def test_check_stdin(ip_feed: Path, state: list[str]) -> None:
    urls = [f"http://{LISTED}/i", "http://[::1/", "https://example.org/", "# a comment",
            "", "http://127.66.1.2:81/x", "https://Example.COM./a/../b"]
    result = _run("check", "-", "--json", "--feed", f"ip:{ip_feed}", *state, stdin="\n".join(urls) + "\n")
    assert result.returncode == 1, result.stderr  # one line could not be judged: "http://[::1/"
    lines = _json_lines(result.stdout)
    assert [line["url"] for line in lines] == [u for u in urls if u and not u.startswith("#")]
    assert [line["action"] for line in lines] == ["block", "allow", "allow", "block", "allow"]
    assert ["error" in line for line in lines] == [False, True, False, False, False]
    assert "IPv6" in lines[1]["error"]
    assert lines[4]["normalized"] == "https://example.com/b"


def test_check_malformed_single_url_exit_status(state: list[str]) -> None:
    result = _run("check", "http://[::1/", "--json", *state)
    assert result.returncode == 1  # a result was printed: an error result
    (decision,) = _json_lines(result.stdout)
    assert decision["error"]


def test_check_stdin_all_judged_exits_0(ip_feed: Path, state: list[str]) -> None:
    result = _run("check", "-", "--feed", f"ip:{ip_feed}", *state,
                  stdin=f"http://{LISTED}/i\nhttps://example.org/\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["block", "allow"]


def test_check_stdin_a_line_that_is_not_text_gets_its_own_result(ip_feed: Path, state: list[str]) -> None:
    lines = [f"http://{LISTED}/a".encode(), b"http://x.example/\xff\xfe", b"\xc3(", b"https://example.org/",
             f"http://{LISTED}/b".encode()]
    result = _run_bytes("check", "-", "--json", "--feed", f"ip:{ip_feed}", *state,
                        stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 1, result.stderr
    out = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert [o["action"] for o in out] == ["block", "allow", "allow", "allow", "block"]
    assert [o["url"] for o in out] == [f"http://{LISTED}/a", "http://x.example/\\xff\\xfe", "\\xc3(",
                                       "https://example.org/", f"http://{LISTED}/b"]
    assert re.fullmatch(r"line 2 is not UTF-8 text: .*", out[1]["error"]), out[1]
    assert re.fullmatch(r"line 3 is not UTF-8 text: .*", out[2]["error"]), out[2]
    assert ["error" in o for o in out] == [False, True, True, False, False]


def test_check_a_url_that_is_not_text_prints_valid_json(state: list[str]) -> None:
    # An argument that is not UTF-8 reaches Python as lone surrogates: JSON shows them escaped.
    result = subprocess.run([sys.executable, "-m", "clickguard.cli", "check", "--json", *state,
                             os.fsencode("http://x.example/") + b"\xff"],
                            cwd=REPO, capture_output=True, timeout=120, check=False, env={
                                **os.environ, "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    (decision,) = _json_lines(result.stdout.decode("ascii"))
    assert decision["url"] == "http://x.example/\udcff"
    assert decision["normalized"] == "http://x.example/%EF%BF%BD"


@pytest.mark.parametrize("command", ["check", "rewrite"])
def test_help_documents_the_exit_statuses(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "exit status: 0 " in text and " 1 " in text and " 2 " in text, text


# 203.0.113.77 is cb00:714d in hex; Teredo writes its client with every bit flipped (34ff:8eb2).
EMBEDDING = [
    ("http://[64:ff9b::cb00:714d]/bins/mips", "the NAT64 form of 203.0.113.77"),
    ("http://[64:ff9b::203.0.113.77]/", "the NAT64 form of 203.0.113.77"),
    ("http://[64:ff9b:1::cb00:714d]:8080/i", "the local-use NAT64 form of 203.0.113.77"),
    ("http://[2002:cb00:714d::1]/", "the 6to4 form of 203.0.113.77"),
    ("http://[::ffff:cb00:714d]/", "the IPv4-mapped form of 203.0.113.77"),
    ("http://[::203.0.113.77]/", "the IPv4-compatible form of 203.0.113.77"),
    ("http://[2001:0:4136:e378:8000:63bf:34ff:8eb2]/", "the Teredo client 203.0.113.77"),
    ("http://[2001:0:cb00:714d::]/", "the Teredo server 203.0.113.77"),
]


def test_check_judges_the_ipv4_inside_an_ipv6_host(ip_feed: Path, state: list[str]) -> None:
    urls = [url for url, _words in EMBEDDING]
    result = _run("check", "-", "--json", "--feed", f"ip:{ip_feed}", *state, stdin="\n".join(urls) + "\n")
    assert result.returncode == 0, result.stderr
    for (url, words), decision in zip(EMBEDDING, _json_lines(result.stdout), strict=True):
        assert decision["url"] == url
        assert decision["action"] == "block", decision
        (reason,) = decision["reasons"]
        assert (reason["code"], reason["feed"], reason["indicator"]) == ("landing.thingbot", "bots", LISTED)
        assert reason["detail"] == f"{decision['host']} ({words}) is listed by feed 'bots'"


def test_check_judges_the_ipv4_inside_an_ipv6_origin(ip_feed: Path, state: list[str]) -> None:
    result = _run("check", "https://example.org/", "--json", "--feed", f"ip:{ip_feed}",
                  "--origin", "64:ff9b::cb00:714d", *state)
    assert result.returncode == 0, result.stderr
    (decision,) = _json_lines(result.stdout)
    assert decision["action"] == "warn"
    assert decision["reasons"][0]["code"] == "origin.thingbot"
    assert "64:ff9b::cb00:714d (the NAT64 form of 203.0.113.77)" in decision["reasons"][0]["detail"]


def test_check_origin(ip_feed: Path, state: list[str]) -> None:
    result = _run("check", "https://example.org/", "--json", "--feed", f"ip:{ip_feed}",
                  "--origin", LISTED, *state)
    assert result.returncode == 0, result.stderr
    (decision,) = _json_lines(result.stdout)
    assert decision["action"] == "warn"  # the default policy warns about a Thingbot origin
    assert decision["reasons"][0]["code"] == "origin.thingbot"
    assert LISTED in decision["reasons"][0]["detail"]


def test_check_real_urlhaus(feeds_dir: Path, state: list[str]) -> None:
    # "3764673",...,"http://113.237.162.75:53983/i","online",...,"32-bit,elf,mips,Mozi"
    result = _run("check", "http://113.237.162.75:53983/i", "--json",
                  "--feed", f"urlhaus_csv:{feeds_dir / URLHAUS}", *state)
    assert result.returncode == 0, result.stderr
    (decision,) = _json_lines(result.stdout)
    assert decision["action"] == "block"
    assert {r["code"] for r in decision["reasons"]} == {"landing.thingbot"}
    url_reason = next(r for r in decision["reasons"] if r["indicator"].startswith("http://"))
    assert url_reason["tags"] == ["32-bit", "elf", "mips", "mozi"]
    assert "tags: 32-bit, elf, mips, mozi" in url_reason["detail"]


def test_check_sees_the_hosts_the_proxy_learned(tmp_path: Path) -> None:
    # Learned as the proxy learns and saves it, in the state directory `run` and `check` default to.
    learned = LearnedHosts(tmp_path / "var" / STATE_FILE)
    learned.learn("cam.example", "a camera sending browsers elsewhere", "http://cam.example/",
                  (reasons.RESPONSE_REDIRECT,), ttl=3600)
    learned.save()
    result = _run("check", "http://cam.example/index.htm", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (decision,) = _json_lines(result.stdout)
    assert decision["action"] == "block"
    (reason,) = decision["reasons"]
    assert (reason["code"], reason["feed"], reason["indicator"]) == \
        ("landing.thingbot", "learned", "cam.example")
    assert re.fullmatch(r"cam\.example was learned as a Thingbot on \d{4}-\d\d-\d\d \d\d:\d\d UTC: "
                        "a camera sending browsers elsewhere", reason["detail"]), reason["detail"]
    # Another state directory, another proxy: nothing learned there.
    elsewhere = _run("check", "http://cam.example/index.htm", "--json", "--state-dir", "other", cwd=tmp_path)
    assert [d["action"] for d in _json_lines(elsewhere.stdout)] == ["allow"]


def test_policy_check_default() -> None:
    result = _run("policy", "check", "policies/default.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout, result.stderr) == ("policies/default.yaml: ok (10 feeds)\n", "")


BROKEN = """\
version: 1
feeds:
  - name: bad name
    format: ipp
    path: missing.txt
actions:
  landing.thingbot: explode
on_check_error: maybe
"""


def test_policy_check_broken(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = _run("policy", "check", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    problem = re.compile(rf"{re.escape(str(path))}:(\d+): ([\w.\[\]]+): (.+)")
    assert lines and all(problem.fullmatch(line) for line in lines), lines
    found = {(int(m[1]), m[2]) for m in map(problem.fullmatch, lines) if m}
    assert {(3, "feeds[0].name"), (4, "feeds[0].format"), (7, "actions.landing.thingbot"),
            (8, "on_check_error")} <= found


@pytest.mark.parametrize("as_json", [False, True])
def test_feeds_status(tmp_path: Path, as_json: bool) -> None:
    result = _run("feeds", "status", "--policy", "policies/default.yaml",
                  "--state-dir", str(tmp_path / "state"), *(["--json"] if as_json else []))
    assert result.returncode == 0, result.stderr
    if as_json:
        selftest, *subscribed = json.loads(result.stdout)["feeds"]
        assert (selftest["name"], selftest["format"], selftest["entries"]) == ("selftest", "ip", 1)
        assert selftest["last_error"] is None
        # The public feeds the default policy subscribes: nothing fetched yet, nothing loaded.
        assert {f["name"] for f in subscribed} >= {"urlhaus", "ipsum", "spamhaus_drop", "maltrail_mirai"}
        assert all(f["entries"] == 0 and f["data_time"] is None for f in subscribed)
    else:
        assert re.search(r"^selftest\s+ip\s+1\s+0\s", result.stdout, re.MULTILINE), result.stdout
        assert re.search(r"^urlhaus\s+urlhaus_csv\s+0\s+0\s+-\s+https://urlhaus\.abuse\.ch/\S+ "
                         r"\(never fetched\)$",
                         result.stdout, re.MULTILINE), result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["check", "http://x.example/", "--feed", "bogus"],
     "feed 'bogus': expected FORMAT:PATH or FORMAT:URL"),
    (["check", "http://x.example/", "--policy", "missing.yaml"],
     "missing.yaml: cannot read the policy: No such file or directory"),
    (["rewrite", "missing.eml"], "[Errno 2] No such file or directory: 'missing.eml'"),
    (["rewrite", "."], "rewriting a directory needs -o DIRECTORY"),
    (["rewrite", "in.eml", "-o", "no/such/dir/out.eml"],
     "[Errno 2] No such file or directory: 'no/such/dir/out.eml'"),
    (["feeds", "status", "--state-dir", "broken"],
     "broken/feeds-status.json: not a feeds status file "
     "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
])
def test_a_users_mistake_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str], args: list[str],
                                                message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.eml").write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\n\r\nhttp://x.example/\r\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "feeds-status.json").write_text("{")
    assert cli.main(args) == 2
    assert capsys.readouterr().err.splitlines()[-1:] == [f"clickguard: {message}"]


@pytest.mark.parametrize("bug", [ValueError("a bug"), OSError("a bug"), KeyError("a bug")])
def test_a_bug_is_not_reported_as_a_users_mistake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  bug: Exception) -> None:
    monkeypatch.chdir(tmp_path)

    def broken(host: str) -> str:
        raise bug

    monkeypatch.setattr(cli, "registered_domain", broken)
    with pytest.raises(type(bug), match="a bug"):
        cli.main(["check", "http://x.example/"])


# --- rewrite: a batch never stops on one bad input ---------------------------------------------

def _mail(body: bytes, headers: bytes = b"") -> bytes:
    return b"From: news@shop.example\nTo: alice@corp.example\n" + headers + b"\n" + body


GOOD = _mail(b"Track it: http://parcel.example/t/1\n")
NO_LINKS = _mail(b"Nothing to click here.\n",
                 b"Subject: " + b"a subject long enough that the email package folds it " * 3 + b"\n")
# Messages the rewriter cannot rewrite: each goes through unchanged, with its reason.
UNREWRITABLE = {
    "undefined-charset": _mail(b"http://parcel.example/\n",
                               b"Content-Type: text/plain; charset=undefined\n"),
    "bytes-charset": _mail(b"http://parcel.example/\n", b"Content-Type: text/plain; charset=rot13\n"),
    "nul-charset": _mail(b"http://parcel.example/\n", b"Content-Type: text/plain; charset=\"u\x00tf-8\"\n"),
    "not-mime": b"\x00\xff\xfe this is not a message at all\n",
    "wrong-charset": _mail(b"caf\xc3\xa9 http://parcel.example/\n",
                           b"Content-Type: text/plain; charset=us-ascii\n"),
}
# The "'ascii' codec can't encode characters": a boundary written in raw UTF-8. Rewritten
# or passed through unchanged, it must never stop the batch.
ASCII_BOUNDARY = _mail(b"--caf\xc3\xa9\nContent-Type: text/plain\n\nhttp://parcel.example/b\n--caf\xc3\xa9--\n",
                       b'Content-Type: multipart/mixed; boundary="caf\xc3\xa9"\n')
REWRITTEN = {
    "good": GOOD,
    # a lone surrogate in a link's path (UTF-7 can spell one): wrapped as a browser reads it, U+FFFD
    "lone-surrogate": _mail(b'<a href="http://parcel.example/+2AA-">x</a>\n',
                            b"Content-Type: text/html; charset=utf-7\n"),
    "8bit-headers": _mail(b"http://parcel.example/h\n", b"Subject: caf\xc3\xa9 cr\xe8me\n"),
    "8bit-body": _mail(b"caf\xc3\xa9 http://parcel.example/u\n",
                       b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"),
}
CLICK = b"https://clickguard.local/v1/"
SUMMARY = re.compile(r"clickguard rewrite: (\d+) messages, (\d+) links rewritten, (\d+) passed through "
                     r"unchanged(?:, (\d+) skipped \(could not be read\))?")


def _rewrite(tmp_path: Path, source: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "clickguard.cli", "rewrite", str(source), *extra,
                           "--certs", str(tmp_path / "certs")],
                          cwd=tmp_path, capture_output=True, timeout=120, check=False)


def _summary(stderr: bytes) -> tuple[int, int, int, int]:
    found = SUMMARY.search(stderr.decode("utf-8", "backslashreplace"))
    assert found is not None, stderr
    return (int(found[1]), int(found[2]), int(found[3]), int(found[4] or 0))


def test_rewrite_directory_goes_on_past_every_bad_message(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    # Names sort so that every bad input comes before a good one.
    inputs: dict[bytes, bytes] = {}
    for n, (shape, message) in enumerate([*UNREWRITABLE.items(), ("ascii-boundary", ASCII_BOUNDARY)]):
        inputs[f"{n:02}a-{shape}.eml".encode()] = message
        inputs[f"{n:02}b-good.eml".encode()] = _mail(f"http://parcel.example/{n}\n".encode())
    inputs[b"50-caf\xe9-latin1-name.eml"] = GOOD  # a file name that is not UTF-8
    inputs |= {f"60-{shape}.eml".encode(): message for shape, message in REWRITTEN.items()}
    inputs[b"70-no-links.eml"] = NO_LINKS
    for name, raw in inputs.items():
        (source / os.fsdecode(name)).write_bytes(raw)
    (source / "55-unreadable.eml").symlink_to("/proc/self/mem")  # reads fail (EIO), even as root
    (source / "56-a-directory.eml").mkdir()  # not a message: left alone

    result = _rewrite(tmp_path, source, "-o", str(out))
    assert result.returncode == 1, result.stderr
    written = {os.fsencode(p.name): p.read_bytes() for p in out.iterdir()}
    assert written.keys() == inputs.keys()  # everything readable was written, nothing else
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    for name, raw in inputs.items():
        shown = os.fsdecode(name).encode("utf-8", "backslashreplace").decode()
        unchanged_line = f"{source / shown}: passed through unchanged: "
        if b"-good" in name or name.startswith((b"50-", b"60-")):
            assert written[name].count(CLICK) == 1, (name, written[name])
            assert unchanged_line not in stderr
        elif b"ascii-boundary" in name:
            assert written[name].count(CLICK) == 1 or (written[name] == raw and unchanged_line in stderr)
        else:
            assert written[name] == raw, name
            assert (unchanged_line in stderr) is (name != b"70-no-links.eml"), (name, stderr)
    unreadable = r"55-unreadable\.eml: skipped \(could not be read\): .*Input/output error"
    assert re.search(unreadable, stderr), stderr
    messages, links, unchanged, skipped = _summary(result.stderr)
    assert messages == len(inputs) + 1 and skipped == 1
    assert len(UNREWRITABLE) <= unchanged <= len(UNREWRITABLE) + 1
    assert links == len(inputs) - unchanged - 1


def test_rewrite_directory_all_rewritten_exits_0(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "a.eml").write_bytes(GOOD)
    (source / "b.eml").write_bytes(NO_LINKS)  # nothing to rewrite is no failure
    result = _rewrite(tmp_path, source, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert _summary(result.stderr) == (2, 1, 0, 0)


def _mbox(*messages: tuple[bytes, bytes]) -> bytes:
    """An mbox of (From_ line, message) pairs, as a mail system writes one."""
    return b"".join(envelope + b"\n" + raw + b"\n" for envelope, raw in messages)


ENVELOPE = b"From news@shop.example Thu Jan  1 00:00:00 2026"
# The email package cannot re-serialise it ("'ascii' codec can't encode characters"): a multipart
# with no boundary line in its 8-bit body.
NO_BOUNDARY_8BIT = _mail(b"caf\xc3\xa9 http://parcel.example/m\n",
                         b"Content-Type: multipart/mixed; boundary=b\n")


def test_rewrite_mbox_goes_on_past_every_bad_message(tmp_path: Path) -> None:
    messages = [
        (ENVELOPE, NO_BOUNDARY_8BIT),
        (b"From j\xc3\xb6rg@shop.example Thu Jan  1 00:00:00 2026", GOOD),  # 8-bit envelope sender
        (ENVELOPE, UNREWRITABLE["undefined-charset"]),
        (ENVELOPE, ASCII_BOUNDARY),
        (ENVELOPE, NO_LINKS),  # re-folding its Subject would change it: kept byte for byte
        (ENVELOPE, UNREWRITABLE["not-mime"]),
        (ENVELOPE, GOOD),
    ]
    source, out = tmp_path / "in.mbox", tmp_path / "out.mbox"
    source.write_bytes(_mbox(*messages))
    result = _rewrite(tmp_path, source, "-o", str(out))
    assert result.returncode == 1, result.stderr
    box = mailbox.mbox(out, create=False)
    written = [box.get_bytes(key, from_=True) for key in box.iterkeys()]
    assert len(written) == len(messages)
    for n, ((envelope, raw), got) in enumerate(zip(messages, written, strict=True)):
        got_envelope, _, got_raw = got.partition(b"\n")
        assert got_envelope == envelope
        if n in (1, 6):
            assert got_raw.count(CLICK) == 1, got_raw
        elif n == 3:
            assert got_raw.count(CLICK) == 1 or got_raw == raw
        else:
            assert got_raw == raw, n
    stderr = result.stderr.decode()
    for n in (0, 2, 5):  # counted from 1 in the names
        assert f"in.mbox#{n + 1}: passed through unchanged: " in stderr
    messages_seen, _links, unchanged, skipped = _summary(result.stderr)
    assert (messages_seen, skipped) == (7, 0) and unchanged in (3, 4)


def test_rewrite_mbox_without_links_is_copied_byte_for_byte(tmp_path: Path) -> None:
    # A body line starting "From " is written ">From " in an mbox: kept as it is, never escaped twice.
    original = _mbox((ENVELOPE, NO_LINKS), (ENVELOPE, _mail(b">From the start of a line, kept\n")))
    (tmp_path / "in.mbox").write_bytes(original)
    result = _rewrite(tmp_path, tmp_path / "in.mbox", "-o", str(tmp_path / "out.mbox"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.mbox").read_bytes() == original


def test_rewrite_single_message_passed_through_exits_1(tmp_path: Path) -> None:
    (tmp_path / "in.eml").write_bytes(UNREWRITABLE["undefined-charset"])
    result = _rewrite(tmp_path, tmp_path / "in.eml", "-o", str(tmp_path / "out.eml"))
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out.eml").read_bytes() == UNREWRITABLE["undefined-charset"]
    assert "in.eml: passed through unchanged: " in result.stderr.decode()
    assert _summary(result.stderr) == (1, 0, 1, 0)


def test_rewrite_single_message_to_stdout(tmp_path: Path) -> None:
    (tmp_path / "in.eml").write_bytes(GOOD)
    result = _rewrite(tmp_path, tmp_path / "in.eml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(CLICK) == 1


def test_rewrite_recipient_that_is_not_text_is_a_users_mistake(tmp_path: Path) -> None:
    (tmp_path / "in.eml").write_bytes(GOOD)
    recipient = os.fsdecode(b"j\xf6rg@corp.example")
    result = _rewrite(tmp_path, tmp_path / "in.eml", "--recipient", recipient)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "clickguard: --recipient: not UTF-8 text: 'j\\udcf6rg@corp.example'"]


@pytest.mark.slow
def test_ca_files_are_never_world_readable_or_writable(tmp_path: Path) -> None:
    """mitmproxy writes the CA under the process's umask: `clickguard ca` makes it at least 027 first."""
    certs = tmp_path / "certs"
    done = subprocess.run(["sh", "-c", 'umask 000 && exec "$0" -m clickguard.cli ca --certs "$1"',
                           sys.executable, str(certs)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in certs.iterdir()}
    assert certs.stat().st_mode & 0o777 == 0o750
    assert modes["mitmproxy-ca.pem"] == 0o600  # the CA's private key
    assert modes["mitmproxy-ca-cert.pem"] == 0o640
    assert all(mode & 0o027 == 0 for mode in modes.values()), modes


def test_run_check_config_says_what_would_stop_the_proxy(tmp_path: Path) -> None:
    """`clickguard run --check-config` (systemd's ExecStartPre): 0 and one line, or 1 and each problem."""
    good = _run("run", "--check-config", "--policy", "policies/default.yaml",
                "--state-dir", str(tmp_path / "var"),
                "--certs", str(tmp_path / "certs"), "--audit-log", str(tmp_path / "log" / "audit.jsonl"))
    assert (good.returncode, good.stdout) == (0, "policies/default.yaml: ok, clickguard run would start\n")
    (tmp_path / "a-file").write_text("")
    under_a_file = _run("run", "--check-config", "--policy", "policies/default.yaml",
                        "--state-dir", str(tmp_path / "a-file" / "var"), "--certs", str(tmp_path / "certs"))
    assert (under_a_file.returncode, under_a_file.stdout) == (
        1, f"--state-dir: {tmp_path / 'a-file' / 'var'}: not writable by this user\n")
    (tmp_path / "bad.yaml").write_text("version: 1\nwarn:\n  continue_minutes: 0\n")
    bad = _run("run", "--check-config", "--policy", str(tmp_path / "bad.yaml"),
               "--certs", str(tmp_path / "c"))
    assert bad.returncode == 1
    assert bad.stdout.startswith(f"{tmp_path / 'bad.yaml'}:3: warn.continue_minutes: ")
    assert not (tmp_path / "c").exists()  # checking creates nothing
