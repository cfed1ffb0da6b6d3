"""The webmail rewrite's fast path against the full tokenizer: the same page, byte for byte.

`rewrite_html` reads a plain document (no foreign content, template, <noscript>, <select>
or <base>) with one regular expression per link instead of `MarkupScanner`, and takes a
link already in the memo without a call. Every parse that differs from the full path's is
a link left unwrapped (or text rewritten), so each document here is rewritten both ways
(``fast=False`` is the full tokenizer) with fresh memos and with a warm one, and the pages
and link counts must be identical: generated pages (plain ones biased towards the cases
the fast path reads itself, hostile fragments, mutations of the bench's webmail page), the
fuzz corpora for HTML, and every HTML string the tests of the scanner and rewriter hold.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator
from pathlib import Path

from clickguard.mail.links import _WRAPPER_HINT, _has_wrapper_hint, click_context
from clickguard.mail.rewrite import RewriteSettings, _plain_rewrite, _Wrapper, rewrite_html
from tests.test_differential_html import FRAGMENTS, corpus

REPO = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))
SETTINGS = [
    RewriteSettings("click.test", KEY, "none"),
    RewriteSettings("click.test", KEY, "hashed", frozenset({"safe.example", "*.ok.example"})),
]
CONTEXT = click_context(key=KEY, origin_ip=None, message_id=None, recipient="u@example.org",
                        recipient_mode="hashed", rewritten_at=1_700_000_000)

URLS = [
    "https://news1.example.com/a/1?utm=mail", "http://x.example/", "HTTPS://UP.EXAMPLE/P",
    "https://safe.example/x", "https://a.ok.example/", "http://x.example/?a=1&amp;b=2",
    "http://x.example/?a=1&b=2&copy=3", "http://x.example/&quot;q", "http://x.example/?a=1&amp;amp;b=2",
    "http://x.example/?a=1&b=2", "http://x.example/&#x27;q", "  http://x.example/sp  ", "http://x.\texample/",
    "ht\ntp://x.example/", "http:x.example", "https:/x.example", "//other.example/p", "\\\\other.example/",
    "/local", "rel/path", "#frag", "", "javascript:alert(1)", "mailto:a@b.example", "data:text/html,x",
    "https://click.test/v1/AAAA/https://x.example/", "http://x.example/\0nul", "http://x.example/\udc80",
    "https://nam01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fwrapped.example%2F&data=x",
    "http://[::1]/", "http://256.1.1.1/", "http://x.example/'single'", 'http://x.example/"dq"',
    "http://x.example/a b", "http://x.example/>", "http://x.example/<", "http://xn--n3h.example/",
    "http://ex\u00e4mple.example/", "HTTP://X.EXAMPLE", "https://news1.example.com/a/1?utm=mail",
]


def _link(rng: random.Random) -> str:
    """One <a> or <area> tag with an href written one of the ways the tokenizer reads."""
    url = rng.choice(URLS)
    name = rng.choice(["a", "a", "a", "A", "area", "AREA", "abbr", "a\0"])
    forms = [
        f'<{name} href="{url}">', f"<{name} href='{url}'>", f"<{name} href={url}>",
        f"<{name} HREF = \"{url}\">",
        f'<{name}\thref="{url}" class="c">', f'<{name} class="c" href="{url}">', f"<{name}/href={url}>",
        f'<{name} href="{url}" href="http://second.example/">', f"<{name} href>", f"<{name} href=>",
        f'<{name} href="{url}"/>', f'<{name} href="{url}"x=">">', f"<{name} title='>' href=\"{url}\">",
        f'<{name} hreff="{url}">', f'<{name} href="{url}', f"<{name} href={url}/>",
        f'<{name}\nhref\n=\n"{url}">',
        f'<{name} data-x="<a href=\'http://in.attr.example/\'>" href="{url}">', f"<{name}>",
    ]
    return rng.choice(forms) + rng.choice(["text</a>", "", "</a>", " x ", "</A>"])


PLAIN = [
    "<li>", "</li>", "<p>", "</p>", "<div class=\"m\">", "</div>", "<br/>", "text ", "&amp; ", "\n",
    "<td style='x:y'>", "<title>t</title>", "<title><a href=http://in.title.example/></title>",
    "<textarea><a href=\"http://t.example/\"></textarea>", "<style>a{}</style>", "<style></style x='>'>",
    "<xmp><a href=x></xmp>", "<iframe></iframe>", "<script>var a='<a href=\"http://s.example/\">';</script>",
    "<script><!--<script></script><a href=x></script>", "<!-- <a href=\"http://c.example/\"> -->", "<!-->",
    "<!--->", "<!DOCTYPE html>", "<?x <a href=y>", "</ x>", "<", "</", "<!", "<3", "</3>",
    "<![CDATA[<a href=http://cd.example/>]]>", "<p title=\"<a href='x'>\">", "<noembed>", "</noembed>",
    "<noframes><a href=http://nf.example/></noframes>", "<plaintext>", "\0", "\r\n", "<TITLE>", "</TiTlE >",
    "<SCRIPT>", "</script>", "<img src=x>", "<b>", "</b>", "<table><tr><td>", "<bases>", "<templates>",
    "<svgx>", "<mathx>", "<selectx>", "<a\0 href=http://nul.example/>",
]
STRUCTURE = ["<svg>", "</svg>", "<math>", "<template>", "</template>", "<noscript>", "</noscript>",
             "<select>", "<base href=http://b.example/>", "<svg><a href=http://svg.example/>x</a></svg>",
             "</select>"]


def generated(count: int, seed: int) -> Iterator[str]:
    """Pages made of links and plain markup, and now and then a fragment the fast path hands on."""
    rng = random.Random(seed)
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 40)):
            roll = rng.random()
            if roll < 0.45:
                parts.append(_link(rng))
            elif roll < 0.93:
                parts.append(rng.choice(PLAIN))
            elif roll < 0.97:
                parts.append(rng.choice(FRAGMENTS).replace("L#", "http://l.example/").replace("S#", "s()"))
            else:
                parts.append(rng.choice(STRUCTURE))
        yield "".join(parts)


def webmail_page(links: int = 200) -> str:
    """The bench's webmail page (bench/upstream.py)."""
    rows = "".join(f'<li><a href="https://news{i % 37}.example.com/a/{i}?utm=mail">Story {i}</a></li>\n'
                   for i in range(links))
    return f"<!doctype html><html><head><title>Inbox</title></head><body><ul>\n{rows}</ul></body></html>\n"


