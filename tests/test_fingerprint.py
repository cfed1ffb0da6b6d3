"""The appliance fingerprint database: shipped data, matching, precision, load errors, titles."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from clickguard.errors import InputError
from clickguard.inspection.fingerprints import (
    BODY_LIMIT,
    SHIPPED_FINGERPRINTS,
    DeviceClass,
    FingerprintDB,
    ResponseTraits,
    html_title,
    traits_from,
)

TRAITS = ("server", "realm", "title", "body")


def _shipped() -> list[dict[str, Any]]:
    """The shipped fingerprints as plain YAML data, read independently of the module under test."""
    out: list[dict[str, Any]] = []
    for path in sorted(SHIPPED_FINGERPRINTS.glob("*.yaml")):
        out += yaml.safe_load(path.read_text(encoding="utf-8"))["fingerprints"]
    return out


SHIPPED = _shipped()


def _traits(example: dict[str, Any]) -> ResponseTraits:
    """Traits from an example mapping as the YAML files write them."""
    header = example.get("header")
    headers = {header["name"].lower(): header["value"]} if header else {}
    return ResponseTraits(example.get("server"), example.get("realm"), example.get("title"),
                          headers, example.get("body") or "")


def _plain_matches(traits: ResponseTraits) -> set[str]:
    """What a naive matcher finds: every pattern of every fingerprint searched on its own."""
    found: set[str] = set()
    for fp in SHIPPED:
        ok = True
        for key, pattern in fp["match"].items():
            if key == "header":
                value = traits.headers.get(pattern["name"].lower())
                pattern = pattern["pattern"]
            else:
                value = getattr(traits, key)
                value = value[:BODY_LIMIT] if key == "body" else value
            if not value or re.search(pattern, value, re.IGNORECASE) is None:
                ok = False
                break
        if ok:
            found.add(fp["name"])
    return found


@pytest.fixture(scope="module")
def db() -> FingerprintDB:
    return FingerprintDB.default()


# --- the shipped data ------------------------------------------------------------------------


@pytest.mark.parametrize("fingerprint", SHIPPED, ids=[fp["name"] for fp in SHIPPED])
def test_every_example_matches_its_fingerprint(db: FingerprintDB, fingerprint: dict[str, Any]) -> None:
    assert fingerprint["examples"]
    for example in fingerprint["examples"]:
        names = [m.name for m in db.matches(_traits(example))]
        assert fingerprint["name"] in names, example
        assert db.match(_traits(example)) is not None


def test_size_and_classes(db: FingerprintDB) -> None:
    counts = db.count_by_class()
    assert len(db) == 249  # the number README.md gives
    assert len(db) == len(SHIPPED) == sum(counts.values())
    assert set(counts) == set(DeviceClass)
    assert all(counts[c] > 0 for c in DeviceClass), counts
    assert len({fp["name"] for fp in SHIPPED}) == len(SHIPPED)


def test_every_fingerprint_names_a_source() -> None:
    assert all(fp["source"].strip() for fp in SHIPPED)


def test_default_is_cached() -> None:
    assert FingerprintDB.default() is FingerprintDB.default()


def test_every_class_has_its_own_label() -> None:
    labels = [c.label for c in DeviceClass]
    assert all(labels) and len(set(labels)) == len(labels)
    assert (DeviceClass.DVR.label, DeviceClass.TV.label, DeviceClass.EMBEDDED.label) == (
        "DVR/NVR", "TV or media device", "embedded web server")


# --- precision: ordinary servers are no appliances --------------------------------------------

ORDINARY: list[tuple[str, str]] = [
    ("server", "nginx"),
    ("server", "nginx/1.24.0 (Ubuntu)"),
    ("server", "nginx/1.18.0"),
    ("server", "openresty/1.21.4.1"),
    ("server", "Apache"),
    ("server", "Apache/2.4.57 (Debian)"),
    ("server", "Apache/2.4.41 (Ubuntu) OpenSSL/1.1.1f"),
    ("server", "Apache/2.2.15 (CentOS)"),
    ("server", "cloudflare"),
    ("server", "gws"),
    ("server", "GSE"),
    ("server", "ESF"),
    ("server", "sffe"),
    ("server", "Google Frontend"),
    ("server", "Microsoft-IIS/10.0"),
    ("server", "Microsoft-IIS/8.5"),
    ("server", "Microsoft-HTTPAPI/2.0"),
    ("server", "AmazonS3"),
    ("server", "awselb/2.0"),
    ("server", "CloudFront"),
    ("server", "Python/3.12 aiohttp/3.9"),
    ("server", "Werkzeug/3.0.1 Python/3.12.1"),
    ("server", "gunicorn"),
    ("server", "uvicorn"),
    ("server", "TornadoServer/6.4"),
    ("server", "Caddy"),
    ("server", "LiteSpeed"),
    ("server", "Kestrel"),
    ("server", "envoy"),
    ("server", "istio-envoy"),
    ("server", "Varnish"),
    ("server", "ATS/9.1.2"),
    ("server", "AkamaiGHost"),
    ("server", "Jetty(9.4.44.v20210927)"),
    ("server", "Apache-Coyote/1.1"),
    ("server", "GitHub.com"),
    ("server", "Vercel"),
    ("server", "Netlify"),
    ("server", "squid/3.5.27"),
    ("server", "lighttpd/1.4.59"),  # embedded software at most, never a device
    ("server", "Router"),  # a bare word is not enough
    ("realm", 'Basic realm="Restricted"'),
    ("realm", 'Basic realm="Restricted Area"'),
    ("realm", 'Basic realm="Authentication Required"'),
    ("realm", 'Basic realm="Login"'),
    ("realm", 'Basic realm="Admin"'),
    ("realm", 'Basic realm="Access to the staging site", charset="UTF-8"'),
    ("realm", 'Basic realm="Router"'),
    ("realm", 'Basic realm="DVR Login Portal for the marketing team"'),
    ("realm", 'Digest realm="testrealm@host.com", qop="auth,auth-int", '
              'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'),
    ("realm", 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'),
    ("realm", "Negotiate"),
    ("realm", "NTLM"),
    ("title", "3.12.1 Documentation"),
    ("title", "Welcome to nginx!"),
    ("title", "Apache2 Ubuntu Default Page: It works"),
    ("title", "IIS Windows Server"),
    ("title", "Sign in - Google Accounts"),
    ("title", "Google"),
    ("title", "YouTube"),
    ("title", "Wikipedia, the free encyclopedia"),
    ("title", "Router - Wikipedia"),
    ("title", "Best Wi-Fi router 2024: tested and reviewed"),
    ("title", "How to set up your IP camera at home"),
    ("title", "Network Camera buying guide"),
    ("title", "Hikvision DS-2CD2043G2 camera review"),
    ("title", "Synology DiskStation DS218 review"),
    ("title", "HP LaserJet Pro M404n review | PCMag"),
    ("title", "What is a NAS? Network attached storage explained"),
    ("title", "Login"),
    ("title", "Router Login"),
    ("title", "Log in to your account"),
    ("title", "Dashboard"),
    ("title", "404 Not Found"),
    ("body", "<html><head><title>Example Domain</title></head><body><p>This domain is for use in "
             "illustrative examples in documents.</p></body></html>"),
    ("body", "Hello world"),
    ("body", '{"error": "not found", "status": 404}'),
]


@pytest.mark.parametrize(("trait", "value"), ORDINARY, ids=[f"{t}:{v[:40]}" for t, v in ORDINARY])
def test_ordinary_responses_are_no_devices(db: FingerprintDB, trait: str, value: str) -> None:
    traits = _traits({trait: value})
    assert [m.name for m in db.matches(traits) if m.strength == "device"] == []
    found = db.match(traits)
    assert found is None or found.strength == "software"


def test_ordinary_list_is_long_enough() -> None:
    assert len(ORDINARY) >= 40


def test_software_match_stays_software(db: FingerprintDB) -> None:
    found = db.match(_traits({"server": "lighttpd/1.4.59"}))
    assert found is not None
    assert (found.strength, found.device_class, found.trait) == ("software", DeviceClass.EMBEDDED, "server")


# --- the screened search agrees with a naive one ---------------------------------------------


def _variants(value: str) -> list[str]:
    """A value as sent, in other cases, padded, and with letters re.IGNORECASE folds to ASCII."""
    folded = value.replace("s", "\u017f").replace("k", "\u212a").replace("i", "\u0131")
    return [value, value.upper(), value.lower(), value.swapcase(), f"x {value}", f"{value} x",
            folded, f"é {value}", value[1:], value[:-1]]


def _corpus() -> list[ResponseTraits]:
    out: list[ResponseTraits] = []
    examples = [ex for fp in SHIPPED for ex in fp["examples"]] + [{t: v} for t, v in ORDINARY]
    for example in examples:
        for i in range(len(_variants("probe"))):
            changed = {k: (_variants(v)[i] if k in TRAITS else v) for k, v in example.items()}
            out.append(_traits(changed))
    return out


def test_screened_search_agrees_with_plain_search(db: FingerprintDB) -> None:
    corpus = _corpus()
    assert len(corpus) > 2000
    for traits in corpus:
        assert {m.name for m in db.matches(traits)} == _plain_matches(traits), traits


# --- match results ------------------------------------------------------------------------------


def test_hikvision_response(db: FingerprintDB) -> None:
    traits = traits_from([("Server", "Hikvision-Webs"), ("Content-Type", "text/html")],
                         "<html><head><title>index</title></head></html>")
    found = db.match(traits)
    assert found is not None
    assert found.name == "Hikvision camera/DVR web server"
    assert (found.device_class, found.strength, found.trait, found.evidence) == (
        DeviceClass.CAMERA, "device", "server", "Hikvision-Webs")
    assert "recog" in found.source


def test_device_beats_software(db: FingerprintDB) -> None:
    traits = _traits({"server": "GoAhead-Webs", "realm": 'Basic realm="CameraServer"'})
    names = [m.name for m in db.matches(traits)]
    assert names[0] == "AirLink SkyIPCam (GoAhead, CameraServer realm)"
    assert "GoAhead embedded web server" in names
    assert db.match(traits) == db.matches(traits)[0]
    alone = db.match(_traits({"server": "GoAhead-Webs"}))
    assert alone is not None and alone.strength == "software"


def test_body_evidence_is_the_matched_text(db: FingerprintDB) -> None:
    body = "x" * 500 + "TypeError: Object #<ServerResponse> has no method 'send'" + "y" * 500
    found = db.match(_traits({"body": body}))
    assert found is not None
    assert found.trait == "body"
    assert found.evidence == "TypeError: Object #<ServerResponse> has no method 'send'"


def test_body_beyond_the_limit_is_not_searched(db: FingerprintDB) -> None:
    body = "x" * BODY_LIMIT + "TypeError: Object #<ServerResponse> has no method 'send'"
    assert db.match(_traits({"body": body})) is None
    assert db.match(traits_from([], body)) is None


def test_evidence_is_cut_to_120_characters(db: FingerprintDB) -> None:
    server = "HP HTTP Server; HP Officejet 6500 E709n - CB057A; Serial Number: " + "9" * 200
    found = db.match(_traits({"server": server}))
    assert found is not None
    assert found.evidence == server[:120]


def test_nothing_to_match(db: FingerprintDB) -> None:
    assert db.match(ResponseTraits(None, None, None, {}, "")) is None
    assert db.matches(ResponseTraits("", "", "", {}, "")) == []


# --- loading: files, directories, headers, errors -----------------------------------------------

GOOD = """\
version: 1
fingerprints:
  - name: {name}
    class: camera
    strength: device
    source: test
    match:
      server: '^{server}$'
    examples:
      - server: {server}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_files_and_directories_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "more"
    folder.mkdir()
    _write(folder / "b.yaml", GOOD.format(name="B", server="Same"))
    _write(folder / "a.yaml", GOOD.format(name="A", server="Same"))
    _write(folder / "notes.txt", "not loaded")
    single = _write(tmp_path / "c.yaml", GOOD.format(name="C", server="Other"))
    db = FingerprintDB.load([folder, single])
    assert len(db) == 3
    assert [m.name for m in db.matches(_traits({"server": "same"}))] == ["A", "B"]
    assert db.count_by_class()[DeviceClass.CAMERA] == 3


