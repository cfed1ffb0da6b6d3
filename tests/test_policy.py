"""Policy files: validation with file, line and field for every problem; paths; actions."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from clickguard import reasons
from clickguard.errors import PolicyError, Problem
from clickguard.policy.model import (
    DEFAULT_AUDIT_LOG,
    DEFAULT_AUDIT_STORE,
    FeedConfig,
    Policy,
    check_policy,
    load_policy,
    parse_policy,
)
from clickguard.vocab import Kind
from tests.harness import REPO, SHARED_DATA

POLICIES = REPO / "policies"
DESIGN = SHARED_DATA.parent / "DESIGN.md"  # ../shared/DESIGN.md beside the clone

# Every reason code's action when the policy does not say, as policies/default.yaml spells it out.
DEFAULTS = {
    "landing.thingbot": "block",
    "origin.thingbot": "warn",
    "origin.home_line": "warn",
    "origin.unknown_landing": "warn",
    "landing.appliance": "allow",
    "response.redirect": "allow",
    "response.drive_by": "warn",
    "link.bad_signature": "block",
    "policy.deny": "block",
    "check.incomplete": "block",
}


def _write(tmp_path: Path, text: str) -> Path:
    """A policy file in tmp_path, beside an existing feed file a.txt."""
    (tmp_path / "a.txt").write_text("192.0.2.1\n")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_default_policy_has_no_problems() -> None:
    assert check_policy(POLICIES / "default.yaml") == []
    policy = load_policy(POLICIES / "default.yaml").policy
    assert [f.name for f in policy.feeds] == [
        "selftest", "urlhaus", "ipsum", "spamhaus_drop", "maltrail_mirai", "maltrail_gafgyt",
        "maltrail_hajime",
        "maltrail_hideseek", "maltrail_kaiten", "maltrail_moobot"]
    # The public feeds by URL over HTTPS, each refreshed no more than every 30 minutes.
    assert all(f.url is not None and f.url.startswith("https://") and f.refresh >= 1800
               for f in policy.feeds[1:])
    assert policy.feeds[0].path is not None
    assert policy.feeds[0].path.resolve() == (POLICIES / "feeds" / "selftest.txt").resolve()
    assert policy.audit.log is not None
    assert policy.audit.log.resolve() == (REPO / "var" / "audit.jsonl").resolve()
    assert policy.click_host == "clickguard.local"


def test_default_policy_spells_out_every_default_action() -> None:
    # IT edits the default file; every code must be there to be seen, with the built-in value.
    data = yaml.safe_load((POLICIES / "default.yaml").read_text())
    assert data["actions"] == DEFAULTS
    assert reasons.DEFAULT_ACTIONS == DEFAULTS


def _design_codes() -> list[str]:
    """The codes in the first column of DESIGN.md's table under "Reason codes"."""
    if not DESIGN.is_file():
        pytest.fail(f"{DESIGN} not found: the tests read DESIGN.md from ../shared beside the clone")
    section = DESIGN.read_text().partition("### Reason codes")[2].partition("\n#")[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return [code for row in rows for code in re.findall(r"`([^`]+)`", row)]


def test_every_code_of_design_is_known_with_the_shipped_default_action() -> None:
    codes = _design_codes()
    assert codes == ["landing.thingbot", "origin.thingbot", "landing.appliance", "response.redirect",
                     "response.drive_by", "link.bad_signature", "origin.unknown_landing", "policy.deny",
                     "check.incomplete"]
    shipped = yaml.safe_load((POLICIES / "default.yaml").read_text())["actions"]
    assert {code: reasons.REASONS[code].action for code in codes if code in reasons.REASONS} == {
        code: shipped[code] for code in codes}


def test_strict_example_only_lacks_its_feed_files() -> None:
    problems = check_policy(POLICIES / "examples" / "strict.yaml")
    for problem in problems:
        assert problem.field.startswith("feeds[") and problem.field.endswith("].path"), problem
        assert problem.message.startswith("feed file not found: /var/lib/clickguard/"), problem
    policy = load_policy(POLICIES / "examples" / "strict.yaml").policy
    assert policy.on_check_error == "closed"
    assert policy.warn.allow_continue is False
    assert policy.action_for("landing.phishing") == "block"


FEED = "feeds:\n  - name: a\n    format: ip\n"  # a feed on lines 1-3, without its source

BROKEN = [
    # unknown keys, at every level
    ("versoin: 1\n", "1: versoin: unknown key; did you mean 'version'?"),
    (FEED + "    path: a.txt\n    catgory: x\n",
     "5: feeds[0].catgory: unknown key; did you mean 'category'?"),
    ("warn:\n  allow_continu: false\n",
     "2: warn.allow_continu: unknown key; did you mean 'allow_continue'?"),
    ("allow:\n  host: [example.com]\n", "2: allow.host: unknown key; did you mean 'hosts'?"),
    ("never_judge:\n  servers: []\n",
     "2: never_judge.servers: unknown key (allowed here: clients, destinations)"),
    ("audit:\n  path: x.jsonl\n",
     "2: audit.path: unknown key (allowed here: log, store, retention, on_failure, syslog, report_stores)"),
    ("bogus:\n", "1: bogus: unknown key (allowed here: version, click_host, feeds,"),
    # feeds
    ("feeds:\n  - name: a\n    format: csv\n    path: a.txt\n",
     "3: feeds[0].format: must be one of ip, ipsum, urlhaus_csv, spamhaus_drop, maltrail, "
     "domains, urls (got 'csv')"),
    (FEED + "    path: a.txt\n    url: https://example.com/a.txt\n",
     "5: feeds[0].url: give either path or url, not both"),
    (FEED, "2: feeds[0]: give the feed a path (a local file) or a url"),
    ("feeds:\n  - name: a\n    path: a.txt\n", "2: feeds[0].format: required key is missing"),
    ("feeds:\n  - name:\n    format: ip\n    path: a.txt\n",
     "2: feeds[0].name: required key is missing"),
    (FEED + "    url: ftp://example.com/a.txt\n",
     "4: feeds[0].url: must be an http:// or https:// URL (got 'ftp://example.com/a.txt')"),
    (FEED + "    url: https://example.com/a\n    refresh: 5 minutes\n",
     "5: feeds[0].refresh: must be whole seconds or a duration such as 90s, 15m, 1h, 1d "
     "(got '5 minutes')"),
    (FEED + "    url: https://example.com/a\n    refresh: 0s\n",
     "5: feeds[0].refresh: must be at least 1 second (got '0s')"),
    (FEED + "    url: https://example.com/a\n    refresh: 1.5\n",
     "5: feeds[0].refresh: must be whole seconds"),
    (FEED + "    path: a.txt\n    refresh: 1h\n",
     "5: feeds[0].refresh: refresh only applies to feeds fetched by url"),
    (FEED + "    path: a.txt\n    min_count: 3\n",
     "5: feeds[0].min_count: min_count only applies to format ipsum (this feed is ip)"),
    ("feeds:\n  - name: a\n    format: ipsum\n    path: a.txt\n    min_count: 0\n",
     "5: feeds[0].min_count: must be at least 1 (got 0)"),
    (FEED + "    path: a.txt\n  - name: a\n    format: ip\n    url: https://example.com/a\n",
     "5: feeds[1].name: duplicate feed name 'a' (also feeds[0])"),
    ("feeds:\n  - name: my feed\n    format: ip\n    path: a.txt\n",
     "2: feeds[0].name: must use only letters, digits"),
    (FEED + "    path: a.txt\n    category: appliance\n",
     "5: feeds[0].category: 'appliance' is reserved"),
    (FEED + "    path: a.txt\n    match: [ip, ipv4]\n",
     "5: feeds[0].match[1]: must be one of ip, cidr, domain, host, url, path (got 'ipv4')"),
    (FEED + "    path: a.txt\n    match: []\n", "5: feeds[0].match: list at least one kind"),
    # actions
    ("actions:\n  landing.thingbot: deny\n",
     "2: actions.landing.thingbot: must be one of allow, warn, block (got 'deny')"),
    ("actions:\n  Landing: block\n", "2: actions.Landing: not a reason code"),
    ("actions:\n  origin.thingbot: warn\n  landing.thingbots: allow\n",
     "3: actions.landing.thingbots: unknown reason code; did you mean 'landing.thingbot'?"),
    # allow, deny, never_judge, intercept
    ("allow:\n  networks:\n    - 10.0.0.0/8\n    - 10.0.0.300\n",
     "4: allow.networks[1]: must be an IP address or a network like 10.0.0.0/8 (got '10.0.0.300')"),
    ("never_judge:\n  clients: [10.0.0.0/8, 8]\n",
     "2: never_judge.clients[1]: must be an IP address or a network like 10.0.0.0/8 (got 8)"),
    ("deny:\n  hosts:\n    - 203.0.113.7\n",
     "3: deny.hosts[0]: '203.0.113.7' is an IP address, not a host name; list it under networks"),
    ("intercept:\n  exclude: ['*.bank.example']\n",
     "2: intercept.exclude[0]: write 'bank.example' without '*.'"),
    ("click_host: not a host!\n", "1: click_host: not a valid host name"),
    # wrong types
    ("warn:\n  continue_minutes: '30'\n",
     "2: warn.continue_minutes: must be a whole number (got '30')"),
    ("warn:\n  allow_continue: maybe\n",
     "2: warn.allow_continue: must be true or false (got 'maybe')"),
    ("warn:\n  token_minutes: 121\n", "2: warn.token_minutes: must be at most 120 (got 121)"),
    ("warn:\n  continue_minutes: 0\n", "2: warn.continue_minutes: must be at least 1 (got 0)"),
    ("on_check_error: shut\n", "1: on_check_error: must be one of open, closed (got 'shut')"),
    ("version: 2\n", "1: version: must be 1 (got 2)"),
    ("audit:\n  log: 5\n", "2: audit.log: must be a file path (got 5)"),
    ("audit:\n  store: true\n", "2: audit.store: must be a file path (got true)"),
    ("audit:\n  retention: 0\n", "2: audit.retention: must be at least 1 second (got 0)"),
    ("audit:\n  retention: 3 months\n", "2: audit.retention: must be whole seconds or a duration"),
    ("audit:\n  retention: 30d\n  on_failure: shut\n",
     "3: audit.on_failure: must be one of open, closed (got 'shut')"),
    ("audit:\n  on_failure: true\n", "2: audit.on_failure: must be one of open, closed (got true)"),
    ("allow: [example.com]\n", "1: allow: must be a mapping of keys to values (got a list)"),
    ("feeds:\n  name: a\n", "1: feeds: must be a list (got a mapping)"),
    # the file itself
    ("- version: 1\n", "1: a policy must be a mapping of keys"),
    ("", "1: empty policy"),
    ("# nothing but a comment\n", "1: empty policy"),
    ("on_check_error: open\nwarn: {}\non_check_error: closed\n",
     "3: on_check_error: duplicate key (first at line 1)"),
    (FEED + "    path: a.txt\n    format: ipsum\n",
     "5: feeds[0].format: duplicate key (first at line 3)"),
    (FEED + "    path: a.txt\n   url: x\n", "5: not valid YAML: "),
    ("allow:\n  hosts: [a.example\n", "3: not valid YAML: "),
    ("warn:\n\tallow_continue: false\n", "2: not valid YAML: "),
    ("<<: {version: 1}\n", "1: <<: YAML merge keys are not supported"),
    # nesting: refused at the first level too deep, before yaml recurses or slows down
    ("version: 1\nallow: " + "[" * 1000, "2: nested too deeply (more than 64 lists and mappings"),
    ("allow: " + "[" * 100_000 + "]" * 100_000, "1: nested too deeply"),
    ("allow: " + "{a: " * 1000, "1: nested too deeply"),
    ("allow:\n" + "- " * 1000 + "a\n", "2: nested too deeply"),
    ("allow:\n" + "".join(" " * n + "- \n" for n in range(1000)), "65: nested too deeply"),
    ("version: !!binary aGk=\n", "1: version: must be 1 (got b'hi')"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN, ids=[e for _, e in BROKEN])
def test_broken_policy_gives_one_problem_at_its_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path, text)
    problems = check_policy(path)
    assert len(problems) == 1, [str(p) for p in problems]
    assert str(problems[0]).startswith(f"{path}:{expected}")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert raised.value.problems == problems
    assert str(raised.value) == str(problems[0])


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, (
        "version: 1\n"
        "feeds:\n"
        "  - name: a\n"
        "    format: csv\n"
        "    path: a.txt\n"
        "warn:\n"
        "  token_minutes: 0\n"
        "bogus: true\n"
        "warn: {}\n"
    ))
    problems = check_policy(path)
    assert [(p.line, p.field) for p in problems] == [
        (4, "feeds[0].format"), (8, "bogus"), (9, "warn"),
    ]


