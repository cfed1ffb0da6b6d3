"""The command line, run as a subprocess the way IT runs it: check, policy check, feeds status.

Its error handling is run in-process: a user's mistake is one line and exit status 2,
a bug is a traceback.
"""

from __future__ import annotations

import io
import json
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
    assert result.returncode == 0, result.stderr
    lines = _json_lines(result.stdout)
    assert [line["url"] for line in lines] == [u for u in urls if u and not u.startswith("#")]
    assert [line["action"] for line in lines] == ["block", "allow", "allow", "block", "allow"]
    assert ["error" in line for line in lines] == [False, True, False, False, False]
    assert "IPv6" in lines[1]["error"]
    assert lines[4]["normalized"] == "https://example.com/b"


def test_check_malformed_single_url_exit_status(state: list[str]) -> None:
    result = _run("check", "http://[::1/", "--json", *state)
    assert result.returncode == 2
    (decision,) = _json_lines(result.stdout)
    assert decision["error"]


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
    assert (result.stdout, result.stderr) == ("policies/default.yaml: ok (1 feeds)\n", "")


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
        (selftest,) = json.loads(result.stdout)["feeds"]
        assert (selftest["name"], selftest["format"], selftest["entries"]) == ("selftest", "ip", 1)
        assert selftest["last_error"] is None
    else:
        assert re.search(r"^selftest\s+ip\s+1\s+0\s", result.stdout, re.MULTILINE), result.stdout


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


def test_standard_input_that_is_not_text_is_a_users_mistake(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"http://x.example/\n\xff\n"), "utf-8"))
    assert cli.main(["check", "-"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    undecodable = r"clickguard: 'utf-8' codec can't decode byte 0xff in position \d+: invalid start byte\n"
    assert re.fullmatch(undecodable, err), err


@pytest.mark.parametrize("bug", [ValueError("a bug"), OSError("a bug"), KeyError("a bug")])
def test_a_bug_is_not_reported_as_a_users_mistake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  bug: Exception) -> None:
    monkeypatch.chdir(tmp_path)

    def broken(host: str) -> str:
        raise bug

    monkeypatch.setattr(cli, "registered_domain", broken)
    with pytest.raises(type(bug), match="a bug"):
        cli.main(["check", "http://x.example/"])
