"""The judge, verdicts and checks: policy and feeds turned into findings and actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickguard.decision.check import check, check_offline
from clickguard.decision.judge import Judge
from clickguard.decision.verdict import Finding, Verdict
from clickguard.intel.index import FeedInput, ReputationIndex
from clickguard.intel.parsers import Indicator, Kind
from clickguard.intel.resolver import ResolveError, Resolver
from clickguard.policy.model import Policy, parse_policy
from clickguard.urls import normalize_url

POLICY = """\
version: 1
feeds:
  - name: phish                 # its category makes landing.phishing act like landing.thingbot
    format: domains
    path: phish.txt
    category: phishing
actions:
  origin.thingbot: warn
  response.drive_by: warn
allow:
  hosts: [intranet.corp.example]
  domains: [trusted.example]
  networks: [10.0.0.0/8, "2001:db8:aaaa::/48"]
deny:
  hosts: [denied.example]
  domains: [banned.example]
  networks: [192.0.2.128/25]
never_judge:
  clients: [172.16.0.0/12]
  destinations: [10.20.0.0/16]
on_check_error: {on_check_error}
"""

FEED = [
    Indicator(Kind.IP, "203.0.113.9", ("mirai",)),
    Indicator(Kind.CIDR, "198.51.100.0/24", ("sbl1",)),
    Indicator(Kind.DOMAIN, "evil.example", ()),
    Indicator(Kind.URL, "http://files.example/payload.exe", ("exe",)),
    Indicator(Kind.IP, "127.0.0.1", ("loop",)),
    Indicator(Kind.IP, "::1", ("loop",)),
    Indicator(Kind.DOMAIN, "trusted.example", ()),  # a feed listing an allowed domain
    Indicator(Kind.IP, "10.1.2.3", ()),  # and an allowed address
    Indicator(Kind.IP, "192.0.2.200", ()),  # and a denied one
]


def _policy(tmp_path: Path, on_check_error: str = "open") -> Policy:
    text = POLICY.format(on_check_error=on_check_error)
    return parse_policy(text, filename="t.yaml", base_dir=tmp_path)


def _index() -> ReputationIndex:
    return ReputationIndex.build([
        FeedInput("bots", "thingbot", frozenset(Kind), FEED),
        FeedInput("phish", "phishing", frozenset(Kind), [Indicator(Kind.DOMAIN, "login-bank.example")]),
    ])


def _judge(tmp_path: Path, on_check_error: str = "open", *, unloaded: tuple[str, ...] = ()) -> Judge:
    return Judge(_policy(tmp_path, on_check_error), _index(), unloaded_feeds=unloaded)


@pytest.fixture
def judge(tmp_path: Path) -> Judge:
    return _judge(tmp_path)


# --- findings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://203.0.113.9:8080/i", [("landing.thingbot", "203.0.113.9 is listed by feed 'bots' "
                                                            "(tags: mirai)")]),
        ("http://198.51.100.4/", [("landing.thingbot", "198.51.100.4 is in the network "
                                                       "198.51.100.0/24, listed by feed 'bots' "
                                                       "(tags: sbl1)")]),
        ("https://cdn.evil.example/x", [("landing.thingbot", "cdn.evil.example is under the domain "
                                                             "evil.example, listed by feed 'bots'")]),
        ("http://files.example/payload.exe?x=1",
         [("landing.thingbot", "the address http://files.example/payload.exe is listed by feed "
                               "'bots' (tags: exe)")]),
        ("https://www.login-bank.example/", [("landing.phishing", "www.login-bank.example is under "
                                                                  "the domain login-bank.example, "
                                                                  "listed by feed 'phish'")]),
        ("http://denied.example/", [("policy.deny", "denied.example is on the policy's deny list "
                                                    "(host denied.example)")]),
        ("http://www.banned.example/", [("policy.deny", "www.banned.example is on the policy's deny "
                                                        "list (domain banned.example)")]),
        ("http://192.0.2.130/", [("policy.deny", "192.0.2.130 is on the policy's deny list "
                                                 "(network 192.0.2.128/25)")]),
        ("http://www.denied.example/", []),  # a denied host is exact, not a domain
        ("https://example.org/", []),
        # an IPv6 literal is judged as the IPv4 inside it too (203.0.113.9 is cb00:7109)
        ("http://[64:ff9b::cb00:7109]:8080/i",
         [("landing.thingbot", "64:ff9b::cb00:7109 (the NAT64 form of 203.0.113.9) is listed by feed "
                               "'bots' (tags: mirai)")]),
        ("http://[2002:c633:6404::1]/",
         [("landing.thingbot", "2002:c633:6404::1 (the 6to4 form of 198.51.100.4) is in the network "
                               "198.51.100.0/24, listed by feed 'bots' (tags: sbl1)")]),
        ("http://[64:ff9b::c000:282]/",
         [("policy.deny", "64:ff9b::c000:282 is on the policy's deny list (network 192.0.2.128/25; the "
                          "address is the NAT64 form of 192.0.2.130)")]),
        ("http://[64:ff9b::c000:202]/", []),
    ],
)
def test_url_findings(judge: Judge, raw: str, expected: list[tuple[str, str]]) -> None:
    assert [(f.code, f.detail) for f in judge.url_findings(normalize_url(raw))] == expected


@pytest.mark.parametrize(
    ("addresses", "host", "expected"),
    [
        (["203.0.113.9"], "shop.example",
         [("landing.thingbot", "shop.example resolves to 203.0.113.9, which is listed by feed 'bots' "
                               "(tags: mirai)")]),
        (["198.51.100.7"], None,
         [("landing.thingbot", "198.51.100.7 is in the network 198.51.100.0/24, listed by feed "
                               "'bots' (tags: sbl1)")]),
        (["192.0.2.129"], "shop.example",
         [("policy.deny", "shop.example resolves to 192.0.2.129, on the policy's deny list "
                          "(network 192.0.2.128/25)")]),
        (["192.0.2.1", "2001:db8::1"], "shop.example", []),
        # an AAAA answer embedding a listed IPv4 (Teredo's client field is the address, bits flipped)
        (["2001:0:4136:e378:8000:63bf:34ff:8ef6"], "shop.example",
         [("landing.thingbot", "shop.example resolves to 2001:0:4136:e378:8000:63bf:34ff:8ef6 (the "
                               "Teredo client 203.0.113.9), which is listed by feed 'bots' (tags: mirai)")]),
        (["64:ff9b::c000:282"], "shop.example",
         [("policy.deny", "shop.example resolves to 64:ff9b::c000:282, on the policy's deny list "
                          "(network 192.0.2.128/25; the address is the NAT64 form of 192.0.2.130)")]),
    ],
)
def test_address_findings(judge: Judge, addresses: list[str], host: str | None,
                          expected: list[tuple[str, str]]) -> None:
    assert [(f.code, f.detail) for f in judge.address_findings(addresses, host=host)] == expected


def test_address_findings_carry_feed_and_tags(judge: Judge) -> None:
    (finding,) = judge.address_findings(["::ffff:203.0.113.9"], host="x.example")
    assert finding.feed == "bots"
    assert finding.tags == ("mirai",)
    assert finding.indicator == "203.0.113.9"
    assert "x.example resolves to" in finding.detail


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.9", [("origin.thingbot", "the e-mail was handed over by 203.0.113.9, listed by "
                                             "feed 'bots' (tags: mirai)")]),
        ("198.51.100.77", [("origin.thingbot", "the e-mail was handed over by 198.51.100.77, in the "
                                               "network 198.51.100.0/24, listed by feed 'bots' "
                                               "(tags: sbl1)")]),
        ("192.0.2.5", []),
        ("64:ff9b::cb00:7109", [("origin.thingbot", "the e-mail was handed over by 64:ff9b::cb00:7109 "
                                                    "(the NAT64 form of 203.0.113.9), listed by feed "
                                                    "'bots' (tags: mirai)")]),
    ],
)
def test_origin_findings(judge: Judge, address: str, expected: list[tuple[str, str]]) -> None:
    assert [(f.code, f.detail) for f in judge.origin_findings(address)] == expected


@pytest.mark.parametrize(
    ("origin", "landing", "codes"),
    [
        ("203.0.113.9", "shop.unknown.example", ["origin.thingbot", "origin.unknown_landing"]),
        ("203.0.113.9", "www.partner.example", ["origin.thingbot"]),  # email.known_domains
        ("203.0.113.9", "partner.example", ["origin.thingbot"]),
        ("203.0.113.9", "docs.skipped.example", ["origin.thingbot"]),  # click_links.skip_domains
        ("203.0.113.9", "a.trusted.example", ["origin.thingbot"]),  # allow.domains
        ("203.0.113.9", "intranet.corp.example", ["origin.thingbot"]),  # allow.hosts
        ("203.0.113.9", "notpartner.example", ["origin.thingbot", "origin.unknown_landing"]),
        ("192.0.2.5", "shop.unknown.example", []),  # a clean origin adds nothing
    ],
)
def test_unknown_landing_from_a_thingbot_origin(tmp_path: Path, origin: str, landing: str,
                                                codes: list[str]) -> None:
    text = POLICY.format(on_check_error="open") + (
        "email: {known_domains: [partner.example]}\n"
        "click_links: {skip_domains: [skipped.example]}\n"
        "actions: {origin.thingbot: warn, origin.unknown_landing: block}\n")
    text = text.replace("actions:\n  origin.thingbot: warn\n  response.drive_by: warn\n", "")
    judge = Judge(parse_policy(text, filename="t.yaml", base_dir=tmp_path), _index())
    findings = judge.origin_findings(origin, landing)
    assert [f.code for f in findings] == codes
    expected = "block" if "origin.unknown_landing" in codes else ("warn" if codes else "allow")
    assert judge.decide(findings).action == expected


def test_a_learned_address_is_found_inside_an_ipv6_address(judge: Judge) -> None:
    judge.learned.learn("203.0.113.50", "a camera's redirect", "http://203.0.113.50/", ("response.redirect",),
                        ttl=3600)
    (finding,) = judge.url_findings(normalize_url("http://[64:ff9b::cb00:7132]/"))
    assert (finding.code, finding.feed, finding.indicator) == ("landing.thingbot", "learned", "203.0.113.50")
    assert finding.detail.startswith("64:ff9b::cb00:7132 (the NAT64 form of 203.0.113.50) was learned ")
    (finding,) = judge.address_findings(["2002:cb00:7132::"], host="shop.example")
    assert finding.detail.startswith("shop.example resolves to 2002:cb00:7132:: (the 6to4 form of "
                                     "203.0.113.50), which was learned ")


# --- allow list ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "addresses", "expected"),
    [
        ("https://intranet.corp.example/", (), "allow list: host intranet.corp.example"),
        ("https://wiki.intranet.corp.example/", (), None),  # a host entry is exact
        ("https://trusted.example/", (), "allow list: domain trusted.example"),
        ("https://a.b.trusted.example/", (), "allow list: domain trusted.example"),
        ("https://untrusted.example/", (), None),
        ("http://10.9.8.7/", (), "allow list: network 10.0.0.0/8"),
        ("http://[2001:db8:aaaa::5]/", (), "allow list: network 2001:db8:aaaa::/48"),
        ("http://11.0.0.1/", (), None),
        ("http://[::ffff:10.9.8.7]/", (), "allow list: network 10.0.0.0/8"),  # the same socket address
        # An entry vouches for no other host: the IPv4 inside a NAT64, 6to4 or Teredo address
        # is the sender's choice (findings count either way, trust only the address itself).
        ("http://[64:ff9b::a09:807]/", (), None),
        ("https://app.example/", ("2002:a09:807::",), None),
        # a host name is allowed by its addresses only when every one of them is allowed
        ("https://app.example/", ("10.1.1.1", "10.2.2.2"), "allow list: network 10.0.0.0/8"),
        ("https://app.example/", ("10.1.1.1", "2001:db8:aaaa::1"), "allow list: network 10.0.0.0/8"),
        ("https://app.example/", ("10.1.1.1", "203.0.113.1"), None),
        ("https://app.example/", (), None),
    ],
)
def test_allowed_by(judge: Judge, raw: str, addresses: tuple[str, ...], expected: str | None) -> None:
    assert judge.allowed_by(normalize_url(raw), addresses) == expected


# --- decide ----------------------------------------------------------------------------------

THINGBOT = Finding("landing.thingbot", "listed")
ORIGIN = Finding("origin.thingbot", "origin listed")
DRIVE_BY = Finding("response.drive_by", "an .exe")
APPLIANCE = Finding("landing.appliance", "a router")
DENY = Finding("policy.deny", "denied")
PHISHING = Finding("landing.phishing", "phish")
UNKNOWN = Finding("made.up", "a code no policy knows")


@pytest.mark.parametrize(
    ("findings", "allowed_by", "action"),
    [
        ([], None, "allow"),
        ([APPLIANCE], None, "allow"),
        ([ORIGIN], None, "warn"),
        ([APPLIANCE, ORIGIN], None, "warn"),
        ([ORIGIN, THINGBOT, DRIVE_BY], None, "block"),  # the most severe action wins
        ([PHISHING], None, "block"),  # a feed category acts like landing.thingbot by default
        ([UNKNOWN], None, "warn"),
        ([THINGBOT], "allow list: host x", "allow"),  # allow beats feeds
        ([THINGBOT, DENY], "allow list: host x", "block"),  # deny beats allow
        ([DENY], None, "block"),
    ],
)
def test_decide(judge: Judge, findings: list[Finding], allowed_by: str | None, action: str) -> None:
    verdict = judge.decide(findings, allowed_by=allowed_by)
    assert verdict.action == action
    assert verdict.findings == tuple(findings)  # the evidence is kept even when allowed
    assert verdict.allowed_by == (allowed_by if action == "allow" else None)


@pytest.mark.parametrize(
    ("on_check_error", "action", "codes"),
    [
        ("closed", "block", ["origin.thingbot", "check.incomplete"]),
        ("open", "warn", ["origin.thingbot"]),
    ],
)
def test_decide_incomplete(tmp_path: Path, on_check_error: str, action: str, codes: list[str]) -> None:
    judge = _judge(tmp_path, on_check_error)
    verdict = judge.decide([ORIGIN], incomplete="shop.example does not resolve")
    assert verdict.action == action
    assert verdict.codes == codes
    if on_check_error == "closed":
        assert verdict.findings[-1].detail == "shop.example does not resolve"


@pytest.mark.parametrize(
    ("client", "exempt"),
    [("172.16.0.1", True), ("172.31.255.255", True), ("172.32.0.1", False), ("::ffff:172.20.0.1", True),
     ("2001:db8::1", False), ("nonsense", False)],
)
def test_client_exempt(judge: Judge, client: str, exempt: bool) -> None:
    assert judge.client_exempt(client) is exempt


@pytest.mark.parametrize(
    ("address", "exempt"), [("10.20.1.1", True), ("10.21.1.1", False), ("203.0.113.9", False)])
def test_destination_exempt(judge: Judge, address: str, exempt: bool) -> None:
    assert judge.destination_exempt(address) is exempt


# --- checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "action", "codes", "addresses", "allowed_by"),
    [
        ("http://203.0.113.9/i", "block", ["landing.thingbot"], ("203.0.113.9",), None),
        ("http://files.example/payload.exe", "block", ["landing.thingbot"], (), None),
        ("https://example.org/", "allow", [], (), None),
        # the allow list beats a feed listing, the deny list beats the allow list
        ("https://www.trusted.example/", "allow", ["landing.thingbot"], (),
         "allow list: domain trusted.example"),
        ("http://10.1.2.3/", "allow", ["landing.thingbot"], ("10.1.2.3",),
         "allow list: network 10.0.0.0/8"),
        ("http://192.0.2.200/", "block", ["policy.deny", "landing.thingbot"], ("192.0.2.200",), None),
        # Teredo: an allow-listed server (10.1.2.3) does not vouch for a listed client (203.0.113.9)
        ("http://[2001:0:a01:203::34ff:8ef6]/", "block", ["landing.thingbot"],
         ("2001:0:a01:203::34ff:8ef6",), None),
    ],
)
def test_check_offline(judge: Judge, raw: str, action: str, codes: list[str],
                       addresses: tuple[str, ...], allowed_by: str | None) -> None:
    decision = check_offline(judge, normalize_url(raw))
    assert decision.verdict.action == action
    assert decision.verdict.codes == codes
    assert decision.addresses == addresses
    assert decision.verdict.allowed_by == allowed_by


@pytest.mark.parametrize(("on_check_error", "action"), [("open", "allow"), ("closed", "block")])
def test_check_offline_unloaded_feeds(tmp_path: Path, on_check_error: str, action: str) -> None:
    judge = _judge(tmp_path, on_check_error, unloaded=("urlhaus",))
    verdict = check_offline(judge, normalize_url("https://example.org/")).verdict
    assert verdict.action == action
    if on_check_error == "closed":
        assert verdict.findings == (Finding("check.incomplete", "feeds not loaded yet: urlhaus"),)


async def test_check_resolves_localhost(judge: Judge) -> None:
    decision = await check(judge, normalize_url("http://localhost:8000/"), Resolver())
    assert set(decision.addresses) & {"127.0.0.1", "::1"}
    assert decision.verdict.action == "block"
    assert decision.verdict.codes == ["landing.thingbot"]
    assert all(f.detail.startswith("localhost resolves to ") for f in decision.verdict.findings)
    assert {f.indicator for f in decision.verdict.findings} <= {"127.0.0.1", "::1"}


class _FailingResolver(Resolver):
    """A resolver whose every lookup fails, as a dead DNS server would."""

    async def resolve(self, host: str) -> tuple[str, ...]:
        raise ResolveError(f"{host} does not resolve: test")


@pytest.mark.parametrize(
    ("on_check_error", "action", "codes"),
    [("open", "allow", []), ("closed", "block", ["check.incomplete"])],
)
async def test_check_resolution_failure(tmp_path: Path, on_check_error: str, action: str,
                                        codes: list[str]) -> None:
    judge = _judge(tmp_path, on_check_error)
    decision = await check(judge, normalize_url("https://shop.example/"), _FailingResolver())
    assert decision.verdict.action == action
    assert decision.verdict.codes == codes
    assert decision.addresses == ()


class _DNS64Resolver(Resolver):
    """A resolver behind DNS64: every name answers with the NAT64 form of a listed address."""

    async def resolve(self, host: str) -> tuple[str, ...]:
        return ("64:ff9b::cb00:7109",)  # 203.0.113.9


async def test_check_judges_the_ipv4_inside_an_aaaa_answer(judge: Judge) -> None:
    decision = await check(judge, normalize_url("https://shop.example/"), _DNS64Resolver())
    assert decision.verdict.action == "block"
    (finding,) = decision.verdict.findings
    assert finding.detail == ("shop.example resolves to 64:ff9b::cb00:7109 (the NAT64 form of 203.0.113.9), "
                              "which is listed by feed 'bots' (tags: mirai)")


async def test_check_skips_resolution_when_already_blocked(judge: Judge) -> None:
    decision = await check(judge, normalize_url("https://evil.example/"), _FailingResolver())
    assert decision.verdict.action == "block"
    assert decision.verdict.codes == ["landing.thingbot"]


# --- verdict values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finding", "expected"),
    [
        (Finding("landing.thingbot", "d"), {"code": "landing.thingbot", "detail": "d"}),
        (Finding("landing.thingbot", "d", "bots", ("mirai", "elf"), "203.0.113.9"),
         {"code": "landing.thingbot", "detail": "d", "feed": "bots", "tags": ["mirai", "elf"],
          "indicator": "203.0.113.9"}),
        (Finding("policy.deny", "d", indicator="host x"),
         {"code": "policy.deny", "detail": "d", "indicator": "host x"}),
    ],
)
def test_finding_as_dict(finding: Finding, expected: dict[str, object]) -> None:
    assert finding.as_dict() == expected


def test_verdict_codes_deduplicated_in_order() -> None:
    verdict = Verdict("block", (THINGBOT, ORIGIN, Finding("landing.thingbot", "again"), DENY, ORIGIN))
    assert verdict.codes == ["landing.thingbot", "origin.thingbot", "policy.deny"]
    assert Verdict("allow").codes == []
