"""Tests for clickguard.urls: URLs and hosts normalised as a browser (WHATWG URL Standard) would."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from clickguard import urls
from clickguard.errors import URLError
from clickguard.urls import (
    EmbeddedIPv4,
    NormalizedURL,
    canonical_ip,
    embedded_ipv4,
    normalize_host,
    normalize_url,
    parent_domains,
    registered_domain,
    url_of,
)

URLHAUS_FILES = ["urlhaus_csv_online_2026-01-27.csv", "urlhaus_csv_online_2025-04-21.csv"]


def _urlhaus_urls(path: Path) -> list[str]:
    """The url column of a URLhaus CSV dump (banner lines start with "#"; one file has a header)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(line for line in f if not line.startswith("#"))
        return [row[2] for row in rows if row and row[0] != "id"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # plain URLs, default ports, empty path
        ("http://example.com/", "http://example.com/"),
        ("http://example.com", "http://example.com/"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:0080/a", "http://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://111.92.243.40:8080/02.08.2022.exe", "http://111.92.243.40:8080/02.08.2022.exe"),
        ("ws://example.com:80/chat", "ws://example.com/chat"),
        ("wss://example.com:443/chat", "wss://example.com/chat"),
        ("ftp://example.com:21/pub", "ftp://example.com/pub"),
        # case, trailing dot, fragment, userinfo
        ("HTTP://EVIL.Example/Path", "http://evil.example/Path"),
        ("http://evil.example./", "http://evil.example/"),
        ("http://evil.example/x#fragment", "http://evil.example/x"),
        ("http://bank.example@203.0.113.9/", "http://203.0.113.9/"),
        ("http://bank.example:pass@evil.example/", "http://evil.example/"),
        ("http://a@b@evil.example/", "http://evil.example/"),
        ("http://evil.example#@bank.example/", "http://evil.example/"),
        ("http://evil.example\\@bank.example/", "http://evil.example/@bank.example/"),
        ("http://evil.example/@bank.example/", "http://evil.example/@bank.example/"),
        # backslashes and missing or extra slashes, as browsers read them
        ("http:\\\\evil.example\\x", "http://evil.example/x"),
        ("http:/\\/\\evil.example/x", "http://evil.example/x"),
        ("http:evil.example", "http://evil.example/"),
        ("https:////evil.example/x", "https://evil.example/x"),
        # whitespace and control characters
        ("  \x00http://evil.example/\x1f ", "http://evil.example/"),
        ("http://ev\til.exa\nmple/a\rb", "http://evil.example/ab"),
        # IPv4 in every form a browser accepts
        ("http://3232235777/", "http://192.168.1.1/"),
        ("http://0xC0A80001/", "http://192.168.0.1/"),
        ("http://0300.0250.0.1/", "http://192.168.0.1/"),
        ("http://192.168.1/", "http://192.168.0.1/"),
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://0x7f.0x0.0.01/", "http://127.0.0.1/"),
        ("http://017700000001/", "http://127.0.0.1/"),
        ("http://4294967295/", "http://255.255.255.255/"),
        ("http://1.16777215/", "http://1.255.255.255/"),
        ("http://0x/", "http://0.0.0.0/"),
        ("http://1.2.3.4./", "http://1.2.3.4/"),
        ("http://%31%32%37.1/", "http://127.0.0.1/"),
        ("http://１２７.０.０.１/", "http://127.0.0.1/"),
        ("http://127.0.0.1:80/", "http://127.0.0.1/"),
        # IPv6
        ("http://[::1]/", "http://[::1]/"),
        ("http://[0:0:0:0:0:0:0:1]:8080/", "http://[::1]:8080/"),
        ("http://[::ffff:1.2.3.4]/", "http://[::ffff:102:304]/"),
        ("http://[2001:DB8:0:0:1:0:0:1]/", "http://[2001:db8::1:0:0:1]/"),
        ("http://[1:0:0:2::3:0]/", "http://[1::2:0:0:3:0]/"),
        ("http://[1:2:3:4:5:6::7]/", "http://[1:2:3:4:5:6:0:7]/"),
        # IDNA / UTS #46
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("https://BÜCHER.example/", "https://xn--bcher-kva.example/"),
        ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/"),
        ("http://XN--BCHER-KVA.example/", "http://xn--bcher-kva.example/"),
        ("http://☃.net/", "http://xn--n3h.net/"),
        ("http://%E2%98%83.net/", "http://xn--n3h.net/"),
        ("http://ＥＸＡＭＰＬＥ。ｃｏｍ/", "http://example.com/"),
        ("http://evil.com%E3%80%82bank.com/", "http://evil.com.bank.com/"),
        ("http://faß.de/", "http://xn--fa-hia.de/"),
        ("http://a\u00adb.example/", "http://ab.example/"),
        ("http://مثال.إختبار/", "http://xn--mgbh0fb.xn--kgbechtv/"),
        # domains a browser accepts although DNS rules would not
        ("http://ex%61mple.com/", "http://example.com/"),
        ("http://a_b.example/", "http://a_b.example/"),
        ("http://-x-.example/", "http://-x-.example/"),
        ("http://foo.1x/", "http://foo.1x/"),
        ("http://foo.0xg/", "http://foo.0xg/"),
        # paths: dot segments, percent-encoding
        ("http://h.example/a/./b/../c", "http://h.example/a/c"),
        ("http://h.example/a/b/../../../c", "http://h.example/c"),
        ("http://h.example/a/%2e%2E/b", "http://h.example/b"),
        ("http://h.example/a/.%2e/b", "http://h.example/b"),
        ("http://h.example/a/%2E./b", "http://h.example/b"),
        ("http://h.example/a/%2e/b", "http://h.example/a/b"),
        ("http://h.example/a/..", "http://h.example/"),
        ("http://h.example/a/.", "http://h.example/a/"),
        ("http://h.example/.well-known/x", "http://h.example/.well-known/x"),
        ("http://h.example/a//b", "http://h.example/a//b"),
        ("http://h.example/a b\"<>`{}^", "http://h.example/a%20b%22%3C%3E%60%7B%7D%5E"),
        ("http://h.example/é", "http://h.example/%C3%A9"),
        ("http://h.example/%7euser/a%2fb", "http://h.example/%7Euser/a%2Fb"),
        ("http://h.example/%zz/100%", "http://h.example/%zz/100%"),
        ("http://h.example/\x7f", "http://h.example/%7F"),
        # queries: percent-encoded with the special-query set, otherwise kept
        ("http://h.example?x", "http://h.example/?x"),
        ("http://h.example/p?", "http://h.example/p"),
        ("http://h.example/p?a=1&b=/x/../y", "http://h.example/p?a=1&b=/x/../y"),
        ("http://h.example/p?q= \"'<>é", "http://h.example/p?q=%20%22%27%3C%3E%C3%A9"),
        ("http://h.example/p?a%2fb=%zz\\", "http://h.example/p?a%2fb=%zz\\"),
        ("http://h.example/p?a#b?c", "http://h.example/p?a"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw).url == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "HTTPS://User:Pw@Bücher.Example.:8443/a/../b?q=1#f",
            NormalizedURL(
                "https://xn--bcher-kva.example:8443/b?q=1",
                "https", "xn--bcher-kva.example", 8443, "/b", "q=1", False,
            ),
        ),
        (
            "http://0x7f.1/",
            NormalizedURL("http://127.0.0.1/", "http", "127.0.0.1", 80, "/", "", True),
        ),
        (
            "http://[::FFFF:1.2.3.4]:8080/x?",
            NormalizedURL(
                "http://[::ffff:102:304]:8080/x", "http", "::ffff:102:304", 8080, "/x", "", True
            ),
        ),
        (
            "https://a.example/x?y=1",
            NormalizedURL("https://a.example/x?y=1", "https", "a.example", 443, "/x", "y=1", False),
        ),
    ],
)
def test_normalize_url_fields(raw: str, expected: NormalizedURL) -> None:
    assert normalize_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "example.com/x",  # no scheme and no default_scheme
        "/relative/path",
        "http:///",
        "http://",
        "http://user@/",
        "http://:80/",
        "http://h.example:99999/",
        "http://h.example:65536/",
        "http://h.example:8x/",
        "http://h.example:-1/",
        "http://h.example:80:80/",
        "http://[1:2::3:4:5:6:7:8]/",
        "http://[1::2::3]/",
        "http://[::1/",
        "http://[::1]x/",
        "http://[fe80::1%25eth0]/",
        "http://[::1.2.3.04]/",
        "http://0x100000000/",
        "http://4294967296/",
        "http://1.2.3.4.5/",
        "http://256.1.1.1/",
        "http://1.16777216/",
        "http://1..2/",
        "http://09.1/",
        "http://foo.09/",
        "http://foo.123/",
        "http://foo.0x/",
        "http://ex%00ample/",
        "http://a b/",
        "http://a<b/",
        "http://a^b/",
        "http://a|b/",
        "http://exa%2fmple/",
        "http://exa%25mple/",
        "http://%ff/",
        "http://./",
        "http://../",  # a host of dots alone names no host
        "http://%2e%2e/",
        "http://xn--/",
        "http://xn--abc/",
        "http://xn--abc-.com/",
        "http://\u0301a.example/",
        "http://a\u200db.example/",
        "http://1مثال.com/",
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "data:text/html,hello",
        "file:///etc/passwd",
        "gopher://h.example/",
    ],
)
def test_normalize_url_rejects(raw: str) -> None:
    with pytest.raises(URLError):
        normalize_url(raw)


