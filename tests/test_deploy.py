"""The systemd unit in deploy/: systemd's own checks pass, it is sandboxed, and its commands are clickguard's.

`systemd-analyze verify` loads the unit as systemd would (unknown keys, bad values, a missing
binary are errors) and `systemd-analyze security --offline` rates its sandboxing. The unit's
paths are those of an installation in /opt/clickguard; the check runs a copy pointing at this
checkout's virtual environment.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clickguard.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "clickguard.service"
INSTALLED = "/opt/clickguard/bin/clickguard"


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze not found: apt-get install -y systemd (.ci/run does it)")
    return found


def _local_copy(tmp_path: Path) -> Path:
    """The unit with this checkout's clickguard in place of the installed one."""
    copy = tmp_path / "clickguard.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(Path(sys.executable).with_name("clickguard"))))
    return copy


def _commands(key: str) -> list[list[str]]:
    """The argument lists of every `key=` line (continuations joined, $VARS dropped)."""
    text = UNIT.read_text().replace("\\\n", " ")
    return [[word for word in shlex.split(line.split("=", 1)[1]) if not word.startswith("$")]
            for line in text.splitlines() if line.startswith(f"{key}=")]


def test_systemd_loads_the_unit(tmp_path: Path) -> None:
    done = subprocess.run([_analyze(), "verify", str(_local_copy(tmp_path))], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def test_the_unit_is_sandboxed(tmp_path: Path) -> None:
    done = subprocess.run([_analyze(), "security", "--offline=true", str(_local_copy(tmp_path))],
                          capture_output=True, text=True)
    found = re.search(r"Overall exposure level for clickguard.service: (\d+\.\d+) (\w+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert float(found[1]) <= 2.0 and found[2] == "OK", done.stdout  # systemd's scale: 0 safe, 10 exposed
    for line in ("ProtectSystem=strict", "DynamicUser=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet="):
        assert f"\n{line}\n" in UNIT.read_text()


def test_the_units_commands_are_clickguards() -> None:
    """ExecStartPre checks exactly the configuration ExecStart runs (same policy, places and sinks)."""
    [pre], [start] = _commands("ExecStartPre"), _commands("ExecStart")
    assert pre[0] == start[0] == INSTALLED
    checked, run = build_parser().parse_args(pre[1:]), build_parser().parse_args(start[1:])
    assert checked.check_config and not run.check_config
    same = ("policy", "certs", "state_dir", "audit_log", "audit_store", "feed")
    assert [getattr(checked, k) for k in same] == [getattr(run, k) for k in same]
    assert run.listen == ("0.0.0.0", 3128)
