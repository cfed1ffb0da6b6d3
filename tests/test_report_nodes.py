"""Reports over several nodes' audit stores: one report, the figures of one store holding every record.

A synthetic campaign (bench.campaign) is dealt out over the stores of three nodes; the
report over them (`clickguard report --store A --store B …`, or `--store DIR`) must equal,
JSON compared whole, the report over one store the same records were imported into.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.campaign import write_campaign
from clickguard.audit import report, store
from clickguard.audit import writer as audit
from tests.harness import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clickguard.cli", "report", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def _stores(*paths: Path) -> list[str]:
    return [arg for path in paths for arg in ("--store", str(path))]


def _json(*args: str) -> dict[str, Any]:
    """The JSON report, without the one key that differs between two runs (when it was made)."""
    result = _run(*args, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    del data["generated_at"]
    return data


def _make_store(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """A store written by the store's own writer, as the proxy and `audit import` write it."""
    connection = store.connect(path)
    try:
        store.insert(connection, records)
    finally:
        store.close(connection)
    return path


def _to_version_1(path: Path) -> None:
    """Make a store what clickguard before groups left: no group_name column, user_version 1."""
    with sqlite3.connect(path) as connection:
        connection.execute("DROP INDEX decisions_group")
        connection.execute("ALTER TABLE decisions DROP COLUMN group_name")
        connection.execute("PRAGMA user_version=1")
    connection.close()


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, feeds_dir: Path) -> list[dict[str, Any]]:
    """A small campaign's records (clicks, hops, continues, appliances), some made under policy groups."""
    log = tmp_path_factory.mktemp("nodes") / "audit.jsonl"
    write_campaign(log, clicks=400, users=40, thingbot_share=0.3, seed=7, feeds_dir=feeds_dir)
    out = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    for number, record in enumerate(out):
        if number % 3 == 0:
            record["group"] = "lab" if number % 2 else "sales"
    return out


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]) -> tuple[Path, list[Path]]:
    """One store holding every record, and a directory of three nodes' stores sharing them out."""
    workdir = tmp_path_factory.mktemp("stores")
    everything = _make_store(workdir / "all.sqlite", records)
    directory = workdir / "nodes"
    directory.mkdir()
    # Dealt out record by record: a click on one node, its hops and continue on others.
    parts = [_make_store(directory / f"node-{n}.sqlite", records[n::3]) for n in range(3)]
    return everything, parts


def _at(records: list[dict[str, Any]], share: float) -> str:
    """The ts of the record that far into the campaign (an absolute time: two runs agree on it)."""
    return str(sorted(r["ts"] for r in records)[int(share * (len(records) - 1))])


@pytest.mark.parametrize("extra", [(), ("--limit", "3"), ("--since", 0.6), ("--group", "lab"),
                                   ("--since", 0.2, "--until", 0.7, "--group", "sales")])
def test_report_over_nodes_equals_one_store(nodes: tuple[Path, list[Path]], records: list[dict[str, Any]],
                                            extra: tuple[str | float, ...]) -> None:
    everything, parts = nodes
    args = [_at(records, v) if isinstance(v, float) else v for v in extra]
    one = _json(*_stores(everything), *args)
    assert one["totals"]["decisions"] > 0
    assert _json(*_stores(*parts), *args) == one


def test_text_and_html_over_nodes(nodes: tuple[Path, list[Path]], tmp_path: Path) -> None:
    everything, parts = nodes
    until = ("--until", "2030-01-01")  # a fixed range: the text names it, not the time it was made
    assert _run(*_stores(*parts), *until).stdout == _run(*_stores(everything), *until).stdout
    pages = []
    for name, stores in (("one", [everything]), ("nodes", parts)):
        out = tmp_path / f"{name}.html"
        assert _run(*_stores(*stores), *until, "--html", str(out)).returncode == 0
        pages.append(out.read_text(encoding="utf-8"))
    assert pages[0].count("<tr>") == pages[1].count("<tr>") > 5
    assert pages[0].split("<table", 1)[1] == pages[1].split("<table", 1)[1]