def test_header_trait(tmp_path: Path) -> None:
    text = """\
version: 1
fingerprints:
  - name: Powered by gadget
    class: smart_appliance
    strength: device
    source: test
    match:
      header: {name: X-Powered-By, pattern: '^GadgetOS/\\d'}
    examples:
      - header: {name: x-powered-by, value: GadgetOS/2.1}
"""
    db = FingerprintDB.load([_write(tmp_path / "h.yaml", text)])
    found = db.match(traits_from([("X-POWERED-BY", "GadgetOS/3")], ""))
    assert found is not None
    assert (found.trait, found.evidence) == ("header:x-powered-by", "GadgetOS/3")
    assert db.match(traits_from([("X-Other", "GadgetOS/3")], "")) is None


def _problems(paths: list[Path]) -> list[str]:
    with pytest.raises(InputError) as caught:
        FingerprintDB.load(paths)
    return [str(p) for p in caught.value.problems]


def _one_fingerprint(**changes: str) -> str:
    """A one-fingerprint file with some lines replaced (key -> full new line text)."""
    lines = {
        "name": "  - name: Thing",
        "class": "    class: camera",
        "strength": "    strength: device",
        "source": "    source: test",
        "match": "    match:\n      server: '^Thing$'",
        "examples": "    examples:\n      - server: Thing",
    }
    lines.update(changes)
    return "version: 1\nfingerprints:\n" + "\n".join(lines.values()) + "\n"