def mutated_pages(count: int, seed: int) -> Iterator[str]:
    """The webmail page with fragments (plain, hostile, structural) spliced in at random places."""
    rng = random.Random(seed)
    page = webmail_page(40)
    for _ in range(count):
        doc = page
        for _ in range(rng.randint(1, 5)):
            at = rng.randint(0, len(doc))
            piece = rng.choice([rng.choice(PLAIN), rng.choice(FRAGMENTS), rng.choice(STRUCTURE), _link(rng)])
            doc = doc[:at] + piece.replace("L#", "http://l.example/").replace("S#", "s()") + doc[at:]
        yield doc


def corpus_files() -> Iterator[str]:
    """The HTML fuzz corpora, read as the proxy reads a page (undecodable bytes kept) and as Latin-1."""
    for name in ("decode_html", "drive_by", "navigation", "link_finder", "script", "rewrite_message"):
        for path in sorted((REPO / "fuzz" / "corpus" / name).iterdir()):
            data = path.read_bytes()
            yield data.decode("utf-8", "surrogateescape")
            yield data.decode("latin-1")


def fixture_strings() -> Iterator[str]:
    """Every string holding markup in the tests of the scanner, the inspection and the rewriter."""
    for name in ("test_rewrite.py", "test_html_states.py", "test_navigation.py", "test_inspect.py",
                 "test_inspect_fast.py", "test_inspection.py", "test_differential_html.py", "test_pages.py"):
        tree = ast.parse((REPO / "tests" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "<" in node.value:
                yield node.value


def assert_same(doc: str) -> bool:
    """The fast and the full path give the same page and count; whether the fast path read it itself."""
    for settings in SETTINGS:
        fast_memo: dict[str, str] = {}
        full = rewrite_html(doc, CONTEXT, settings, {}, fast=False)
        assert rewrite_html(doc, CONTEXT, settings, fast_memo) == full, doc
        # Again with the memo warm: each link found there instead of made.
        assert rewrite_html(doc, CONTEXT, settings, fast_memo) == full, doc
    return _plain_rewrite(doc, _Wrapper(CONTEXT, SETTINGS[0])) is not None


def _check_all(docs: Iterator[str]) -> tuple[int, int]:
    """(documents, of which read by the fast path itself), each one checked."""
    total = fast = 0
    for doc in docs:
        total += 1
        fast += assert_same(doc)
    return total, fast


def test_generated_pages_are_rewritten_alike() -> None:
    total, fast = _check_all(generated(3000, seed=14))
    assert fast > total // 2  # most of them exercise the fast path, not just its hand-over


def test_mutated_webmail_pages_are_rewritten_alike() -> None:
    total, fast = _check_all(mutated_pages(400, seed=15))
    assert 0 < fast < total


def test_differential_corpus_is_rewritten_alike() -> None:
    _check_all(corpus(1500, seed=16))


def test_fuzz_corpora_are_rewritten_alike() -> None:
    total, fast = _check_all(corpus_files())
    assert total > 300 and fast > 0


def test_fixtures_of_the_tests_are_rewritten_alike() -> None:
    total, fast = _check_all(fixture_strings())
    assert total > 200 and fast > 0


def test_the_webmail_page_takes_the_fast_path() -> None:
    page = webmail_page()
    assert assert_same(page)
    rewritten, count = rewrite_html(page, CONTEXT, SETTINGS[0], {})
    assert count == 200 and rewritten.count("https://click.test/v1/") == 200


def test_a_page_with_structure_is_handed_to_the_tokenizer() -> None:
    # Inside <svg> a <style> is no raw text: the link after it is one; the fast path must not read it.
    doc = '<svg><style><a href="http://in.svg.example/">x</a></style></svg><a href="http://out.example/">y</a>'
    assert _plain_rewrite(doc, _Wrapper(CONTEXT, SETTINGS[0])) is None
    rewritten, count = rewrite_html(doc, CONTEXT, SETTINGS[0], {})
    assert count == 2 and (rewritten, count) == rewrite_html(doc, CONTEXT, SETTINGS[0], {}, fast=False)


def test_raw_text_and_comments_hide_links_on_the_fast_path() -> None:
    doc = ('<title><a href="http://t.example/"></title><!-- <a href="http://c.example/"> -->'
           '<script>"<a href=http://s.example/>"</script><a href="http://real.example/">x</a>')
    assert _plain_rewrite(doc, _Wrapper(CONTEXT, SETTINGS[0])) is not None
    rewritten, count = rewrite_html(doc, CONTEXT, SETTINGS[0], {})
    assert count == 1 and "http://t.example/" in rewritten and "http://c.example/" in rewritten


def test_the_wrapper_hint_reads_ascii_links_as_its_regex_does() -> None:
    # unwrap's quick look for a vendor's name: substrings for ASCII, the regex (Unicode folding) otherwise.
    rng = random.Random(17)
    alphabet = "safelinkurdfcmogSAFELINKURDFCMOG=\r\n.:/?&x\u017f\u212a\u0130"
    for _ in range(50_000):
        url = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert _has_wrapper_hint(url) == (_WRAPPER_HINT.search(url) is not None), url
    for word in ("safelinks", "urldefense", "mimecast", "google", "=\n", "=\r\n", "=\r"):
        mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in word)
        assert _has_wrapper_hint(f"http://x.example/{mixed}/")
    assert _has_wrapper_hint("https://x.example/\u017fafelinks")  # long s folds to s: the regex path