def test_a_directory_of_stores(nodes: tuple[Path, list[Path]]) -> None:
    everything, parts = nodes
    assert _json("--store", str(parts[0].parent)) == _json(*_stores(everything))
    # A store named twice, directly and through its directory, is read once.
    assert _json("--store", str(parts[0]), "--store", str(parts[0].parent)) == _json(*_stores(everything))


def test_a_record_in_two_stores_counts_once(nodes: tuple[Path, list[Path]], records: list[dict[str, Any]],
                                            tmp_path: Path) -> None:
    """A node's store and an `audit import` of its log elsewhere: each decision counted once."""
    everything, parts = nodes
    log = tmp_path / "node-0.jsonl"
    twice = records[0::3] + records[1::3][:50]  # node 0's records, and some of node 1's
    log.write_text("".join(json.dumps(r) + "\n" for r in twice), encoding="utf-8")
    copy = tmp_path / "imported.sqlite"
    imported = subprocess.run([sys.executable, "-m", "clickguard.cli", "audit", "import", str(log),
                               "--store", str(copy)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    assert _json(*_stores(*parts, copy)) == _json(*_stores(everything))


def test_a_version_1_store_among_them(records: list[dict[str, Any]], tmp_path: Path) -> None:
    """A store no clickguard with groups has opened: read as it is, its decisions in no group."""
    plain = [{k: v for k, v in r.items() if k != "group"} for r in records]
    old = _make_store(tmp_path / "old.sqlite", plain[0::2])
    _to_version_1(old)
    new = _make_store(tmp_path / "new.sqlite", records[1::2])
    everything = _make_store(tmp_path / "all.sqlite", plain[0::2] + records[1::2])
    for extra in [(), ("--group", "lab")]:
        assert _json(*_stores(old, new), *extra) == _json(*_stores(everything), *extra)
    with sqlite3.connect(old) as connection:  # read, never migrated
        assert connection.execute("PRAGMA user_version").fetchone() == (1,)
        assert "group_name" not in {row[1] for row in connection.execute("PRAGMA table_info(decisions)")}
    connection.close()


def test_drilldowns_over_nodes(nodes: tuple[Path, list[Path]], records: list[dict[str, Any]]) -> None:
    everything, parts = nodes
    click = next(r["click_id"] for r in records if r["event"] == "hop")
    host = next(r["host"] for r in records if r["event"] == "hop" and r.get("host"))
    for args in (("--click", click), ("--host", host), ("--host", host, "--limit", "2")):
        over = _run(*_stores(*parts), *args, "--json")
        assert over.returncode == 0, over.stderr
        found = json.loads(over.stdout)
        assert found == json.loads(_run(*_stores(everything), *args, "--json").stdout)
        if "--click" in args:
            assert {r["event"] for r in found} >= {"click", "hop"}  # from more than one node


@pytest.mark.parametrize("args", [(), ("--json",), ("--host", "a.example")])
def test_a_missing_store_is_named(nodes: tuple[Path, list[Path]], tmp_path: Path,
                                  args: tuple[str, ...]) -> None:
    _, parts = nodes
    missing = tmp_path / "node-9.sqlite"
    result = _run(*_stores(*parts, missing), *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(missing) in result.stderr
    assert not missing.exists()  # asking never creates a store
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run(*_stores(parts[0], empty), *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(empty) in result.stderr


def test_not_a_store_is_named(nodes: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _, parts = nodes
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    result = _run(*_stores(parts[0], other))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(other) in result.stderr


def test_many_stores_past_sqlites_attach_limit(tmp_path: Path) -> None:
    """More stores than SQLite attaches at once (10): each is attached in turn."""
    paths = []
    for n in range(12):
        entry = audit.record(ref=f"r{n}", event="click", client="127.0.0.1", user=f"u{n % 4}",
                             url=f"http://h{n}.example/", action="block", findings=())
        entry["ts"] = 1_000_000.0 + n
        paths.append(_make_store(tmp_path / f"n{n:02}.sqlite", [entry]))
    built = report.report_stores(report.store_paths([tmp_path]))
    assert (built.totals.decisions, built.totals.blocks, built.targeted_users) == (12, 12, 4)
    assert [u.total for u in built.targeted] == [3, 3, 3, 3]