@pytest.mark.parametrize(
    ("raw", "default_scheme", "expected"),
    [
        ("example.com/x", "http", "http://example.com/x"),
        ("Example.com", "https", "https://example.com/"),
        ("example.com:8080/x", "https", "https://example.com:8080/x"),
        ("localhost:8080", "http", "http://localhost:8080/"),
        ("1.2.3.4:8080/bin.sh", "http", "http://1.2.3.4:8080/bin.sh"),
        ("//example.com/x", "http", "http://example.com/x"),
        ("https://example.com/x", "http", "https://example.com/x"),  # an explicit scheme wins
        ("bank.example@0x7f.1/x", "http", "http://127.0.0.1/x"),
    ],
)
def test_normalize_url_default_scheme(raw: str, default_scheme: str, expected: str) -> None:
    assert normalize_url(raw, default_scheme=default_scheme).url == expected


@pytest.mark.parametrize(
    ("raw", "default_scheme"),
    [
        ("mailto:x@example.com", "http"),  # a scheme that is not a port stays a scheme
        ("example.com/x", "gopher"),
    ],
)
def test_normalize_url_default_scheme_rejects(raw: str, default_scheme: str) -> None:
    with pytest.raises(URLError):
        normalize_url(raw, default_scheme=default_scheme)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Example.COM", "example.com"),
        ("evil.example.", "evil.example"),
        ("example.com..", "example.com"),  # every trailing dot goes, not only one
        ("1.2.3.4..", "1.2.3.4"),  # then it ends in a number: the address
        ("a..b.example", "a..b.example"),  # an empty label inside stays, as in browsers
        ("bücher.example", "xn--bcher-kva.example"),
        ("3232235777", "192.168.1.1"),
        ("0300.0250.0.1", "192.168.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("2001:DB8::1", "2001:db8::1"),  # feeds write IPv6 without brackets
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ],
)
def test_normalize_host(host: str, expected: str) -> None:
    assert normalize_host(host) == expected


