"""Click links (sign, verify, every way to break one) and foreign wrappers undone."""

from __future__ import annotations

import base64
import csv
import functools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from clickguard.errors import TokenError, URLError
from clickguard.mail.links import (
    ClickContext,
    Decoded,
    Unwrapped,
    click_context,
    decode,
    hash_message_id,
    hash_recipient,
    is_click_link,
    make_click_link,
    unwrap,
    verify_click_link,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
HOST = "click.corp.example"
REWRITTEN_AT = 1_700_000_040  # a whole minute
HASHED = click_context(
    key=KEY,
    origin_ip="203.0.113.9",
    message_id="<20240101.abc@mail.example>",
    recipient="Ana.Silva@Corp.example",
    recipient_mode="hashed",
    rewritten_at=REWRITTEN_AT,
)
CONTEXTS = [
    HASHED,
    ClickContext(None, None, None, "none", REWRITTEN_AT),
    ClickContext("2001:db8::1", hash_message_id("x@y"), "ana@corp.example", "plain", 0),
    ClickContext("192.0.2.1", None, "jürgen@bücher.example", "plain", REWRITTEN_AT),
    ClickContext(None, hash_message_id("m@x"), hash_recipient("bo@corp.example", KEY), "hashed",
                 REWRITTEN_AT),
]
TARGETS = [
    "https://example.com",
    "http://203.0.113.9:8080/bins/mozi.m",
    "https://www.kernel.org/doc/html/latest/process/4.Coding.html#regressions",
    "https://example.com/search?q=a%20b&u=https%3A%2F%2Fx.example%2F&next=/a?b#top",
    "https://example.com/a b/\"quoted\"/<tag>/{x}/^/`/'?q='1 2'#frag#more",
    "https://bücher.example/straße?q=日本",
    "https://example.com/a/../b/./c/%2e%2E/d?x=/../",
    "https://example.com/%23not-a-fragment/%25/%2523#real",
    "https://example.com/back\\slash\ttab",
    "https://example.com/x?",
    "https://example.com//double//slashes?a=%zz&b=%",
    "HTTPS://EXAMPLE.COM/UPPER",
]


def _link(target: str = TARGETS[3], context: ClickContext = HASHED) -> str:
    return make_click_link(target, context, KEY, click_host=HOST)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("target", TARGETS)
def test_round_trip(target: str, context: ClickContext) -> None:
    link = _link(target, context)
    assert verify_click_link(link, KEY, click_host=HOST) == (target, context)
    assert verify_click_link(link, KEY) == (target, context)  # any host, when none is named
    assert is_click_link(link, HOST)


# Each target's click link as a browser reads it: `new URL(link).href` (WHATWG URL standard; read
# with Node 20's parser) is the link itself, character for character. After the token comes:
AS_A_BROWSER_READS_IT = [
    "https://example.com",
    "http://203.0.113.9:8080/bins/mozi.m",
    "https://www.kernel.org/doc/html/latest/process/4.Coding.html%23regressions",
    "https://example.com/search?q=a%20b&u=https%3A%2F%2Fx.example%2F&next=/a?b%23top",
    "https://example.com/a%20b/%22quoted%22/%3Ctag%3E/%7Bx%7D/%5E/%60/%27?q=%271%202%27%23frag%23more",
    "https://b%C3%BCcher.example/stra%C3%9Fe?q=%E6%97%A5%E6%9C%AC",
    "https://example.com/a%2F../b%2F./c%2F%2e%2E/d?x=/../",
    "https://example.com/%2523not-a-fragment/%2525/%252523%23real",
    "https://example.com/back%5Cslash%09tab",
    "https://example.com/x?",
    "https://example.com//double//slashes?a=%zz&b=%",
    "HTTPS://EXAMPLE.COM/UPPER",
]


@pytest.mark.parametrize(("target", "href"), list(zip(TARGETS, AS_A_BROWSER_READS_IT, strict=True)))
def test_link_survives_a_browser(target: str, href: str) -> None:
    """A browser's URL parser leaves the link as it is: what the browser requests is what was signed."""
    link = _link(target)
    assert re.fullmatch(r"https://click\.corp\.example/v1/[A-Za-z0-9_-]+/" + re.escape(href), link)
    assert "#" not in link
    assert verify_click_link(link, KEY, click_host=HOST)[0] == target


@pytest.mark.parametrize(
    "target",
    [
        "https://example.com/path/page.html?a=1&b=%2F%20",
        "http://203.0.113.9:8080/i",
        "https://www.kernel.org/doc/html/latest/process/4.Coding.html",
    ],
)
def test_plain_targets_stay_readable(target: str) -> None:
    assert _link(target).endswith("/" + target)


def test_fragment_is_kept_in_the_request() -> None:
    assert _link("https://example.com/p?q=1#sec-2").endswith("/https://example.com/p?q=1%23sec-2")


def test_token_size() -> None:
    """IPv4 origin, Message-ID hash and hashed recipient: 42 bytes, 56 characters."""
    token = _link().split("/")[4]
    assert len(token) == 56
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_rewrite_time_is_cut_to_the_minute() -> None:
    context = HASHED._replace(rewritten_at=REWRITTEN_AT + 59)
    assert verify_click_link(_link(context=context), KEY)[1].rewritten_at == REWRITTEN_AT


@pytest.mark.parametrize(
    "link",
    [
        _link(),
        _link(TARGETS[5], CONTEXTS[2]),
        _link(TARGETS[6], CONTEXTS[3]),
        _link(TARGETS[7], CONTEXTS[1]),
    ],
)
def test_every_changed_character_is_refused(link: str) -> None:
    path_start = link.index("/v1/")
    for index, char in enumerate(link):
        replacements = {"x" if char != "x" else "y", "%" if char != "%" else "A", "/" if char != "/" else "_"}
        if index >= path_start and char.swapcase() != char:
            replacements.add(char.swapcase())  # escapes and the token are case-sensitive
        for replacement in replacements:
            changed = link[:index] + replacement + link[index + 1:]
            with pytest.raises(TokenError):
                verify_click_link(changed, KEY, click_host=HOST)


@pytest.mark.parametrize("link", [_link(), _link(TARGETS[4], CONTEXTS[3])])
def test_every_truncation_is_refused(link: str) -> None:
    for length in range(len(link)):
        with pytest.raises(TokenError):
            verify_click_link(link[:length], KEY, click_host=HOST)


@pytest.mark.parametrize("context", CONTEXTS)
def test_changed_context_with_the_old_mac_is_refused(context: ClickContext) -> None:
    """Re-signing nothing: another context's token body with this link's MAC does not verify."""
    link = _link(context=context)
    other = _link(context=context._replace(rewritten_at=context.rewritten_at + 60))
    token, other_token = link.split("/")[4], other.split("/")[4]
    spliced = other_token[:-22] + token[-22:]  # the last 22 characters are the MAC's
    with pytest.raises(TokenError):
        verify_click_link(link.replace(token, spliced), KEY)


@pytest.mark.parametrize(
    ("link", "key", "reason"),
    [
        (_link(), OTHER_KEY, "tampered"),
        (_link().replace("u=https", "u=http"), KEY, "tampered"),
        (_link().replace("/v1/", "/v2/"), KEY, "wrong version"),
        (_link().rsplit("/https:", 1)[0], KEY, "truncated"),
        (_link().rsplit("/https:", 1)[0] + "/", KEY, "truncated"),
        ("https://click.corp.example/v1/AAAA/https://example.com", KEY, "truncated"),
        (_link().replace(HOST, "click.evil.example"), KEY, "not a click link"),
        ("https://example.com/page", KEY, "not a click link"),
        (_link().replace("https://click", "ftp://click"), KEY, "not a click link"),
    ],
)
def test_refusals_say_why(link: str, key: bytes, reason: str) -> None:
    with pytest.raises(TokenError, match=reason) as caught:
        verify_click_link(link, key, click_host=HOST)
    assert "\n" not in str(caught.value)


def test_merged_slashes_after_the_target_scheme_are_accepted() -> None:
    link = _link("https://example.com/x")
    merged = link.replace("/https://", "/https:/")
    assert verify_click_link(merged, KEY, click_host=HOST)[0] == "https://example.com/x"


def test_click_host_port_and_case() -> None:
    link = _link()
    assert verify_click_link(link.replace(HOST, HOST.upper() + ":443"), KEY, click_host=HOST)
    assert verify_click_link(link, KEY, click_host=HOST + ":443")


@pytest.mark.parametrize(
    "target", ["mailto:ana@corp.example", "javascript:alert(1)", "//example.com/x", "ftp://x/", "https://x/\ud800"]
)
def test_only_http_targets_are_wrapped(target: str) -> None:
    with pytest.raises(URLError):
        _link(target)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (_link(), True),
        (_link().replace(HOST, "CLICK.corp.example"), True),
        (_link().replace(HOST, "click.corp.example.evil.example"), False),
        (_link().replace(HOST, f"{HOST}@evil.example"), False),
        (f"https://{HOST}/static/logo.png", False),
        (f"https://{HOST}/v1/", False),
        ("https://example.com/v1/abc/https://x", False),
    ],
)
def test_is_click_link(url: str, expected: bool) -> None:
    assert is_click_link(url, HOST) is expected