# Lines of _one_fingerprint: 3 name, 4 class, 5 strength, 6 source, 7 match, 8 server, 9 examples,
# 10 the example.
@pytest.mark.parametrize(("changes", "expected"), [
    ({"match": "    match:\n      server: '^Thing($'"},
     ":8: fingerprints[0].match.server: not a valid regular expression"),
    ({"examples": "    examples:\n      - server: Other"},
     ":10: fingerprints[0].examples[0]: not matched by this fingerprint: server 'Other' does not match"),
    ({"examples": "    examples:\n      - title: Thing"},
     ":10: fingerprints[0].examples[0]: not matched by this fingerprint: the example gives no server"),
    ({"class": "    class: fridge"},
     ":4: fingerprints[0].class: must be one of router, camera, dvr, nas, tv, printer, smart_appliance"),
    ({"strength": "    strength: strong"}, ":5: fingerprints[0].strength: must be one of device, software"),
    ({"source": "    source: test\n    colour: red"},
     ":7: fingerprints[0].colour: unknown key (allowed here: name, class, strength"),
    ({"source": "    sauce: test"}, ":6: fingerprints[0].sauce: unknown key; did you mean 'source'?"),
    ({"match": "    match:\n      server: '(?i)^Thing$'"},
     ":8: fingerprints[0].match.server: cannot be combined"),
    ({"match": "    match:\n      server: '^(T)\\1hing$'"},
     ":8: fingerprints[0].match.server: backreferences and named groups are not allowed"),
    ({"match": "    match:\n      server: 'Thing|'"},
     ":8: fingerprints[0].match.server: matches the empty text"),
    ({"match": "    match: {}"}, ":7: fingerprints[0].match: give at least one of server"),
    ({"examples": "    examples: []"}, ":9: fingerprints[0].examples: list at least one example"),
    ({"name": "  - name: [Thing"}, ":4: not valid YAML"),
])
def test_load_errors_name_file_line_and_field(tmp_path: Path, changes: dict[str, str], expected: str) -> None:
    path = _write(tmp_path / "bad.yaml", _one_fingerprint(**changes))
    problems = _problems([path])
    assert any(p.startswith(str(path) + expected) for p in problems), problems