@pytest.mark.parametrize(
    "host", ["", ".", "..", "...", "a b", "a/b", "1.2.3.4.5", "0x100000000", "2001:db8::1::2", "[::1"]
)
def test_normalize_host_rejects(host: str) -> None:
    with pytest.raises(URLError):
        normalize_host(host)


@pytest.mark.parametrize(
    ("spellings", "host", "is_ip"),
    [
        (["evil.example", "evil.example.", "evil.example..", "EVIL.example...", "evil.example\u3002\u3002"],
         "evil.example", False),
        (["1.2.3.4", "1.2.3.4.", "1.2.3.4..", "0x1.2.3.4...", "16909060.."], "1.2.3.4", True),
        (["xn--bcher-kva.example..", "bücher.example.."], "xn--bcher-kva.example", False),
    ],
)
def test_trailing_dots_give_one_key_that_is_its_own_normalisation(
        spellings: list[str], host: str, is_ip: bool) -> None:
    # A feed's "evil.example.." and a request for "evil.example" must meet in the index.
    for spelling in spellings:
        found = normalize_url(f"http://{spelling}/x")
        assert (found.host, found.is_ip, found.url) == (host, is_ip, f"http://{host}/x")
        assert normalize_url(found.url) == found
        assert normalize_host(spelling) == host == normalize_host(host)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("a.b.example.co.uk", "example.co.uk"),
        ("www.bbc.co.uk", "bbc.co.uk"),
        ("example.com", "example.com"),
        ("co.uk", ""),  # itself a public suffix
        ("uk", ""),
        ("foo.github.io", "foo.github.io"),  # private suffix: each user is its own domain
        ("a.foo.github.io", "foo.github.io"),
        ("github.io", ""),
        ("x.s3.amazonaws.com", "x.s3.amazonaws.com"),
        ("foo.xn--p1ai", "foo.xn--p1ai"),
        ("a.b.intranet.corp", "intranet.corp"),  # unlisted TLD: the PSL's implicit "*" rule
        ("localhost", ""),
        ("203.0.113.9", ""),
        ("2001:db8::1", ""),
        ("", ""),
    ],
)
def test_registered_domain(host: str, expected: str) -> None:
    assert registered_domain(host) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (
            "a.b.example.co.uk",
            ["a.b.example.co.uk", "b.example.co.uk", "example.co.uk", "co.uk", "uk"],
        ),
        ("example.com", ["example.com", "com"]),
        ("localhost", ["localhost"]),
        ("203.0.113.9", []),
        ("::ffff:102:304", []),
        ("", []),
    ],
)
def test_parent_domains(host: str, expected: list[str]) -> None:
    assert parent_domains(host) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://111.92.243.40:8080/02.08.2022.exe",
        "https://firebasestorage.googleapis.com/v0/b/x.appspot.com/o/SV%2FjsG.txt?alt=media&t=1",
        "http://h.example/a/./b/../%2E%2E/c?q=1#f",
        "http://xn--bcher-kva.example/",
        "http://h.example:80/",
        "http://h.example:08080/x",
    ],
)
def test_fast_path_agrees_with_full_parser(raw: str) -> None:
    assert urls._FAST_URL.fullmatch(raw) is not None
    assert normalize_url(raw) == urls._parse_url(raw, None)


