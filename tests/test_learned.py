"""Learned Thingbots: kept with their evidence, expired on time, saved atomically, bad files set aside."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from clickguard.decision.build import build_judge
from clickguard.decision.judge import Judge
from clickguard.intel.index import FeedInput, ReputationIndex
from clickguard.intel.learned import STATE_FILE, LearnedHosts
from clickguard.intel.parsers import Indicator, Kind
from clickguard.policy.model import parse_policy
from clickguard.proxy.runtime import Runtime
from clickguard.urls import normalize_url


def test_learn_lookup_and_expiry(tmp_path: Path) -> None:
    hosts = LearnedHosts(tmp_path / "learned.json")
    hosts.learn("203.0.113.5", "served an ELF MIPS executable", "http://203.0.113.5:8088/Mozi.m",
                ("response.drive_by",), ttl=3600)
    hosts.learn("198.51.100.1", "old", "http://198.51.100.1/", ("response.redirect",), ttl=-1)
    entry = hosts.lookup("203.0.113.5")
    assert entry is not None and entry.evidence == "served an ELF MIPS executable"
    assert hosts.lookup("198.51.100.1") is None  # expired
    assert hosts.lookup("192.0.2.1") is None
    assert [h.host for h in hosts] == ["203.0.113.5"]


def test_saved_and_loaded_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "var" / "learned.json"
    first = LearnedHosts(path)
    first.learn("cam.example", "a camera redirecting elsewhere", "http://cam.example/",
                ("response.redirect",), ttl=3600)
    first.save()
    second = LearnedHosts(path)
    second.load()
    assert second.lookup("cam.example") is not None
    assert not path.with_name("learned.json.tmp").exists()


def test_an_older_snapshot_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    hosts = LearnedHosts(tmp_path / "learned.json")
    hosts.learn("a.example", "x", "http://a.example/", (), ttl=3600)
    older = hosts.encoded()
    hosts.learn("b.example", "y", "http://b.example/", (), ttl=3600)
    newer = hosts.encoded()
    hosts.save(newer)
    hosts.save(older)  # a slower worker thread finishing late
    saved = json.loads((tmp_path / "learned.json").read_text())
    assert [h["host"] for h in saved["hosts"]] == ["a.example", "b.example"]


@pytest.mark.parametrize("content", [b"not json", b'{"hosts": [{"host": 1}]}', b"[]", b'{"hosts": 5}'])
def test_a_bad_file_is_set_aside_not_trusted(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "learned.json"
    path.write_bytes(content)
    hosts = LearnedHosts(path)
    hosts.load()
    assert len(hosts) == 0 and hosts.error is not None and "set aside" in hosts.error
    assert not path.exists()
    assert [p.read_bytes() for p in tmp_path.glob("learned.json.bad-*")] == [content]


def test_expired_entries_are_dropped_on_load(tmp_path: Path) -> None:
    path = tmp_path / "learned.json"
    now = time.time()
    path.write_text(json.dumps({"hosts": [
        {"host": "old.example", "evidence": "e", "url": "u", "codes": [], "learned_at": now - 10,
         "expires": now - 1},
        {"host": "new.example", "evidence": "e", "url": "u", "codes": [], "learned_at": now,
         "expires": now + 60}]}))
    hosts = LearnedHosts(path)
    hosts.load()
    assert [h.host for h in hosts] == ["new.example"]


def test_the_judge_refuses_learned_hosts_by_name_and_by_address(tmp_path: Path) -> None:
    hosts = LearnedHosts()
    hosts.learn("cam.example", "a camera sending browsers elsewhere", "http://cam.example/",
                ("response.redirect",), ttl=3600)
    hosts.learn("203.0.113.7", "served Mozi.m", "http://203.0.113.7:4000/Mozi.m", ("response.drive_by",),
                ttl=3600)
    feed = FeedInput("f", "thingbot", frozenset(Kind), [Indicator(Kind.IP, "192.0.2.9")])
    index = ReputationIndex.build([feed])
    judge = Judge(parse_policy("feeds: []", filename="p.yaml", base_dir=tmp_path), index, learned=hosts)
    (by_name,) = judge.url_findings(normalize_url("http://cam.example/index.htm"))
    assert (by_name.code, by_name.feed) == ("landing.thingbot", "learned")
    assert "learned as a Thingbot" in by_name.detail and "sending browsers elsewhere" in by_name.detail
    (by_ip,) = judge.url_findings(normalize_url("http://203.0.113.7:4000/x"))
    assert by_ip.indicator == "203.0.113.7"
    (by_address,) = judge.address_findings(["203.0.113.7"], host="dyn.example")
    assert by_address.detail.startswith("dyn.example resolves to 203.0.113.7, which was learned")
    assert judge.decide([by_name]).action == "block"


def test_the_proxy_reads_learned_hosts_at_first_build_and_keeps_them(tmp_path: Path) -> None:
    saved = LearnedHosts(tmp_path / "var" / STATE_FILE)
    saved.learn("cam.example", "a camera sending browsers elsewhere", "http://cam.example/",
                ("response.redirect",), ttl=3600)
    saved.save()
    policy = tmp_path / "policy.yaml"
    policy.write_text("feeds: []\n")
    runtime = Runtime(state_dir=tmp_path / "var", certs_dir=tmp_path / "certs")
    assert len(runtime.learned) == 0  # constructing reads nothing
    runtime.policy_path = policy
    first = runtime.build()
    assert first.judge.learned_entry("cam.example") is not None
    runtime.learned.learn("dvr.example", "a DVR serving Mozi.m", "http://dvr.example/", (), ttl=3600)
    second = runtime.build()  # a reload: what was learned since is kept, the file is not read again
    assert second.judge.learned is first.judge.learned is runtime.learned
    assert [h.host for h in runtime.learned] == ["cam.example", "dvr.example"]
    # The command line's judge reads what the proxy saved in the same state directory.
    cli_judge, _feeds = build_judge(parse_policy("feeds: []", filename="p.yaml", base_dir=tmp_path),
                                    tmp_path / "var")
    assert cli_judge.learned_entry("cam.example") is not None
    assert cli_judge.learned_entry("dvr.example") is None  # learned, not saved yet