def test_duplicate_name_across_files(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.yaml", GOOD.format(name="Twin", server="One"))
    second = _write(tmp_path / "b.yaml", "# another file\n" + GOOD.format(name="Twin", server="Two"))
    problems = _problems([tmp_path])
    assert problems == [f"{second}:4: fingerprints[0].name: duplicate fingerprint name 'Twin' "
                        f"(first at {first}:3)"]


def test_every_problem_of_every_file_is_reported(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", _one_fingerprint(**{"class": "    class: fridge",
                                                    "examples": "    examples:\n      - server: No"}))
    _write(tmp_path / "b.yaml", "version: 1\nfingerprints: [\n")
    _write(tmp_path / "c.yaml", GOOD.format(name="Fine", server="Fine"))
    problems = _problems([tmp_path])
    assert [(Path(p.split(":")[0]).name, p.split(":")[1]) for p in problems] == [
        ("a.yaml", "4"), ("a.yaml", "10"), ("b.yaml", "3")]


@pytest.mark.parametrize(("text", "expected"), [
    ("", ":1: empty fingerprint file"),
    ("- a\n- b\n", ":1: a fingerprint file must be a mapping of keys"),
    ("version: 2\nfingerprints: []\n", ":1: version: must be 1"),
    ("version: 1\nfingerprints: []\n", ":2: fingerprints: list at least one fingerprint"),
])
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path / "odd.yaml", text)
    problems = _problems([path])
    assert problems[0].startswith(str(path) + expected), problems


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    problems = _problems([tmp_path / "nope.yaml", empty])
    assert problems == [f"{empty}: no fingerprint files (*.yaml) here",
                        f"{tmp_path / 'nope.yaml'}: cannot read the file: No such file or directory"]


