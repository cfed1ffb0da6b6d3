"""The script reader under attack: bounded cost (steps linear in the input), the grammar's regex decision,
callers through any chain, and a budget that stops with "unread", never with "nothing found".

Pure tests on `find_navigations` (with a `Steps` budget to read the work done), and the
attacks through the real proxy from a camera on a bare address (127.0.0.100-119).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest import param

from clickguard.inspection.navigation import Navigation, Technique, find_navigations
from clickguard.inspection.navigation.results import Steps
from clickguard.inspection.navigation.script_lexer import PUNCT, REGEX, lex
from tests.appliances import Route, serve
from tests.harness import HTML, Proxy, ProxyPool

BASE = "http://page.example/dir/index.html"
T = Technique
EVIL = "http://evil.example/"


def _find(body: str, steps: Steps | None = None) -> list[Navigation]:
    return find_navigations(status=200, headers=(), body=body.encode(), base_url=BASE,
                            content_type="text/html; charset=utf-8", steps=steps)


def _summary(navigations: list[Navigation]) -> list[tuple[Technique, str | None, bool]]:
    return [(n.technique, n.target, n.automatic) for n in navigations]


def _spent(body: str) -> int:
    steps = Steps(10**12)
    _find(body, steps)
    return steps.spent


# ---------------------------------------------------------------------------
# Bounded cost: the steps of a reading grow linearly with the input, whatever its shape
# ---------------------------------------------------------------------------

def _many_functions(n: int) -> str:
    """The issue's page: thousands of `function hN(){location.href=uN}` with uN variables."""
    return "<script>" + "".join(f"var u{i}='http://h{i}.example/';function h{i}(){{location.href=u{i}}}\n"
                                for i in range(n)) + "h1()</script>"


def _many_scripts(n: int) -> str:
    return "".join(f"<script>function h{i}(){{location.href=u{i}}} h{i}()</script>" for i in range(n))


def _call_chain(n: int) -> str:
    return ("<script>" + "".join(f"function f{i}(){{ f{i + 1}() }}\n" for i in range(n))
            + f"function f{n}(){{ location.href = '{EVIL}' }} f0()</script>")


def _one_name_everywhere(n: int) -> str:
    return "<script>var go = 'http://a.example/';" + "location.href = go;" * n + "</script>"


def _nested_calls(n: int) -> str:
    return ("<script>" + "".join(f"function g{i}(){{ location.href = u }}" for i in range(n))
            + "".join(f"function k(){{ g{i}();" for i in range(n)) + "}" * n + "k()")


def _many_form_submits(n: int) -> str:
    return ("".join(f"<form id=f{i} action=/a{i}></form>" for i in range(n))
            + "<script>" + "".join(f"document.getElementById('f{i}').submit();" for i in range(n)))