@pytest.mark.parametrize(
    ("function", "first", "second"),
    [
        (functools.partial(hash_recipient, key=KEY), "Ana.Silva@Corp.Example", " ana.silva@corp.example "),
        (hash_message_id, "<20240101.abc@mail.example>", "20240101.abc@mail.example"),
        (hash_message_id, " <a@b> ", "<a@b>"),
    ],
)
def test_hashes_are_stable(function: Callable[[str], str], first: str, second: str) -> None:
    assert function(first) == function(second)
    assert len(function(first)) == 16 and function(first) == function(first).lower()


def test_hashes_have_fixed_values() -> None:
    """Audit records and reports compare these across versions: they must never change."""
    assert hash_recipient("ana@corp.example", KEY) == "3a9b51275aa360a2"  # HMAC-SHA256, first 8 bytes
    assert hash_message_id("<a@b>") == "7508d8b5018ea640"


def test_recipient_hash_needs_the_key() -> None:
    """Without the key, a link's recipient hash cannot be tested against a list of addresses."""
    assert hash_recipient("ana@corp.example", KEY) != hash_recipient("ana@corp.example", OTHER_KEY)
    assert hash_recipient("ana@corp.example", KEY) != "a404374131edec0d"  # the plain SHA-256


# Foreign wrappers ----------------------------------------------------------------------------