# --- traits of a response -----------------------------------------------------------------------


@pytest.mark.parametrize(("html", "title"), [
    ("<html><head><title>Router Setup</title></head></html>", "Router Setup"),
    ("<title>AT&amp;T U115: &#39;Austin&#39;</title>", "AT&T U115: 'Austin'"),
    ("<title>DS218&nbsp;-&nbsp;Synology&nbsp;DiskStation</title>", "DS218 - Synology DiskStation"),
    ("<title>\n   NETSurveillance \t\n  WEB  </title>", "NETSurveillance WEB"),
    ("<TITLE>Web Client for DVR</TITLE>", "Web Client for DVR"),
    ('<title id="t" class="x">FRITZ!Box</title >', "FRITZ!Box"),
    ("<title>first</title><title>second</title>", "first"),
    ("<title></title>", ""),
    ("<html><head></head><body>no title here</body></html>", None),
    ("<titlebar>not a title</titlebar>", None),
    ("<title>never closed", None),
    ("", None),
    (" " * BODY_LIMIT + "<title>too late</title>", None),
])
def test_html_title(html: str, title: str | None) -> None:
    assert html_title(html) == title


def test_traits_from_headers_and_body() -> None:
    traits = traits_from(
        [("Server", "uc-httpd 1.0.0"), ("WWW-Authenticate", 'Basic realm="DVR"'),
         ("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("Content-Type", "text/html; charset=utf-8")],
        "<title>NETSurveillance WEB</title>" + "z" * 10_000)
    assert traits.server == "uc-httpd 1.0.0"
    assert traits.realm == 'Basic realm="DVR"'
    assert traits.title == "NETSurveillance WEB"
    assert traits.headers["set-cookie"] == "a=1, b=2"
    assert traits.headers["content-type"] == "text/html; charset=utf-8"
    assert len(traits.body) == BODY_LIMIT


@pytest.mark.parametrize(("content_type", "has_title"), [
    (None, True), ("text/html", True), ("application/xhtml+xml", True),
    ("application/rss+xml", False), ("application/json", False), ("text/xml", False),
])
def test_title_only_from_html(content_type: str | None, has_title: bool) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    traits = traits_from(headers, "<title>NAS</title>")
    assert (traits.title == "NAS") is has_title


def test_traits_of_an_empty_response() -> None:
    traits = traits_from([], "")
    assert traits == ResponseTraits(None, None, None, {}, "")