SHAPES: dict[str, Callable[[int], str]] = {
    "many-functions": _many_functions,
    "many-scripts": _many_scripts,
    "call-chain": _call_chain,
    "deep-nesting": lambda n: "<script>" + "(" * n + "location.href='http://deep.example/'" + ")" * n,
    "deep-braces": lambda n: "<script>" + "{" * n + "location.href=u" + "}" * n,
    "deep-functions": lambda n: "<script>" + "function f(){" * n + "location.href=u" + "}" * n,
    "huge-string": lambda n: "<script>location.href='http://a.example/" + "x" * (40 * n) + "'</script>",
    "many-concatenations": lambda n: "<script>location.href='http://a.example/'" + "+'x'" * n + "</script>",
    "concatenated-variables": lambda n: "<script>var a='x';location.href=" + "+".join(["a"] * n),
    "many-timers": lambda n: "<script>" + "setTimeout(function(){location.href=u},1);" * n + "</script>",
    "string-timers": lambda n: "<script>" + "setTimeout(\"location.href='/a'\", 1);" * n + "</script>",
    "alias-chain": lambda n: ("<script>var a0='http://a.example/';"
                              + "".join(f"var a{i}=a{i - 1};" for i in range(1, n)) + f"location=a{n - 1}"),
    "name-used-everywhere": _one_name_everywhere,
    "chained-calls": lambda n: "<script>f" + "(location.replace(u))" * n + "</script>",
    "callbacks-in-one-call": lambda n: "<script>setTimeout(" + "function(){location=u}," * n + "1)</script>",
    "unterminated-regex-classes": lambda n: "<script>location=u;x=" + "[/" * n + "</script>",
    "element-attributes": lambda n: ("<script>var f=document.createElement('iframe');"
                                     + "f.src='http://a.example/';" * n + "</script>"),
    "many-arrows": lambda n: "<script>x = " + "a => " * n + "location.href = u</script>",
    "templates": lambda n: "<script>location.href=`http://a.example/" + "${a}" * n + "`</script>",
    # Nesting: each use of a name is looked up through a bounded number of enclosing functions.
    "nested-sinks": lambda n: "<script>" + "function f(){location.href=u;" * n + "}" * n,
    "nested-iifes": lambda n: "<script>" + "(function(){location.href=u;" * n + "})()" * n,
    "nested-calls": _nested_calls,
    "nested-same-name-calls": lambda n: "<script>" + "function f(){ f(); location=u;" * n + "}" * n + "f()",
    "nested-same-name-uncalled": lambda n: "<script>" + "function f(){ f(); location=u;" * n + "}" * n,
    # Functions alike (one name, one scope; or methods of one name) are reached by the same calls.
    "redeclared-uncalled": lambda n: "<script>" + "function f(){location=u} b.onclick=function(){f()};" * n,
    "methods-uncalled": lambda n: "<script>" + "o.f=function(){location=u}; b.onclick=function(){o.f()};" * n,
    "chain-of-clicks": lambda n: "<script>a" + ".click()" * n,
    "many-form-submits": _many_form_submits,
    # A global is looked up among the scripts that set it at their top level, each checked once.
    "globals-set-in-functions": lambda n: "<script>function g(){u=1}</script><script>location=u</script>" * n,
    "location-aliases": lambda n: "<script>var l = location;</script>" + "<script>l.href='/x';</script>" * n,
    "many-writes": lambda n: "<script>" + "".join(f"document.write('<b>{i}</b>');" for i in range(n)),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_doubling_the_input_at_most_doubles_the_work(shape: str) -> None:
    make = SHAPES[shape]
    small, large = make(1000), make(2000)
    spent_small, spent_large = _spent(small), _spent(large)
    assert spent_large <= 2.3 * spent_small + 2000, (shape, spent_small, spent_large)
    # ...and the work stays within the budget the reader gives itself: no reading of these stops.
    assert all(n.incomplete is None for n in _find(large))


def test_the_issues_page_is_read_whole_and_its_one_called_function_found() -> None:
    found = _find(_many_functions(3000))
    automatic = [n for n in found if n.automatic and n.technique is not T.UNREAD]
    assert _summary(automatic) == [(T.SCRIPT, "http://h1.example/", True)]
    assert all(n.incomplete is None and n.technique is not T.UNREAD for n in found)


def test_past_the_budget_the_page_is_unread_not_harmless() -> None:
    body = _many_functions(200)
    found = _find(body, Steps(2000))
    assert found[-1].technique is T.UNREAD and found[-1].automatic and found[-1].target is None
    assert found[-1].incomplete is not None and "budget" in found[-1].incomplete


def test_a_function_whose_callers_were_not_all_read_counts_as_automatic() -> None:
    # Enough budget to read the page, not enough to walk the 500 callers back to f0().
    body = _call_chain(500)
    steps = Steps(_spent(body) - 300)
    found = _find(body, steps)
    [navigation] = [n for n in found if n.technique is T.SCRIPT]
    assert navigation.target == EVIL and navigation.automatic
    assert navigation.incomplete is not None


@pytest.mark.parametrize("length", [64, 65, 500, 5000])
def test_a_long_call_chain_is_followed_to_top_level_code(length: int) -> None:
    assert _summary(_find(_call_chain(length))) == [(T.SCRIPT, EVIL, True)]


def test_a_long_call_chain_from_a_click_handler_is_not_automatic() -> None:
    body = _call_chain(500).replace("f0()</script>", "button.onclick = function () { f0() }</script>")
    assert _summary(_find(body)) == [(T.SCRIPT, EVIL, False)]


def test_a_redirect_after_64_others_is_not_lost() -> None:
    body = _many_functions(100).replace("h1()</script>", f"location.replace('{EVIL}')</script>")
    assert (T.SCRIPT, EVIL, True) in _summary(_find(body))


def test_every_navigation_of_a_page_is_kept() -> None:
    found = _find(_many_functions(1000))
    targets = [n.target for n in found if n.technique is T.SCRIPT]
    assert targets == [f"http://h{i}.example/" for i in range(1000)]
    assert [n.target for n in found if n.automatic and n.technique is T.SCRIPT] == ["http://h1.example/"]


def test_a_page_with_many_navigations_is_not_marked_unread() -> None:
    assert all(n.technique is not T.UNREAD for n in _find(_many_functions(100)))


def test_markup_is_charged_to_the_page_budget() -> None:
    page = "<html><body>" + "<p class=x>text <a href='/x'>link</a></p>" * 20_000 + "</body></html>"
    assert _spent(page) > len(page) // 8  # no script at all: the markup itself costs steps
    found = _find(page, Steps(10_000))
    assert [n.technique for n in found] == [T.UNREAD]
    assert found[0].incomplete is not None and "budget" in found[0].incomplete


def test_markup_written_again_and_again_is_charged_each_time() -> None:
    markup = "<p>" + "x" * 100_000
    body = f"<script>var s = '{markup}';" + "document.write(s);" * 200 + "</script>"
    assert _spent(body) >= 200 * len(markup) // 8
    found = _find(body)  # the budget linear in the page's size runs out: unread, not "nothing found"
    assert found[-1].technique is T.UNREAD and found[-1].automatic


@pytest.mark.parametrize("shape", ["many-functions", "many-scripts", "call-chain", "name-used-everywhere"])
def test_ten_times_the_functions_cost_ten_times_the_steps(shape: str) -> None:
    make = SHAPES[shape]
    small, large = _spent(make(1000)), _spent(make(10_000))
    assert large <= 11 * small, (shape, small, large)


def test_a_target_hidden_behind_the_lookup_bounds_is_reported_hidden() -> None:
    chain = "".join(f"var a{i} = a{i - 1} + 'x';" for i in range(1, 3000))
    body = f"<script>var a0 = 'http://x.example/';{chain}location.href = a2999;"
    assert _summary(_find(body)) == [(T.OBFUSCATED_SCRIPT, None, True)]


def test_code_nested_deeper_than_the_reader_goes_is_reported_hidden() -> None:
    code = "location='http://deep.example/'"
    for _ in range(6):
        code = "eval(" + repr(code) + ")"
    assert _summary(_find(f"<script>{code}</script>")) == [(T.OBFUSCATED_SCRIPT, None, True)]


# ---------------------------------------------------------------------------
# The grammar's regex-or-division decision: code a browser runs is never read as a literal
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "script",
    [
        param(f"if (a) /'/.test(s); location.replace('{EVIL}')", id="regex-after-if"),
        param(f"while (0) /'/.test(s); location.replace('{EVIL}')", id="regex-after-while"),
        param(f"if (a) {{}} /'/.test(s); location.replace('{EVIL}')", id="regex-after-block"),
        param(f"x = {{}} / 2; location.replace('{EVIL}'); y = 1 / 3", id="division-after-object"),
        param(f"x = function () {{}} / 2; location.replace('{EVIL}'); y = 1 / 3",
              id="division-after-function"),
        param(f"a++ / 2; location.replace('{EVIL}'); b = 1 / 1", id="division-after-postfix"),
        param(f"x = o.return / 2; location.replace('{EVIL}'); y = 1 / 1", id="keyword-as-property"),
        param(f"x = async / 2; location.replace('{EVIL}'); y = 1 / 1", id="async-as-a-name"),
        param(f"x = `${{ {{a: '}}'}}.a }}` / 2; location.replace('{EVIL}'); y = 1 / 1", id="template-braces"),
        param(f"function g() {{ return /'/ }} location.replace('{EVIL}')", id="regex-after-return"),
        param(f"x = typeof /'/; location.replace('{EVIL}')", id="regex-after-typeof"),
        param(f"x = a ? .5 : 1; location.replace('{EVIL}'); y = 1 / 2", id="conditional-then-number"),
        param(f"x = /[/']/.test(s); location.replace('{EVIL}')", id="slash-in-class"),
        param(f"x = 1\u2028location.replace('{EVIL}')", id="line-separator"),
        param(f"location?.assign('{EVIL}')", id="optional-chain-assign"),
        param(f"location /* */ .replace('{EVIL}')", id="comment-before-member"),
        param(f"\\u006cocation.replace('{EVIL}')", id="escaped-name"),
        param(f"x = 1 /* a\n */ --> a comment\nlocation.replace('{EVIL}')", id="close-comment-after-comment"),
        param(f"x = 1\n--> a comment\nlocation.replace('{EVIL}')", id="close-comment-at-line-start"),
        param(f"x = '<!--'; location.replace('{EVIL}')", id="open-comment-in-a-string"),
        param(f"x = `\n-->`; location.replace('{EVIL}')", id="close-comment-in-a-template"),
        # No semicolon is inserted before "/": the line goes on as a division.
        param(f"a = b\n/ 1; location.replace('{EVIL}'); x = 1 /i", id="division-after-a-line-break"),
        param(f"x = function () {{}}\n/ 1; location.replace('{EVIL}'); y = 1 /i",
              id="division-after-a-function-expression-and-a-line-break"),
        param(f"f = () => /'/.test(s); location.replace('{EVIL}')", id="regex-after-arrow"),
        param(f"f = () => {{}}\n/'/.test(s); location.replace('{EVIL}')", id="regex-after-an-arrow-body"),
        param(f"x = 1\nasync function f() {{}}\n/'/.test(s); location.replace('{EVIL}')",
              id="regex-after-an-async-function-declared-after-a-line-break"),
        param(f"f = () => ({{}}) / 1; location.replace('{EVIL}'); y = 1 / 1",
              id="division-after-an-arrow-object"),
        # yield and await are operators only in generators and async functions; elsewhere, names.
        param(f"var await = 4; x = await / 2; location.replace('{EVIL}'); y = 1 / 1",
              id="await-as-a-name"),
        param(f"var yield = 4; x = yield / 2; location.replace('{EVIL}'); y = 1 / 1",
              id="yield-as-a-name"),
        param(f"function* g() {{ function h() {{ x = yield / 2; location.replace('{EVIL}'); y = 1 / 1 }}"
              " h() } g().next()", id="yield-as-a-name-in-a-function-in-a-generator"),
        param(f"async function g() {{ x = () => 1; await /'/ }} location.replace('{EVIL}')",
              id="regex-after-await"),
        param(f"async function g() {{ h = () => await / 2; location.replace('{EVIL}'); y = 1 / 1 }} g()",
              id="await-as-a-name-in-an-arrow-in-an-async-function"),
        param(f"function* g() {{ yield /'/ }} location.replace('{EVIL}')", id="regex-after-yield"),
        param(f"g = async x => f(await /'/, 1); location.replace('{EVIL}')",
              id="regex-after-await-in-an-arrow"),
        param(f"o = {{ async m() {{ await /'/ }}, *n() {{ yield /'/ }} }}; location.replace('{EVIL}')",
              id="regex-after-await-and-yield-in-methods"),
    ],
)
def test_code_the_browser_runs_is_read(script: str) -> None:
    found = _find(f"<script>{script}</script>")
    assert [n.target for n in found if n.automatic] == [EVIL], script