def _vectors(feeds_dir: Path) -> list[tuple[str, str, str]]:
    with (feeds_dir.parent / "vectors" / "wrapped_urls.tsv").open(newline="") as f:
        return [(row["wrapped"], row["target"], row["vendor"]) for row in csv.DictReader(f, delimiter="\t")]


def test_shared_vectors_decode(feeds_dir: Path) -> None:
    vectors = _vectors(feeds_dir)
    assert vectors
    for wrapped, target, vendor in vectors:
        result = unwrap(wrapped)
        assert result.layers == (vendor,), wrapped
        if target.startswith("host:"):
            assert result == Unwrapped(None, target.removeprefix("host:"), (vendor,))
        else:
            assert result == Unwrapped(target, None, (vendor,))


def _v3(template: str, characters: str) -> str:
    """A Proofpoint v3 link in the documented format."""
    encoded = base64.urlsafe_b64encode(characters.encode()).decode().rstrip("=")
    return f"https://urldefense.com/v3/__{template}__;{encoded}!!AbCdEf!signature$"


PP_V2_KERNEL = (
    "https://urldefense.proofpoint.com/v2/url?u=https-3A__www.kernel.org_doc_html_latest_process_"
    "4.Coding.html-23regressions&d=DwIFaQ&c=7dfBJ8c&r=P4xb2_7b&m=j-KHqu&s=8LzYkG&e="
)
KERNEL = "https://www.kernel.org/doc/html/latest/process/4.Coding.html#regressions"
SAFELINKS_QP = (
    "https://nam02.safelinks.protection.outlook.com/?url=3Dhttps%3A%2F%2Fdatatracker.ie=\r\n"
    "tf.org%2Fdoc%2Fhtml%2Frfc6238&amp;data=3D04%7C01%7Cx%40y.org%7C0&sdata=3DiBZ%3D&reserved=3D0"
)


