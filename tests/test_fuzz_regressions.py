"""Every crash the fuzzer (fuzz/run.py) found, as a test that fails while the crash is there.

Each finding is written twice: as a plain test calling the parser's public entry point
with the minimised input, and as the saved input ``fuzz/corpus/<target>/crash-*`` that
its fuzz target replays (`KNOWN_CRASHES`). Until the parser's owner fixes it, both are
marked ``xfail(strict=True)`` with the bug in the reason; the fix makes them pass, which
strict xfail turns into a failure, so the fix also removes the marks and the entry in
`KNOWN_CRASHES` (the saved input then stays as an ordinary corpus input).

A crash is an exception the entry point does not document (its callers catch
`URLError`, `TokenError`, `InputError`; anything else reaches the proxy's hook or the
CLI as a traceback), or a broken promise of the module (`fuzz.targets.Broken`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

from clickguard.errors import InputError, PolicyError, TokenError, URLError
from clickguard.inspection.fingerprints import FingerprintDB
from clickguard.inspection.navigation import find_navigations
from clickguard.intel.parsers import parse_feed
from clickguard.mail.home_line import Sign
from clickguard.mail.links import ClickContext, decode, make_click_link, verify_click_link
from clickguard.mail.rewrite import RewriteSettings, rewrite_html, rewrite_message, rewrite_text
from clickguard.policy.model import parse_policy
from clickguard.urls import normalize_host, normalize_url
from fuzz.targets import TARGETS
from tests.harness import REPO

CORPUS = REPO / "fuzz" / "corpus"
KEY = bytes(range(32))
CLICK_HOST = "clickguard.local"
SETTINGS = RewriteSettings(CLICK_HOST, KEY)
CONTEXT = ClickContext("198.51.100.7", None, None, "none", 1_796_000_000 // 60 * 60, Sign(0))

HANG_SECONDS = 3  # the inputs here take milliseconds; a hang fails the test instead of stopping the run


class Hung(Exception):
    """The parser was still running when the guard went off."""


@contextmanager
def ends_within(seconds: int) -> Iterator[None]:
    """Raise Hung in the block if it runs past seconds (the readers are Python loops: the alarm gets in)."""
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# (target, saved input) -> the bug it shows.
KNOWN_CRASHES: dict[tuple[str, str], str] = {}  # none open: every crash found so far is fixed


@pytest.mark.parametrize(("name", "file"), [
    pytest.param(name, file, id=f"{name}/{file}", marks=pytest.mark.xfail(strict=True, reason=reason))
    for (name, file), reason in KNOWN_CRASHES.items()])
def test_saved_crash_gets_an_answer_within_its_bounds(name: str, file: str) -> None:
    with ends_within(HANG_SECONDS):
        TARGETS[name].check((CORPUS / name / file).read_bytes())


def test_every_saved_crash_is_known_and_every_known_crash_saved() -> None:
    saved = {(path.parent.name, path.name) for path in CORPUS.glob("*/crash-*")}
    assert sorted(saved - KNOWN_CRASHES.keys()) == [], "saved crashes without a test here"
    assert sorted(KNOWN_CRASHES.keys() - saved) == [], "known crashes whose input is not saved"


# --- the same bugs, through the public entry points -----------------------------------------------

def test_a_click_link_with_a_huge_version_is_refused_as_a_token_error() -> None:
    link = f"https://{CLICK_HOST}/v{'9' * 5000}/AQAAAAAAAAAAAAAAAAAAAAAAAAAA/http://x.example/"
    with pytest.raises(TokenError):
        verify_click_link(link, KEY, click_host=CLICK_HOST)
    with pytest.raises(TokenError):
        decode(link, KEY, CLICK_HOST)


def test_decode_reads_a_link_with_an_undecodable_byte() -> None:
    # `clickguard decode` gets its argument from argv, where Python keeps undecodable bytes as surrogates.
    with pytest.raises((TokenError, URLError)):
        decode("http://x.example/=3D\udcff", KEY, CLICK_HOST)


def test_a_webmail_page_that_is_not_utf8_is_rewritten() -> None:
    # mitmproxy's get_text(strict=False) keeps the bytes that are not UTF-8 as lone surrogates.
    page = '<a href="http://google.example/=3D\udcff">x</a><a href="http://evil.example/">y</a>'
    html, count = rewrite_html(page, CONTEXT, SETTINGS)
    assert count == 2 and 'href="http://' not in html  # both wrapped (the first as a browser reads it)


def test_a_link_with_an_undecodable_byte_is_wrapped_as_the_browser_reads_it_and_the_others_too() -> None:
    # Left as it is, the link would be followed unchecked: it is wrapped as the page served in UTF-8 reads.
    page = '<a href="http://x.example/\udcff">x</a> <a href="http://evil.example/">y</a>'
    html, count = rewrite_html(page, CONTEXT, SETTINGS)
    assert count == 2 and "\udcff" not in html and "/http://x.example/%EF%BF%BD" in html
    text, count = rewrite_text("see http://x.example/\udcff and http://evil.example/", CONTEXT, SETTINGS)
    assert count == 2 and "\udcff" not in text


def test_a_script_starting_with_an_arrow_is_read_to_its_end() -> None:
    with ends_within(HANG_SECONDS):
        found = find_navigations(status=200, headers=[], body=b"<script>=>location=1</script>",
                                 base_url="http://camera.example/", content_type="text/html")
    assert found  # the sink is found, or the reading is reported unread: never silence


def test_a_message_whose_charset_holds_a_nul_is_left_alone_with_a_reason() -> None:
    raw = b'Content-Type: text/plain; charset="a\x00b"\n\nsee http://evil.example/\n'
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert result.data == raw and result.error


def test_a_multipart_with_a_non_ascii_boundary_is_left_alone_with_a_reason() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=\xdf\n\n--\xdf\n\nhttp://evil.example/\n--\xdf--\n"
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert result.data == raw and result.error


def test_a_deeply_nested_drop_line_is_skipped_and_the_rest_kept() -> None:
    text = '{"cidr":"198.51.100.0/24"}\n{"a":' + "[" * 3000 + "\n"
    parsed = parse_feed("spamhaus_drop", text)
    assert [entry.value for entry in parsed.all()] == ["198.51.100.0/24"]
    assert [skipped.line for skipped in parsed.skipped] == [2]


def test_a_banner_line_with_a_lone_carriage_return_does_not_stop_the_feed() -> None:
    text = '# abuse.ch URLhaus\r export\n"1","2026-01-27","http://198.51.100.7/x","online","","x","elf"\n'
    parsed = parse_feed("urlhaus_csv", text)
    assert "http://198.51.100.7/x" in [entry.value for entry in parsed.all()]


def test_a_deeply_nested_policy_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        parse_policy("version: 1\nallow: " + "[" * 1000, filename="policy.yaml", base_dir=Path("."))


def test_a_deeply_nested_fingerprint_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("version: 1\nfingerprints: " + "[" * 1000)
    with pytest.raises(InputError):
        FingerprintDB.load([path])


@pytest.mark.parametrize("raw", ["http://../", "http://1.2.3.4../", "http://evil.example../x"])
def test_a_normalised_url_normalises_to_itself(raw: str) -> None:
    try:
        found = normalize_url(raw)
    except URLError:
        return  # refusing the host is a fix too
    assert normalize_url(found.url) == found


def test_a_domain_feed_entry_is_in_the_form_requests_are_looked_up_in() -> None:
    parsed = parse_feed("domains", "evil.example..\n")
    assert all(normalize_host(entry.value) == entry.value for entry in parsed.all())


def test_a_click_link_to_a_target_holding_http_colon_slash_verifies() -> None:
    target = "https://archive.example/save?u=http:/old.example/"
    link = make_click_link(target, CONTEXT, KEY, click_host=CLICK_HOST)
    assert verify_click_link(link, KEY, click_host=CLICK_HOST) == (target, CONTEXT)


@pytest.mark.parametrize("target", ["http://./", "https://../x"])
def test_a_click_link_to_a_dot_host_verifies(target: str) -> None:
    link = make_click_link(target, CONTEXT, KEY, click_host=CLICK_HOST)
    assert verify_click_link(link, KEY, click_host=CLICK_HOST) == (target, CONTEXT)


def test_a_unicode_host_too_long_once_encoded_is_refused_not_normalised_to_an_unreadable_url() -> None:
    """Found by `make fuzz` (url): 600 characters of Unicode labels encode to 1,440, past idna's 1,024."""
    host = ".".join(["\u0467oph"] * 120)  # each label "ѧoph" encodes to "xn--oph-gjd"
    with pytest.raises(URLError, match="too long once encoded"):
        normalize_url(f"https://{host}/")
    shorter = normalize_url("https://" + ".".join(["\u0467oph"] * 80) + "/")  # 960 once encoded
    assert normalize_url(shorter.url) == shorter