@pytest.mark.parametrize("name", URLHAUS_FILES)
def test_every_urlhaus_url_normalises(feeds_dir: Path, name: str) -> None:
    raws = _urlhaus_urls(feeds_dir / "urlhaus" / name)
    assert len(raws) > 10_000
    failures: list[tuple[str, str]] = []
    for raw in raws:
        try:
            normalized = normalize_url(raw)
        except URLError as e:
            failures.append((raw, str(e)))
            continue
        # The fast path must give exactly what the full parser gives.
        assert normalized == urls._parse_url(raw, None), raw
        # Normalising is idempotent: the canonical form is its own canonical form.
        assert normalize_url(normalized.url) == normalized, raw
    assert failures == []


# 198.51.100.1 is c633:6401 in hex; its Teredo-obfuscated form (every bit flipped) is 39cc:9bfe.
@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("64:ff9b::c633:6401", [("198.51.100.1", "NAT64")]),
        ("64:ff9b::198.51.100.1", [("198.51.100.1", "NAT64")]),
        ("64:FF9B:0:0:0:0:C633:6401", [("198.51.100.1", "NAT64")]),
        ("64:ff9b:1::c633:6401", [("198.51.100.1", "local-use NAT64")]),
        ("64:ff9b:1:abcd:0:1:c633:6401", [("198.51.100.1", "local-use NAT64")]),
        ("2002:c633:6401::", [("198.51.100.1", "6to4")]),
        ("2002:c633:6401:7:8::9", [("198.51.100.1", "6to4")]),
        ("::ffff:c633:6401", [("198.51.100.1", "IPv4-mapped")]),
        ("::ffff:198.51.100.1", [("198.51.100.1", "IPv4-mapped")]),
        ("::c633:6401", [("198.51.100.1", "IPv4-compatible")]),
        ("::0.0.0.2", [("0.0.0.2", "IPv4-compatible")]),
        ("2001:0:4136:e378:8000:63bf:39cc:9bfe",
         [("198.51.100.1", "Teredo client"), ("65.54.227.120", "Teredo server")]),
        ("2001::c633:6401:0:0:ffff:fffe",
         [("0.0.0.1", "Teredo client"), ("198.51.100.1", "Teredo server")]),
        ("64:ff9b::c633:6401%eth0", [("198.51.100.1", "NAT64")]),  # a zone, as a socket may give
        # no IPv4 inside
        ("::", []),
        ("::1", []),
        ("64:ff9b:0:0:1::c633:6401", []),  # outside 64:ff9b::/96, not in 64:ff9b:1::/48
        ("64:ff9b:2::c633:6401", []),
        ("2001:db8::c633:6401", []),  # documentation prefix, not Teredo (2001::/32 only)
        ("2001:1::c633:6401", []),
        ("2003:c633:6401::", []),
        ("::fffe:c633:6401", []),
        ("fe80::c633:6401", []),
        ("198.51.100.1", []),  # IPv4 itself embeds nothing
        ("evil.example", []),
        ("", []),
        ("64:ff9b::c633:6401:1", []),  # not an address
    ],
)
def test_embedded_ipv4(address: str, expected: list[tuple[str, str]]) -> None:
    found = embedded_ipv4(address)
    assert [(e.ipv4, e.form) for e in found] == expected
    assert all(isinstance(e, EmbeddedIPv4) for e in found)