@pytest.mark.parametrize(
    ("wrapped", "expected"),
    [
        # Quoted-printable damage: "=3D", soft line breaks (CRLF and LF), "=2E".
        (SAFELINKS_QP, Unwrapped("https://datatracker.ietf.org/doc/html/rfc6238", None, ("safelinks",))),
        (
            "https://eur01.safelinks.protection.outlook.com/?url=3Dhttps%3A%2F%2Fexample=2Ecom%2F=\n"
            "a&data=3D05&reserved=3D0",
            Unwrapped("https://example.com/a", None, ("safelinks",)),
        ),
        # Safe Links around Proofpoint v2.
        (
            "https://nam06.safelinks.protection.outlook.com/?url="
            + PP_V2_KERNEL.replace("%", "%25").replace(":", "%3A").replace("/", "%2F").replace("?", "%3F")
            .replace("&", "%26").replace("=", "%3D")
            + "&data=02%7C01&sdata=abc%3D&reserved=0",
            Unwrapped(KERNEL, None, ("safelinks", "proofpoint-v2")),
        ),
        # Proofpoint v3: "*", "**A" (2), "**B" (3), "**_" (65), non-ASCII substitutions.
        (
            _v3("https://example.com/**Ax*y", "ÄÖé"),
            Unwrapped("https://example.com/ÄÖxéy", None, ("proofpoint-v3",)),
        ),
        (
            "https://urldefense.com/v3/__https://example.com/**Bx*y?q=1__;w4TDlsOcw6k!!D0Snjz!VcBcfv$",
            Unwrapped("https://example.com/ÄÖÜxéy?q=1", None, ("proofpoint-v3",)),
        ),
        (
            _v3("https://example.com/**_*?a=b*c", "z" * 65 + "!&"),
            Unwrapped("https://example.com/" + "z" * 65 + "!?a=b&c", None, ("proofpoint-v3",)),
        ),
        (
            _v3("https://list.example/a?b=c*d=__e", "&"),
            Unwrapped("https://list.example/a?b=c&d=__e", None, ("proofpoint-v3",)),
        ),
        # Proofpoint v1.
        (
            "https://urldefense.proofpoint.com/v1/url?u=http://www.bouncycastle.org/&k=oIvRg1%2BdGAg%3D%0A&s=d35",
            Unwrapped("http://www.bouncycastle.org/", None, ("proofpoint-v1",)),
        ),
        # Google, "q" and "url".
        (
            "https://www.google.com/url?q=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1&sa=D&ust=1&usg=AOv",
            Unwrapped("https://example.com/a?b=1", None, ("google",)),
        ),
        (
            "https://www.google.co.uk/url?sa=t&rct=j&q=&esrc=s&url=https%3A%2F%2Fexample.org%2F&usg=AOv",
            Unwrapped("https://example.org/", None, ("google",)),
        ),
        # Chains: Google around Safe Links around Mimecast (only the host is left).
        (
            "https://www.google.com/url?q=https%3A%2F%2Fnam06.safelinks.protection.outlook.com%2F%3Furl%3D"
            "https%253A%252F%252Fprotect-eu.mimecast.com%252Fs%252FabCD%253Fdomain%253DEvil.Example"
            "%26data%3D1&sa=D",
            Unwrapped(None, "evil.example", ("google", "safelinks", "mimecast")),
        ),
        # Not wrapped, including look-alike hosts and paths: kept as they are.
        ("https://example.com/url?q=https://x", Unwrapped("https://example.com/url?q=https://x", None, ())),
        (
            "https://safelinks.protection.outlook.com.evil.example/?url=https%3A%2F%2Fx",
            Unwrapped("https://safelinks.protection.outlook.com.evil.example/?url=https%3A%2F%2Fx", None, ()),
        ),
        (
            "https://notgoogle.com/url?q=https%3A%2F%2Fx",
            Unwrapped("https://notgoogle.com/url?q=https%3A%2F%2Fx", None, ()),
        ),
        ("https://www.google.com/search?q=a", Unwrapped("https://www.google.com/search?q=a", None, ())),
        ("https://example.com/?a=3D&b=x", Unwrapped("https://example.com/?a=3D&b=x", None, ())),
        ("mailto:ana@corp.example", Unwrapped("mailto:ana@corp.example", None, ())),
        ("not a url", Unwrapped("not a url", None, ())),
    ],
)
def test_unwrap(wrapped: str, expected: Unwrapped) -> None:
    assert unwrap(wrapped) == expected


