"""Response inspection without a proxy: findings, hints, who is a suspect, what policy makes of it."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from clickguard.decision.judge import Judge
from clickguard.inspection.fingerprints import FingerprintDB
from clickguard.inspection.navigation.results import Steps, Technique
from clickguard.inspection.response import (
    address_hint,
    head_budget,
    inspect_response,
    judge_reading,
    port_hint,
    read_response,
)
from clickguard.intel.index import FeedInput, ReputationIndex
from clickguard.intel.learned import LearnedHosts
from clickguard.intel.parsers import Indicator, Kind
from clickguard.policy.model import parse_policy
from clickguard.urls import normalize_url
from tests.appliances import elf

CAMERA = ("Server", "Hikvision-Webs")
LIGHTTPD = ("Server", "lighttpd/1.4.59")  # embedded server software: an appliance only with a hint
NGINX = ("Server", "nginx/1.24.0")
HTML = ("Content-Type", "text/html; charset=utf-8")
ELSEWHERE = b'<meta http-equiv="refresh" content="0;url=http://elsewhere.example/x">'


@pytest.fixture
def judge(tmp_path: Path) -> Judge:
    index = ReputationIndex.build([FeedInput("bots", "thingbot", frozenset(Kind),
                                             [Indicator(Kind.DOMAIN, "listed.example")])])
    return Judge(parse_policy("feeds: []", filename="p.yaml", base_dir=tmp_path), index,
                 learned=LearnedHosts())


def verdict_of(judge: Judge, url: str, headers: list[tuple[str, str]], body: bytes,
               status: int = 200) -> tuple[str, list[str], bool]:
    """(action, codes, suspect) for one response."""
    inspection = inspect_response(judge, FingerprintDB.default(), url=normalize_url(url), status=status,
                                  headers=headers, body=body)
    verdict = judge.decide(inspection.findings, suspect=inspection.suspect)
    return verdict.action, verdict.codes, inspection.suspect


@pytest.mark.parametrize(
    ("url", "headers", "body", "status", "expected"),
    [
        # An appliance sending the browser to another site, or handing out a payload: blocked.
        ("http://203.0.113.5/", [CAMERA, HTML], ELSEWHERE, 200,
         ("block", ["landing.appliance", "response.redirect"], True)),
        ("http://203.0.113.5/", [CAMERA, ("Location", "http://elsewhere.example/")], b"", 302,
         ("block", ["landing.appliance", "response.redirect"], True)),
        ("http://203.0.113.5:8088/Mozi.m", [CAMERA, HTML], elf("mips"), 200,
         ("block", ["landing.appliance", "response.drive_by"], True)),
        # Within the device, or refreshing itself: how devices work.
        ("http://203.0.113.5/", [CAMERA, ("Location", "/index.asp")], b"", 302,
         ("allow", ["landing.appliance"], True)),
        ("http://203.0.113.5/", [CAMERA, HTML], b'<meta http-equiv="refresh" content="10">', 200,
         ("allow", ["landing.appliance"], True)),
        ("http://cam.example/", [CAMERA, ("Location", "https://www.cam.example/")], b"", 301,
         ("allow", ["landing.appliance"], True)),  # the same site
        # The same content from an ordinary server: the plain actions.
        ("http://shop.example/", [NGINX, HTML], ELSEWHERE, 200, ("allow", ["response.redirect"], False)),
        ("http://shop.example/setup.exe", [NGINX, ("Content-Type", "application/octet-stream")],
         b"MZ\x90\x00" + bytes(60) + b"PE\x00\x00" + bytes(200), 200,
         ("warn", ["response.drive_by"], False)),
        ("http://shop.example/", [NGINX, HTML], b"<title>Shop</title><p>hello</p>", 200,
         ("allow", [], False)),
        # Embedded server software: an appliance on a bare address or a device port, not on a site.
        ("http://203.0.113.9/", [LIGHTTPD, HTML], ELSEWHERE, 200,
         ("block", ["landing.appliance", "response.redirect"], True)),
        ("http://www.example.org/", [LIGHTTPD, HTML], ELSEWHERE, 200,
         ("allow", ["response.redirect"], False)),
        # A bot binary from a bare address on an odd port is a suspect even without a fingerprint.
        ("http://198.51.100.4:47103/i", [NGINX, ("Content-Type", "application/zip")], elf("arm"), 200,
         ("block", ["response.drive_by"], True)),
        # The target of a redirect is judged before the page goes out.
        ("http://shop.example/", [NGINX, ("Location", "http://a.listed.example/")], b"", 302,
         ("block", ["response.redirect", "landing.thingbot"], False)),
    ],
)
def test_verdicts(judge: Judge, url: str, headers: list[tuple[str, str]], body: bytes, status: int,
                  expected: tuple[str, list[str], bool]) -> None:
    assert verdict_of(judge, url, headers, body, status) == expected


def test_a_learned_host_is_a_suspect(judge: Judge) -> None:
    """(The proxy refuses it at request time; one reached anyway, by a continue, stays a suspect.)"""
    judge.learned.learn("shop.example", "earlier payload", "http://shop.example/x", (), ttl=60)
    assert verdict_of(judge, "http://shop.example/", [NGINX, HTML], ELSEWHERE) == (
        "block", ["response.redirect"], True)


def test_findings_name_the_device_and_the_payload(judge: Judge) -> None:
    url = normalize_url("http://203.0.113.5:8088/Mozi.m")
    inspection = inspect_response(judge, FingerprintDB.default(), url=url, status=200,
                                  headers=[CAMERA, HTML], body=elf("mips"))
    appliance, drive_by = inspection.findings
    assert "answers as an appliance, IP camera" in appliance.detail and "Hikvision" in appliance.detail
    assert "MIPS" in drive_by.detail and "text/html" in drive_by.detail
    details = inspection.details()
    assert details["fingerprint"]["class"] == "camera"  # type: ignore[index]
    assert details["payload"]["arch"] == "mips"  # type: ignore[index]


REDIRECT_TO_LISTED = ("http://shop.example/", [NGINX, ("Location", "http://a.listed.example/")], b"", 302)
CAMERA_PAYLOAD = ("http://203.0.113.5:8088/Mozi.m", [CAMERA, HTML], elf("mips"), 200)


@pytest.mark.parametrize("response", [REDIRECT_TO_LISTED, CAMERA_PAYLOAD,
                                      ("http://shop.example/", [NGINX, HTML], ELSEWHERE, 200)],
                         ids=["redirect to a listed host", "camera payload", "meta refresh"])
def test_reading_needs_no_judge_and_pickles(judge: Judge,
                                            response: tuple[str, list[tuple[str, str]], bytes, int]) -> None:
    """The reading (what a worker process does) survives pickling; judging it is inspect_response."""
    url, headers, body, status = response
    parsed = normalize_url(url)
    reading = read_response(FingerprintDB.default(), url=parsed, status=status, headers=headers, body=body)
    assert pickle.loads(pickle.dumps(reading)) == reading
    assert judge_reading(judge, reading, url=parsed) == inspect_response(
        judge, FingerprintDB.default(), url=parsed, status=status, headers=headers, body=body)


def test_a_head_past_its_budget_counts_as_leaving_the_site(judge: Judge) -> None:
    """A streamed body's head is read within head_budget; what it could not read is not "nothing found"."""
    head = b"<script>" + b"document.write('<iframe src=http://e.example/>');" * 80
    url = normalize_url("http://shop.example/")
    assert head_budget(len(head)).limit < 100_000
    reading = read_response(FingerprintDB.default(), url=url, status=200, headers=[NGINX, HTML], body=head,
                            steps=Steps(100))
    assert [o.navigation.technique for o in reading.off_site] == [Technique.UNREAD]
    assert judge_reading(judge, reading, url=url).findings[0].code == "response.redirect"


@pytest.mark.parametrize(
    ("url", "address", "port"),
    [
        ("http://203.0.113.5/", "the host is a bare IP address", None),
        ("http://[2001:db8::5]:7547/", "the host is a bare IP address",
         "port 7547 (TR-069 device management)"),
        ("http://84-12-3-4.dyn.isp.example/",
         "84-12-3-4.dyn.isp.example looks like a home line's address", None),
        ("http://dsl-5012.pool.isp.example:8080/",
         "dsl-5012.pool.isp.example looks like a home line's address",
         "port 8080, common for device web interfaces"),
        ("http://www.example.com/", None, None),
        ("http://home.example.com/", None, None),
        ("http://pool.example.com/", None, None),
        ("https://shop.example:47103/", None, "unusual port 47103"),
        ("https://shop.example:443/", None, None),
    ],
)
def test_hints(url: str, address: str | None, port: str | None) -> None:
    parsed = normalize_url(url)
    assert (address_hint(parsed), port_hint(parsed)) == (address, port)