def test_embedded_ipv4_says_where_it_came_from() -> None:
    (nat64,) = embedded_ipv4("64:ff9b::c633:6401")
    assert str(nat64) == "the NAT64 form of 198.51.100.1"
    client, server = embedded_ipv4("2001:0:4136:e378:8000:63bf:39cc:9bfe")
    assert str(client) == "the Teredo client 198.51.100.1"
    assert str(server) == "the Teredo server 65.54.227.120"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.1", "198.51.100.1"),
        (" 198.51.100.1 ", "198.51.100.1"),
        ("::ffff:198.51.100.1", "198.51.100.1"),  # what a dual-stack socket shows of an IPv4 peer
        ("::FFFF:C633:6401", "198.51.100.1"),
        ("2001:DB8::0:1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("64:ff9b::c633:6401", "64:ff9b::c633:6401"),  # another host (the NAT64 gateway's): kept
        ("not an address", None),
        ("", None),
    ],
)
def test_canonical_ip(text: str, expected: str | None) -> None:
    assert canonical_ip(text) == expected


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("http", "64:ff9b::c633:6401", 8080, "/bins/x"), "http://[64:ff9b::c633:6401]:8080/bins/x"),
        (("https", "::1", 443, "/"), "https://[::1]/"),
        (("http", "[2001:db8::1]", 80, "/a?b"), "http://[2001:db8::1]/a?b"),
        (("http", "198.51.100.1", 81, "/"), "http://198.51.100.1:81/"),
        (("http", "example.org", 80, "*"), "http://example.org/"),
    ],
)
def test_url_of(parts: tuple[str, str, int, str], expected: str) -> None:
    assert normalize_url(url_of(*parts)).url == expected