@pytest.mark.parametrize(
    "script",
    [
        param(f"x = 1 <!-- location.replace('{EVIL}')", id="open-comment-anywhere"),
        param(f"--> location.replace('{EVIL}')", id="close-comment-at-start"),
        param(f"x = /location.replace('{EVIL}')/", id="in-a-regex"),
        param(f"if (a) /location.replace('{EVIL}')/.test(s)", id="in-a-regex-after-if"),
        param(f"a = b;\n/ 1; location.replace('{EVIL}'); x = 1 /i.test(s)",
              id="in-a-regex-after-a-semicolon"),
        param(f"x = 1 /* a\n */ --> location.replace('{EVIL}')", id="close-comment-after-a-comment"),
        param(f"async function g() {{ await /location.replace('{EVIL}')/ }}", id="in-a-regex-after-await"),
    ],
)
def test_comments_and_literals_the_browser_skips_are_skipped(script: str) -> None:
    assert _find(f"<script>{script}</script>") == []


def test_a_template_literal_does_not_hide_the_end_of_its_script() -> None:
    # HTML ends a script at "</script", whatever the JavaScript around it: the next script runs.
    body = f"<script>x = `</script><script>location.replace('{EVIL}')</script>`"
    assert _summary(_find(body)) == [(T.SCRIPT, EVIL, True)]