@pytest.mark.parametrize(
    ("wrapped", "reason"),
    [
        ("https://nam06.safelinks.protection.outlook.com/?data=1&reserved=0", "no url parameter"),
        ("https://urldefense.proofpoint.com/v2/url?d=DwIFaQ&e=", "no u parameter"),
        ("https://urldefense.proofpoint.com/v1/url?u=&k=1", "no u parameter"),
        ("https://urldefense.com/v3/__https://example.com__", "no __;"),
        (_v3("https://example.com/*", ""), "more \\* than"),
        (_v3("https://example.com/*", "ab"), "unused"),
        (_v3("https://example.com/**", "ab"), "run"),
        (_v3("https://example.com/**!", "ab"), "run"),
        ("https://urldefense.com/v3/__https://example.com/*__;w!!x!y$", "undecodable"),
        ("https://urldefense.com/v3/__https://example.com/*__;_w!!x!y$", "undecodable"),
        ("https://protect-us.mimecast.com/s/yj15CXDwEpFqyG4H6Jxp2", "no domain parameter"),
        ("https://protect-us.mimecast.com/s/yj15?domain=bad%20host", "forbidden"),
        ("https://www.google.com/url?q=%2Fsearch%3Fq%3Dx", "absolute URL"),
    ],
)
def test_malformed_wrappers(wrapped: str, reason: str) -> None:
    with pytest.raises(URLError, match=reason) as caught:
        unwrap(wrapped)
    assert "\n" not in str(caught.value)


def test_wrapper_loops_are_bounded() -> None:
    url = "https://example.com/"
    for _ in range(20):
        quoted = url.replace("%", "%25").replace("?", "%3F").replace("&", "%26")
        url = f"https://www.google.com/url?q={quoted}"
    with pytest.raises(URLError, match="more than"):
        unwrap(url)


# decode --------------------------------------------------------------------------------------


def _safelinks(url: str) -> str:
    quoted = url.replace("%", "%25").replace("?", "%3F").replace("&", "%26").replace("#", "%23")
    return f"https://nam06.safelinks.protection.outlook.com/?url={quoted}&data=1&reserved=0"


def _qp_damage(url: str) -> str:
    """url as a quoted-printable body shows it: "=" escaped, a soft line break in the middle."""
    escaped = url.replace("=", "=3D")
    return escaped[:40] + "=\r\n" + escaped[40:]