def test_missing_and_unreadable_feed_files_are_problems_only_for_check(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    path = _write(tmp_path, (
        "feeds:\n"
        "  - name: gone\n"
        "    format: ip\n"
        "    path: feeds/gone.txt\n"
        "  - name: dir\n"
        "    format: ip\n"
        "    path: feeds\n"
        "  - name: here\n"
        "    format: ip\n"
        "    path: a.txt\n"
    ))
    assert [str(p) for p in check_policy(path)] == [
        f"{path}:4: feeds[0].path: feed file not found: {tmp_path / 'feeds' / 'gone.txt'}",
        f"{path}:7: feeds[1].path: not a file: {tmp_path / 'feeds'}",
    ]
    # Loading does not look at feed files: a feed not there yet is the feed loader's concern.
    assert len(load_policy(path).policy.feeds) == 3


def test_feed_files_are_checked_even_when_the_policy_is_invalid(tmp_path: Path) -> None:
    path = _write(tmp_path, "feeds:\n  - name: x\n    format: ip\n    path: nope.txt\nbogus: 1\n")
    assert [(p.line, p.field) for p in check_policy(path)] == [(4, "feeds[0].path"), (5, "bogus")]


def test_unreadable_policy_file(tmp_path: Path) -> None:
    problems = check_policy(tmp_path / "missing.yaml")
    assert len(problems) == 1
    assert problems[0].line is None
    assert str(problems[0]).startswith(f"{tmp_path / 'missing.yaml'}: cannot read the policy")
    with pytest.raises(PolicyError):
        load_policy(tmp_path / "missing.yaml")


def test_non_utf8_policy(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nclick_host: caf\xe9.example\n")
    assert [str(p) for p in check_policy(path)] == [f"{path}:2: not UTF-8 text"]


def test_relative_paths_resolve_against_the_policy_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc" / "feeds").mkdir(parents=True)
    (tmp_path / "etc" / "feeds" / "x.txt").write_text("192.0.2.1\n")
    path = tmp_path / "etc" / "policy.yaml"
    path.write_text(
        "feeds:\n"
        "  - {name: local, format: ip, path: feeds/x.txt}\n"
        "  - {name: absolute, format: ip, path: /srv/feeds/y.txt}\n"
        "  - {name: remote, format: urls, url: 'https://example.com/u.txt', cache: cache/u.txt}\n"
        "audit:\n"
        "  log: ../var/audit.jsonl\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_policy(Path(os.path.relpath(path, elsewhere)))
    local, absolute, remote = loaded.policy.feeds
    # Absolute but not resolved (symlinks kept for the kernel to follow), so compare resolved.
    assert local.path is not None and local.path.is_absolute()
    assert local.path.resolve() == (tmp_path / "etc" / "feeds" / "x.txt").resolve()
    assert absolute.path == Path("/srv/feeds/y.txt")
    assert remote.cache is not None and remote.cache.is_absolute()
    assert remote.cache.resolve() == (tmp_path / "etc" / "cache" / "u.txt").resolve()
    assert loaded.policy.audit.log is not None
    assert loaded.policy.audit.log.resolve() == (tmp_path / "var" / "audit.jsonl").resolve()
    assert loaded.path.is_absolute() and loaded.path.resolve() == path.resolve()
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_feed_config_takes_base_dir_from_validation_context(tmp_path: Path) -> None:
    feed = FeedConfig.model_validate(
        {"name": "x", "format": "ip", "path": "x.txt"}, context={"base_dir": tmp_path}
    )
    assert feed.path == tmp_path / "x.txt"


@pytest.mark.parametrize(("written", "seconds"), [
    (None, 3600.0), (1, 1.0), (90, 90.0), ("90", 90.0), ("90s", 90.0),
    ("15m", 900.0), ("1h", 3600.0), ("2d", 172800.0),
])
def test_refresh_durations(written: object, seconds: float) -> None:
    data: dict[str, object] = {"name": "x", "format": "ip", "url": "https://example.com/x"}
    if written is not None:
        data["refresh"] = written
    assert FeedConfig.model_validate(data).refresh == seconds


@pytest.mark.parametrize(("written", "stored"), [
    ("Example.COM.", "example.com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("  intranet.corp.example ", "intranet.corp.example"),
])
def test_hosts_are_normalised(written: str, stored: str) -> None:
    policy = parse_policy(
        f"click_host: {written.upper()}\n"
        f"allow:\n  hosts: ['{written}']\n  domains: ['{written}']\n",
        filename="p.yaml", base_dir=Path("."),
    )
    assert policy.allow.hosts == {stored}
    assert policy.allow.domains == {stored}
    assert policy.click_host == stored


def test_networks_tolerate_host_bits() -> None:
    policy = parse_policy(
        "deny:\n  networks: [10.1.2.3/8, 192.0.2.7, '2001:db8::1/32']\n"
        "never_judge:\n  destinations: [172.16.0.0/12]\n",
        filename="p.yaml", base_dir=Path("."),
    )
    assert policy.deny.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert policy.never_judge.destinations == (ipaddress.ip_network("172.16.0.0/12"),)


def test_match_kinds() -> None:
    policy = parse_policy(
        "feeds:\n  - {name: x, format: urlhaus_csv, url: 'https://e.example/', match: [url, ip]}\n",
        filename="p.yaml", base_dir=Path("."),
    )
    assert policy.feeds[0].match == frozenset({Kind.URL, Kind.IP})
    assert policy.feeds[0].refresh == 3600.0
    assert policy.feeds[0].category == "thingbot"


ACTION_POLICY = """\
feeds:
  - {name: phish, format: urls, path: a.txt, category: phishing}
  - {name: tb, format: ip, path: a.txt}
  - {name: bots, format: ip, path: a.txt, category: botnet}
actions:
  landing.thingbot: warn
  landing.botnet: allow
  response.redirect: block
"""


@pytest.mark.parametrize(("code", "action"), [
    ("landing.thingbot", "warn"),  # explicit
    ("response.redirect", "block"),  # explicit, over the default
    ("origin.thingbot", "warn"),  # default
    ("link.bad_signature", "block"),  # default
    ("landing.appliance", "allow"),  # default
    ("check.incomplete", "block"),  # default
    ("landing.phishing", "warn"),  # a feed's category without an action: as landing.thingbot
    ("landing.botnet", "allow"),  # a feed's category with its own action
    ("landing.nosuchfeed", "warn"),  # no feed has that category: unknown code
    ("something.new", "warn"),  # unknown code
])
def test_action_for(code: str, action: str) -> None:
    policy = parse_policy(ACTION_POLICY, filename="p.yaml", base_dir=Path("."))
    assert policy.action_for(code) == action


def test_actions_merge_over_defaults() -> None:
    policy = parse_policy("actions:\n  origin.thingbot: block\n",
                          filename="p.yaml", base_dir=Path("."))
    assert policy.actions == {**DEFAULTS, "origin.thingbot": "block"}
    assert Policy().actions == DEFAULTS
    assert Policy().action_for("landing.thingbot") == "block"


def test_defaults_for_a_minimal_policy() -> None:
    policy = parse_policy("version: 1\n", filename="p.yaml", base_dir=Path("."))
    assert policy == Policy()
    assert policy.warn.allow_continue is True
    assert (policy.warn.continue_minutes, policy.warn.token_minutes) == (30, 10)
    assert policy.on_check_error == "open"
    assert policy.audit.log == DEFAULT_AUDIT_LOG  # relative: the proxy's working directory
    assert policy.audit.store == DEFAULT_AUDIT_STORE
    assert policy.audit.retention == 90 * 86400
    assert policy.audit.on_failure == "open"  # availability: a full disk does not stop the browsing
    assert policy.feeds == ()


def test_empty_keys_take_their_defaults() -> None:
    # What IT gets after commenting out every entry under a key.
    text = "version:\nfeeds:\nallow:\n  # hosts: [a.example]\nwarn:\n  continue_minutes:\n"
    assert parse_policy(text, filename="p.yaml", base_dir=Path(".")) == Policy()


def test_anchors_and_aliases_are_followed() -> None:
    policy = parse_policy(
        "allow:\n  networks: &lab [192.0.2.0/24]\nnever_judge:\n  destinations: *lab\n",
        filename="p.yaml", base_dir=Path("."),
    )
    assert policy.never_judge.destinations == policy.allow.networks


def test_nesting_under_the_limit_is_read() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy("allow: " + "[" * 62 + "]" * 62, filename="p.yaml", base_dir=Path("."))
    assert [p.message for p in raised.value.problems] == [
        "must be a mapping of keys to values (got a list)"]


@pytest.mark.parametrize(("text", "message"), [
    # Each alias nests one level more than the anchor it repeats: deeper data than text.
    ("".join(f"x{n}: &a{n} [*a{n - 1}]\n" for n in range(1, 100)), "nested too deeply"),
    # Each alias repeats ten of the one before: 10**9 values from 500 characters.
    ("".join(f"x{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10)),
     "aliases repeat too much"),
])
def test_aliases_cannot_make_the_data_deeper_or_bigger_than_the_limits(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(f"version: 1\nx0: &a0 [a, a, a, a, a, a, a, a, a, a]\n{text}", filename="p.yaml",
                     base_dir=Path("."))
    found = [p for p in raised.value.problems if message in p.message]
    assert len(found) == 1, [str(p) for p in raised.value.problems][:5]
    assert found[0].line is not None


def test_policy_is_frozen() -> None:
    policy = Policy()
    with pytest.raises(ValidationError):
        policy.on_check_error = "closed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        reasons.DEFAULT_ACTIONS["policy.deny"] = "allow"  # type: ignore[index]


def test_problem_renders_as_file_line_field_message() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy("feeds:\n  - {name: a, format: csv, path: x}\n", filename="policies/x.yaml",
                     base_dir=Path("."))
    assert raised.value.problems == [Problem(
        "policies/x.yaml", 2, "feeds[0].format",
        "must be one of ip, ipsum, urlhaus_csv, spamhaus_drop, maltrail, domains, urls (got 'csv')",
    )]


@pytest.mark.parametrize(("text", "log", "store", "retention"), [
    ("version: 1\n", DEFAULT_AUDIT_LOG, DEFAULT_AUDIT_STORE, 90 * 86400),
    ("audit:\n  log:\n  store:\n  retention:\n", DEFAULT_AUDIT_LOG, DEFAULT_AUDIT_STORE, 90 * 86400),
    ("audit:\n  log: a.jsonl\n  store: db/a.sqlite\n  retention: 30d\n",
     Path("/etc/cg/a.jsonl"), Path("/etc/cg/db/a.sqlite"), 30 * 86400),
    ("audit:\n  log: off\n  store: off\n  retention: off\n", None, None, None),
    ("audit:\n  log: 'OFF'\n  store: false\n", None, None, 90 * 86400),  # quoted off, YAML false
])
def test_audit_sinks_and_retention(text: str, log: Path | None, store: Path | None,
                                   retention: float | None) -> None:
    audit = parse_policy(text, filename="p.yaml", base_dir=Path("/etc/cg")).audit
    assert (audit.log, audit.store, audit.retention) == (log, store, retention)


@pytest.mark.parametrize("value", ["open", "closed"])
def test_audit_on_failure(value: str) -> None:
    audit = parse_policy(f"audit:\n  on_failure: {value}\n", filename="p.yaml", base_dir=Path(".")).audit
    assert audit.on_failure == value