def test_close_comment_inside_a_line_is_an_operator() -> None:
    tokens = lex("x = y-->0; z")
    assert "z" in tokens.texts and ">" in tokens.texts


def test_unterminated_regexes_are_scanned_once_per_line() -> None:
    tokens = lex("x = " + "[/" * 5000 + "\n/re/.test(s)")
    assert tokens.kinds.count(REGEX) == 1
    assert tokens.kinds[-6] == REGEX and all(k == PUNCT for k in tokens.kinds[1:4])


# ---------------------------------------------------------------------------
# Through the real proxy: a camera on a bare address
# ---------------------------------------------------------------------------

CAMERA = [("Server", "Hikvision-Webs"), ("Content-Type", "text/html; charset=utf-8")]


def _hostile_page(target: str) -> bytes:
    """~240 KiB of ordinary-looking functions, then one automatic redirect at the end of a 500-call chain.

    The 4,400 navigations of the filler come first: none of them hides the one after them.
    """
    filler = "".join(f"var u{i}='/p{i}.htm';function h{i}(){{location.href=u{i}}}\n" for i in range(4400))
    chain = "".join(f"function f{i}(){{ f{i + 1}() }}\n" for i in range(500))
    return (f"<html><head><title>camera</title></head><body><script>{filler}{chain}"
            f"function f500(){{ location.href = '{target}' }}\nf0()</script></body></html>").encode()