@pytest.mark.parametrize(
    ("url", "click_host", "expected"),
    [
        (_link(KERNEL), HOST, Decoded(KERNEL, None, ("clickguard",), HASHED)),
        (_link(KERNEL), None, Decoded(KERNEL, None, ("clickguard",), HASHED)),
        (_safelinks(_link(KERNEL)), HOST, Decoded(KERNEL, None, ("safelinks", "clickguard"), HASHED)),
        (_qp_damage(_link(TARGETS[3])), HOST, Decoded(TARGETS[3], None, ("clickguard",), HASHED)),
        (_link(PP_V2_KERNEL), HOST, Decoded(KERNEL, None, ("clickguard", "proofpoint-v2"), HASHED)),
        (PP_V2_KERNEL, HOST, Decoded(KERNEL, None, ("proofpoint-v2",), None)),
        (
            "https://protect-us.mimecast.com/s/yj15?domain=sourceforge.net",
            HOST,
            Decoded(None, "sourceforge.net", ("mimecast",), None),
        ),
        ("https://example.com/a", HOST, Decoded("https://example.com/a", None, (), None)),
        # A click link for another click host is just a URL here.
        (_link(KERNEL).replace(HOST, "other.example"), HOST,
         Decoded(_link(KERNEL).replace(HOST, "other.example"), None, (), None)),
    ],
)
def test_decode(url: str, click_host: str | None, expected: Decoded) -> None:
    assert decode(url, KEY, click_host) == expected


def test_decode_without_a_key_does_not_trust_click_links() -> None:
    link = _link(KERNEL)
    assert decode(link, None, HOST) == Decoded(link, None, (), None)


@pytest.mark.parametrize(
    ("url", "error", "reason"),
    [
        (_link(KERNEL).replace("kernel", "kerne1"), TokenError, "tampered"),
        (_safelinks(_link(KERNEL).replace("kernel", "kerne1")), TokenError, "tampered"),
        (_link(KERNEL)[:60], TokenError, "truncated"),
        ("https://urldefense.proofpoint.com/v2/url?d=x", URLError, "no u parameter"),
    ],
)
def test_decode_refuses(url: str, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        decode(url, KEY, HOST)


# Fuzz findings: versions, targets holding "http:/", dot hosts, text that is not text --------------


@pytest.mark.parametrize("version", ["9" * 5000, "0" * 5000 + "1", "01", "0"])
def test_a_version_other_than_v1_as_written_is_refused_with_a_short_reason(version: str) -> None:
    link = _link().replace("/v1/", f"/v{version}/")
    with pytest.raises(TokenError, match="wrong version") as caught:
        verify_click_link(link, KEY, click_host=HOST)
    assert len(str(caught.value)) < 100
    with pytest.raises(TokenError, match="wrong version"):
        decode(link, KEY, HOST)


@pytest.mark.parametrize(
    "target",
    [
        "https://archive.example/save?u=http:/old.example/",
        "https://a.example/p/HTTPS:/x",
        "http://a.example/http:/b/https:/c?d=http:/e#http:/f",
    ],
)
def test_a_target_holding_http_colon_slash_verifies(target: str) -> None:
    link = _link(target)
    assert verify_click_link(link, KEY, click_host=HOST) == (target, HASHED)
    # Only the target's own scheme may come merged.
    merged = link.replace(f"/{target[:target.index(':')]}://", f"/{target[:target.index(':')]}:/", 1)
    assert verify_click_link(merged, KEY, click_host=HOST) == (target, HASHED)


@pytest.mark.parametrize("target", ["http://./", "https://../x", "http://%2e/", "http://%2E%2e/y?q=1", "http://./."])
def test_a_target_whose_host_is_a_dot_segment_verifies_and_survives_a_browser(target: str) -> None:
    link = _link(target)
    assert verify_click_link(link, KEY, click_host=HOST) == (target, HASHED)
    path = link.partition("?")[0].split("/")[3:]
    assert not {segment.lower() for segment in path} & {".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"}


def test_decode_refuses_a_link_that_is_not_text() -> None:
    # `clickguard decode` takes argv, where Python keeps the bytes that are not UTF-8 as lone surrogates.
    for url in ("http://x.example/=3D\udcff", _link(KERNEL) + "\udcff", "https://example.com/\ud800"):
        with pytest.raises(URLError, match="not valid text"):
            decode(url, KEY, HOST)


def test_unwrap_repairs_quoted_printable_around_an_undecodable_byte() -> None:
    wrapped = "https://www.google.com/url?q=3Dhttp://x.example/\udcff"
    assert unwrap(wrapped) == Unwrapped("http://x.example/\ufffd", None, ("google",))
