"""The proxy's audit record under failure and rotation, through the real proxy.

A log that cannot be written (/dev/full: every write fails with ENOSPC): policy
``audit.on_failure`` closed refuses the request with a 503 page before the
server sees it, open serves it; either way the failing sink shows in the status
`clickguard feeds status` reads. And logrotate's postrotate SIGHUP makes the
proxy reopen its log instead of ending it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import HTML, required_tool, start_proxy, upstream, wait_until, write_policy

LOGROTATE_HINT = "apt-get install -y logrotate (.ci/run does it)"


def _policy(tmp_path: Path, on_failure: str) -> Path:
    return write_policy(tmp_path, f"version: 1\naudit:\n  store: off\n  on_failure: {on_failure}\n")


def _audit_status(tmp_path: Path) -> dict[str, Any] | None:
    """The audit health the proxy published beside the feeds' status, once there is one."""
    try:
        audit = json.loads((tmp_path / "var" / "feeds-status.json").read_text()).get("audit")
    except (OSError, ValueError):
        return None
    return audit if isinstance(audit, dict) else None


def _catches_sighup(pid: int) -> bool:
    """Whether the process has a SIGHUP handler in place (the SigCgt mask the kernel shows)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (signal.SIGHUP - 1) & 1)


def _log_failing(tmp_path: Path) -> bool:
    status = _audit_status(tmp_path)
    return bool(status and status["log"]["failing"] and status["not_recorded"] >= 1)


def test_closed_refuses_what_it_cannot_record(tmp_path: Path, certs: Path) -> None:
    with upstream("127.0.0.4") as good:
        proxy = start_proxy(tmp_path, _policy(tmp_path, "closed"), certs, "--audit-log", "/dev/full")
        try:
            answer = proxy.get(f"{good.base}/page", HTML)
            assert answer.status == 503
            assert answer.headers["x-clickguard-action"] == "block"
            assert b"could not be recorded" in answer.body
            assert good.requests == []  # refused before the server saw it
            wait_until(lambda: _log_failing(tmp_path), 10, "the failing log in the status")
            assert "No space left on device" in (_audit_status(tmp_path) or {})["log"]["last_error"]
            assert proxy.process.poll() is None
        finally:
            proxy.stop()


def test_open_serves_what_it_cannot_record(tmp_path: Path, certs: Path) -> None:
    with upstream("127.0.0.4") as good:
        proxy = start_proxy(tmp_path, _policy(tmp_path, "open"), certs, "--audit-log", "/dev/full")
        try:
            answer = proxy.get(f"{good.base}/page", HTML)
            assert answer.status == 200 and answer.body == good.body_for("/page")
            wait_until(lambda: _log_failing(tmp_path), 10, "the failing log in the status")
            shown = subprocess.run([sys.executable, "-m", "clickguard.cli", "feeds", "status",
                                    "--state-dir", str(tmp_path / "var")],
                                   capture_output=True, text=True, timeout=60, check=False)
            assert "audit log   FAILING /dev/full" in shown.stdout, shown.stdout + shown.stderr
        finally:
            proxy.stop()


def test_logrotate_postrotate_sighup_reopens_the_log(tmp_path: Path, certs: Path) -> None:
    logrotate = required_tool("logrotate", LOGROTATE_HINT)
    with upstream("127.0.0.4") as good:
        proxy = start_proxy(tmp_path, _policy(tmp_path, "open"), certs)
        try:
            assert proxy.get(f"{good.base}/before", HTML).status == 200
            wait_until(lambda: _catches_sighup(proxy.process.pid), 10, "the proxy's SIGHUP handler")
            log = proxy.audit_path
            config = tmp_path / "logrotate.conf"
            config.write_text(f"{log} {{\n    rotate 2\n    create 0640\n    nocompress\n"
                              f"    postrotate\n        kill -HUP {proxy.process.pid}\n    endscript\n}}\n")
            config.chmod(0o644)
            done = subprocess.run([logrotate, "-s", str(tmp_path / "logrotate.state"), "-f", str(config)],
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            proxy.wait_for_log("SIGHUP")
            assert proxy.get(f"{good.base}/after", HTML).status == 200
            assert proxy.process.poll() is None  # SIGHUP's default would have ended it
            assert [r["url"] for r in proxy.audit()] == [f"{good.base}/after"]
            rotated = log.with_name(log.name + ".1").read_text().splitlines()
            assert [json.loads(line)["url"] for line in rotated] == [f"{good.base}/before"]
        finally:
            proxy.stop()


def test_sighup_with_no_log_changes_nothing(tmp_path: Path, certs: Path) -> None:
    with upstream("127.0.0.4") as good:
        proxy = start_proxy(tmp_path, _policy(tmp_path, "open"), certs)
        try:
            wait_until(lambda: _catches_sighup(proxy.process.pid), 10, "the proxy's SIGHUP handler")
            proxy.process.send_signal(signal.SIGHUP)
            proxy.wait_for_log("SIGHUP")
            assert proxy.get(f"{good.base}/page", HTML).status == 200
            assert [r["url"] for r in proxy.audit()] == [f"{good.base}/page"]
        finally:
            proxy.stop()