@pytest.fixture
def proxy(shared_proxy: ProxyPool) -> Proxy:
    """The module's proxy with no feeds."""
    return shared_proxy("feeds: []\n")


def test_hostile_page_from_a_camera_is_read_whole_and_blocked(proxy: Proxy) -> None:
    body = _hostile_page("http://127.0.0.101/landing")
    assert len(body) > 240 * 1024
    with serve("127.0.0.100", {"/": Route(headers=CAMERA, body=body)}) as camera:
        r = proxy.get(f"{camera.base}/", HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
        assert any("127.0.0.101" in str(n["target"]) for n in record["inspection"]["navigations"])


@pytest.mark.parametrize(
    ("host", "script"),
    [
        param("127.0.0.102", "if (a) /'/.test(s); location.replace('http://127.0.0.109/x')",
              id="regex-after-if"),
        param("127.0.0.103", "x = {} / 2; location.replace('http://127.0.0.109/x'); y = 1 / 3",
              id="division-after-object"),
        param("127.0.0.104", "location?.assign('http://127.0.0.109/x')", id="optional-chain"),
        param("127.0.0.105", "var await = 4; x = await / 2; location.replace('http://127.0.0.109/x')",
              id="await-as-a-name"),
        param("127.0.0.106", "var yield = 4; x = yield / 2; location.replace('http://127.0.0.109/x')",
              id="yield-as-a-name"),
    ],
)
def test_script_the_reader_used_to_misread_is_blocked(proxy: Proxy, host: str, script: str) -> None:
    body = f"<html><body><script>var a = 0, s = '';\n{script}</script></body></html>".encode()
    with serve(host, {"/": Route(headers=CAMERA, body=body)}) as camera:
        r = proxy.get(f"{camera.base}/", HTML)
        assert r.headers["x-clickguard-action"] == "block"
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert "response.redirect" in record["reasons"]
