"""Differential tests of the markup scanner and the link rewriter against real HTML5 parsers.

The oracles are Lexbor (selectolax) and html5lib, each with scripting on (what a browser
that runs script builds) and, where it matters, off (a browser or mail client without
script, for which ``<noscript>`` is markup). Lexbor parses ``<select>`` content as current
browsers do, html5lib as older ones do; clickguard must hold against both.

A generated corpus (the tokenizer's and tree builder's corner cases put together at random,
and mutations of seed documents) is parsed by both; for every document:

- every script element a parser puts in the document (not in a ``<template>``), with the
  text it holds, the scanner reports with the same text (scripting on);
- every ``<meta http-equiv=refresh>`` a parser sees (scripting on or off), the scanner
  reports with the same ``content``;
- after `rewrite_html`, no link a parser sees (``a``/``area`` ``href``, SVG ``a`` ``href`` or
  ``xlink:href``, MathML ``href``; scripting on or off) is left unwrapped, and the tree is
  otherwise the same as the original's: nothing a browser sees as text was rewritten.

`make test` runs a bounded corpus; ``bench/differential_html.py`` runs >= 100,000 documents.
"""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat as expat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import html5lib  # type: ignore[import-untyped]  # no stubs published
from selectolax.lexbor import LexborHTMLParser, LexborNode

from clickguard.inspection.navigation.markup_scan import HTML, SCRIPT, START, MarkupScanner, tag_attributes
from clickguard.inspection.navigation.url_resolution import resolve
from clickguard.mail.links import click_context
from clickguard.mail.rewrite import LinkEdit, RewriteSettings, html_link_edits, rewrite_html

SVG_NS = "{http://www.w3.org/2000/svg}"
MATH_NS = "{http://www.w3.org/1998/Math/MathML}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
CLICK_HOST = "click.test"
_SETTINGS = RewriteSettings(click_host=CLICK_HOST, key=bytes(range(32)), recipient_mode="none")
_CONTEXT = click_context(key=bytes(range(32)), origin_ip=None, message_id=None, recipient=None,
                         recipient_mode="none", rewritten_at=1_700_000_000)
_WANTED = frozenset({"meta", "a", "area", "base"})


def _patch_html5lib() -> None:
    """Teach html5lib 1.1 the standard's newer rule for </br> and </p> in foreign content.

    Since 2023 the HTML standard (and Chromium, Firefox, Lexbor) leave SVG/MathML on these
    end tags as on the start tags that break out; html5lib predates it and stays inside.
    """
    phase = html5lib.html5parser.getPhases(False)["inForeignContent"]
    if getattr(phase, "_clickguard_patched", False):
        return
    original = phase.processEndTag

    def process_end_tag(self: Any, token: dict[str, Any]) -> Any:
        if token["name"] in ("br", "p"):
            tree, parser = self.tree, self.parser
            while (tree.openElements[-1].namespace != tree.defaultNamespace
                   and not parser.isHTMLIntegrationPoint(tree.openElements[-1])
                   and not parser.isMathMLTextIntegrationPoint(tree.openElements[-1])):
                tree.openElements.pop()
            return parser.phase.processEndTag(token)  # by the insertion mode's rules, not foreign content's
        return original(self, token)

    phase.processEndTag = process_end_tag
    phase._clickguard_patched = True
    in_body = html5lib.html5parser.getPhases(False)["inBody"]
    in_body.__dict__["endTagHandler"].default = _end_tag_other  # the dispatcher itself, not a bound view


def _end_tag_other(self: Any, token: dict[str, Any]) -> None:
    """html5lib 1.1's "any other end tag" in body, matching only HTML elements as the standard says.

    html5lib matches an open element of any namespace by its name, so that ``</desc>``
    closes an SVG ``<desc>`` (or ``</mi>`` a MathML ``<mi>``) from inside the HTML it holds;
    the standard, Chromium, Firefox and Lexbor leave it open and ignore the end tag.
    """
    name = token["name"]
    for node in self.tree.openElements[::-1]:
        if node.nameTuple == (html5lib.constants.namespaces["html"], name):
            self.tree.generateImpliedEndTags(exclude=name)
            while self.tree.openElements.pop() != node:
                pass
            return
        if node.nameTuple in html5lib.constants.specialElements:
            return  # a parse error: the end tag is ignored


_patch_html5lib()

# The pieces documents are made of. "S#" becomes a script's unique text ("s12()"), "L#" a
# link's unique URL, "M#" a refresh target: what each oracle sees is matched by them.
FRAGMENTS = [
    # script data, escaped and double-escaped states
    "<script>S#</script>", "<script><!--S#</script>", "<script><!--<script>S#</script>S#</script>",
    "<script><!--<script>S#--></script>S#</script>", "<script><!-->S#</script>", "<script><!--->S#</script>",
    "<script><!--S#-->S#</script>", "<script>S#<!--<script >", "</script>", "-->", "<script/>S#</script>",
    "<SCRIPT>S#</SCRIPT >", "<script>S#</script foo='>'>", "<script>S#</ſcript>S#</script>",
    "<script><!--<script/S#</script>", "<script>S#</script\f>", "<script type=module>S#</script>",
    # raw text and RCDATA
    "<style>", "</style>", "<xmp>", "</xmp>", "<iframe>", "</iframe>", "<noembed>", "</noembed>",
    "<noframes>", "</noframes>", "<textarea>", "</textarea>", "<title>", "</title>", "<plaintext>",
    "<noscript>", "</noscript>", "<ſtyle>", "</ſtyle>",
    # foreign content
    "<svg>", "</svg>", "<svg/>", "<math>", "</math>", "<math/>", "<foreignObject>", "</foreignObject>",
    "<desc>", "</desc>", "<mi>", "</mi>", "<mglyph>", "<annotation-xml encoding=text/html>",
    "<annotation-xml>", "</annotation-xml>", "<![CDATA[", "]]>", "<g>", "</g>", "<font color=red>",
    "<font>", "</font>", "<svg><script>S#</script></svg>", "<svg><script>S#&#x3b;S#</script>",
    # templates
    "<template>", "</template>",
    # comments and bogus comments
    "<!--", "<!-->", "<!--->", "--!>", "<!---->", "</3>", "<?x>", "<!x>", "</>", "<!DOCTYPE html>",
    "<!-- <!-- -->", "</ x>",
    # ordinary structure
    "<p>", "</p>", "<div>", "</div>", "<span>", "</span>", "<b>", "</b>", "<table>", "</table>", "<td>",
    "<li>", "<br>", "</br>", "<select>", "</select>", "<option>", "<body>", "<head>", "</body>",
    "<frameset>", "<object>", "</object>", "<button>", "</button>", "<h1>", "</h1>",
    # attributes
    '<p title="', '"', "'", "<p title='", "<p title=x", ">", "/>", "<p\0>", "\0", "\r\n", "\r",
    # links and refreshes
    "<a href=L#>", "<a href='L#'>", '<a title="x"href="L#">', "<a/href=L#>", "<area href=L#>",
    "<a xlink:href=L#>", "<a href=L# href=L#>", "<A HREF=L#>", "<a href=//L#>",
    '<meta http-equiv=refresh content="0;url=M#">', "<meta http-equiv=REFRESH content=0;M#>",
    '<meta content="1;M#" http-equiv="refresh">', "<base href=http://b.example/>", "<a href=rel/L#>",
    "<base href=//b.example/>", "<base href=/\\b.example/>", "<base href='https:b.example/'>",
    "text", " ", "<", "&amp;", "&lt;script&gt;",
]
SEEDS = [
    "<!DOCTYPE html><html><head><title>S</title><script>S#</script></head><body><p>x</p></body></html>",
    "<html><body><svg><style><p><script>S#</script></style></svg></body></html>",
    '<noscript><p title="</noscript><script>S#</script>"></noscript>',
    "<script><!--<script></script>S#</script>",
    "<div><svg></div><script>/*<!--*/S#/*-->*/</script>",
    "<template><script>S#</script></template><script>S#</script>",
    "<svg><foreignObject><div><style></style></div></foreignObject><script>S#</script></svg>",
    "<math><mi><script>S#</script></mi><annotation-xml encoding=text/html><style>x</style></math>",
    '<noscript><meta http-equiv=refresh content="0;url=M#"></noscript><a href=L#>x</a>',
    "<select><style><script>S#</script></style></select><svg><a xlink:href=L#>x</a></svg>",
]


def _fill(template: str, counter: list[int]) -> str:
    """A fragment with its placeholders made unique."""
    out = []
    for piece in template.replace("L#", "\x01").replace("M#", "\x02").replace("S#", "\x03"):
        if piece in "\x01\x02\x03":
            counter[0] += 1
            k = counter[0]
            out.append({"\x01": f"http://l{k}.example/", "\x02": f"http://m{k}.example/",
                        "\x03": f"s{k}()"}[piece])
        else:
            out.append(piece)
    return "".join(out)


def corpus(count: int, seed: int) -> Iterator[str]:
    """count documents: random sequences of fragments, and mutations of the seeds and of those."""
    rng = random.Random(seed)
    counter = [0]
    made: list[str] = [_fill(s, counter) for s in SEEDS]
    yield from made[:count]
    for _ in range(count - len(made[:count])):
        if rng.random() < 0.75:
            doc = "".join(_fill(rng.choice(FRAGMENTS), counter) for _ in range(rng.randint(2, 16)))
        else:
            doc = rng.choice(made)
            for _ in range(rng.randint(1, 4)):
                at = rng.randint(0, len(doc))
                roll = rng.random()
                if roll < 0.5:
                    doc = doc[:at] + _fill(rng.choice(FRAGMENTS), counter) + doc[at:]
                elif roll < 0.8:
                    doc = doc[:at] + doc[at + rng.randint(1, 8):]
                else:
                    other = rng.choice(made)
                    cut = rng.randint(0, len(other))
                    doc = doc[:at] + other[cut:cut + rng.randint(1, 40)] + doc[at:]
        if len(made) < 2000:
            made.append(doc)
        yield doc


# -- what the parsers see ---------------------------------------------------------


def _norm(text: str) -> str:
    """Text as the input stream hands it on: newlines normalised, NUL replaced."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")


def _html5lib(doc: str, scripting: bool) -> ET.Element:
    tree: ET.Element = html5lib.parse(doc, treebuilder="etree", namespaceHTMLElements=False,
                                      scripting=scripting)
    return tree


def _walk(element: ET.Element, in_template: bool = False) -> Iterator[tuple[ET.Element, bool]]:
    """(element, inside a template) for every element, in tree order."""
    yield element, in_template
    inner = in_template or element.tag == "template"
    for child in element:
        if isinstance(child.tag, str):
            yield from _walk(child, inner)


def _direct_text(element: ET.Element) -> str:
    return (element.text or "") + "".join(child.tail or "" for child in element)


def _lexbor_scripts(doc: str) -> list[str]:
    tree = LexborHTMLParser(doc, scripting=True)
    scripts = []
    for node in tree.css("script"):
        if _has_ancestor(node, ("math",)):
            continue  # maybe a MathML script, which never runs; html5lib tells the namespaces apart
        texts = []
        child: LexborNode | None = node.child
        while child is not None:
            if child.is_text_node:
                texts.append(child.text_content or "")
            child = child.next
        scripts.append("".join(texts))
    return scripts


def _has_ancestor(node: LexborNode, names: tuple[str, ...]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in names:
            return True
        parent = parent.parent
    return False


def _lexbor_links(doc: str, scripting: bool, foreign: bool = False) -> list[str]:
    """The URLs of HTML links; with foreign, also those of SVG and MathML elements that may be links."""
    tree = LexborHTMLParser(doc, scripting=scripting)
    found = []
    for node in tree.css("*" if foreign else "a, area"):
        attrs = node.attributes
        if _has_ancestor(node, ("svg", "math")) or node.tag in ("svg", "math"):
            # Maybe SVG/MathML: html5lib tells the namespaces apart.
            if foreign and (node.tag == "a" or _has_ancestor(node, ("math",)) or node.tag == "math"):
                found += [value for name in ("href", "xlink:href") if (value := attrs.get(name)) is not None]
            continue
        value = attrs.get("href")  # xlink:href counts on SVG links only: html5lib tells them apart
        if node.tag in ("a", "area") and value is not None:
            found.append(value)
    return found


def _html5lib_links(tree: ET.Element) -> list[str]:
    found = []
    for element, _ in _walk(tree):
        tag = element.tag
        value = None
        if tag in ("a", "area"):
            value = element.get("href")
        elif tag == SVG_NS + "a":
            value = element.get("href", element.get(XLINK_HREF))
        elif tag.startswith(MATH_NS):
            value = element.get("href")
        if value is not None:
            found.append(value)
    return found


def _base(tree: ET.Element) -> str | None:
    """The base URL the document's first <base href> makes, when it leaves for another host."""
    for element, inert in _walk(tree):
        if element.tag == "base" and not inert and element.get("href") is not None:
            return _base_url(element.get("href") or "")
    return None


def _lexbor_base(doc: str, scripting: bool) -> str | None:
    for node in LexborHTMLParser(doc, scripting=scripting).css("base"):
        href = node.attributes.get("href")
        if href is not None and not _has_ancestor(node, ("template", "svg", "math")):
            return _base_url(href)
    return None


# The URL standard's forbidden domain code points: a host holding one does not parse.
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
# Where the corpus's documents are: "https:host" is relative from one and names a host from the other.
_DOCUMENTS = ("https://document.invalid/", "http://document.invalid/")


def _base_url(href: str) -> str | None:
    """href as a <base> URL: None when it does not parse (the document's own URL stays the base)."""
    return next((url for document in _DOCUMENTS if (url := _elsewhere(href, document)) is not None), None)


def _elsewhere(href: str, base: str) -> str | None:
    """The http(s) URL href goes to from base, when it parses and names a host other than the document's."""
    resolved = resolve(href, base)
    if resolved is None or not re.match(r"https?://", resolved, re.I):
        return None
    host = unquote(re.sub(r":[0-9]*\Z", "", urlsplit(resolved).netloc.rpartition("@")[2]))
    if not host or _FORBIDDEN_HOST.search(host) or host.lower() == "document.invalid" or not _idna_ok(host):
        return None
    return resolved


def _idna_ok(host: str) -> bool:
    """Whether IDNA accepts the host's labels that are not ASCII (U+FFFD, for one, it does not)."""
    try:
        for label in host.split("."):
            if not label.isascii():
                label.encode("idna")
    except UnicodeError:
        return False
    return True


@dataclass
class Report:
    """What one document showed: the disagreements, each a short sentence."""

    disagreements: list[str] = field(default_factory=list)


def compare(doc: str) -> Report:
    """Compare the scanner and the rewriter with both parsers on one document."""
    report = Report()
    scanned_scripts: set[str] = set()
    scanned_refresh: set[str] = set()
    for tag in MarkupScanner(doc, _WANTED, auto_events=True, foreign_links=True):
        if tag.kind == SCRIPT:
            if not tag.inert and not tag.scripting_off:
                scanned_scripts.add(_norm(tag.text))
        elif tag.kind == START and tag.ns == HTML and tag.name == "meta" and not tag.inert:
            attrs = tag_attributes(doc[tag.attrs_start:tag.attrs_end], tag.complete)
            if attrs.get("http-equiv", "").lower() == "refresh":
                scanned_refresh.add(_norm(attrs.get("content", "")))
    trees = {scripting: _html5lib(doc, scripting) for scripting in (True, False)}
    # html5lib 1.1 predates parts of the standard's <template> handling (a template in
    # <select>, its marker in the list of active formatting elements): with a template in
    # the document only Lexbor, which follows the standard there, is asked.
    use_html5lib = "<template" not in doc.lower()
    oracle_scripts = [(text, "lexbor") for text in _lexbor_scripts(doc)]
    refreshes = [(content, "lexbor", on) for on in (True, False) for content in _lexbor_refreshes(doc, on)]
    if use_html5lib:
        oracle_scripts += [(_direct_text(e), "html5lib") for e, inert in _walk(trees[True])
                           if e.tag in ("script", SVG_NS + "script") and not inert]
        refreshes += [(e.get("content") or "", "html5lib", on) for on, tree in trees.items()
                      for e, inert in _walk(tree) if e.tag == "meta" and not inert and _is_refresh(e.attrib)]
    for text, oracle in oracle_scripts:
        if text.strip() and _norm(text) not in scanned_scripts:
            report.disagreements.append(f"script missed ({oracle}): {text[:60]!r}")
    for content, oracle, on in refreshes:
        if _norm(content) not in scanned_refresh:
            report.disagreements.append(f"refresh missed ({oracle}, scripting {'on' if on else 'off'}): "
                                        f"{content!r}")
    _compare_rewrite(doc, trees, use_html5lib, report)
    return report


def _is_refresh(attrs: Mapping[str, str | None]) -> bool:
    return (attrs.get("http-equiv") or "").lower() == "refresh" and attrs.get("content") is not None


def _lexbor_refreshes(doc: str, scripting: bool) -> list[str]:
    metas = LexborHTMLParser(doc, scripting=scripting).css("meta")
    return [node.attributes.get("content") or "" for node in metas if _is_refresh(node.attributes)]


def _is_wrapped(url: str) -> bool:
    return url.startswith(f"https://{CLICK_HOST}/")


# The four ways a document is read: by current browsers (Lexbor) and older ones (html5lib,
# whose <select> holds no raw text and no SVG), each with scripting on and off.
VIEWS = [("html5lib", True), ("html5lib", False), ("lexbor", True), ("lexbor", False)]


def _compare_rewrite(doc: str, trees: dict[bool, ET.Element], use_html5lib: bool, report: Report) -> None:
    """No link any view sees is left unwrapped, and rewriting changes nothing but links.

    Without use_html5lib (a <template> in the document, which html5lib 1.1 places wrongly)
    only Lexbor's views are asked.
    """
    edits = html_link_edits(doc, _CONTEXT, _SETTINGS)
    rewritten, _ = rewrite_html(doc, _CONTEXT, _SETTINGS)
    if _spliced(doc, edits) != rewritten:
        report.disagreements.append("the rewriter's edits are not what it wrote")
    changed = []
    for scripting, tree in trees.items():
        on = "on" if scripting else "off"
        after = _html5lib(rewritten, scripting) if edits else tree
        base = _base(tree)
        for url in _html5lib_links(after) if use_html5lib else []:
            if not _is_wrapped(url) and _leaves(url, base):
                report.disagreements.append(f"link left unwrapped (html5lib, scripting {on}): {url!r}")
        base = _lexbor_base(doc, scripting)
        for url in _lexbor_links(rewritten, scripting):
            if not _is_wrapped(url) and _leaves(url, base):
                report.disagreements.append(f"link left unwrapped (lexbor, scripting {on}): {url!r}")
        if edits and use_html5lib and _shape(tree, scripting) != _shape(after, scripting):
            changed.append(("html5lib", scripting))
        if edits and _lexbor_shape(doc, scripting) != _lexbor_shape(rewritten, scripting):
            changed.append(("lexbor", scripting))
    if changed:
        _explain_changes(doc, edits, changed, report)


def _explain_changes(doc: str, edits: list[LinkEdit], changed: list[tuple[str, bool]],
                     report: Report) -> None:
    """Where a view's tree changed by more than link URLs: each edit must be a link URL in some view.

    The same characters can be a link in one view and text in another (a link after
    ``</noscript>`` inside a script only a browser without scripting runs; a link after
    ``<select><style>`` that only older browsers see): the rewriter wraps it, and the view
    where it is text sees that text change. Each edit is therefore allowed where another
    view reads it as a link URL, and each view must be unchanged by the edits it reads as
    link URLs. (html5lib's misplaced <template> contents are links all the same: its
    views count here even when the document has a template.)
    """
    marked = _spliced(doc, [edit._replace(value=f"http://mark{k}.invalid/") for k, edit in enumerate(edits)])
    links_in = {view: _marked_links(view, marked) for view in VIEWS}
    for k, edit in enumerate(edits):
        if not any(k in found for found in links_in.values()):
            report.disagreements.append(
                f"rewrote what no parser reads as a link: {doc[edit.start:edit.stop]!r}")
    for parser, scripting in changed:
        own = [edit for k, edit in enumerate(edits) if k in links_in[(parser, scripting)]]
        if _view_shape(parser, scripting, _spliced(doc, own)) != _view_shape(parser, scripting, doc):
            report.disagreements.append(f"rewriting changed more than links ({parser}, scripting "
                                        f"{'on' if scripting else 'off'})")


def _spliced(doc: str, edits: list[LinkEdit]) -> str:
    pieces, done = [], 0
    for edit in edits:
        pieces += [doc[done:edit.start], edit.value]
        done = edit.stop
    return "".join(pieces) + doc[done:]


_MARK = re.compile(r"mark(\d+)\.invalid")


def _marked_links(view: tuple[str, bool], doc: str) -> set[int]:
    """The edits (by number) whose marker URL a view reads as a link URL."""
    parser, scripting = view
    if parser == "html5lib":
        urls = _html5lib_links(_html5lib(doc, scripting))
    else:
        urls = _lexbor_links(doc, scripting, foreign=True)
    return {int(match.group(1)) for url in urls for match in _MARK.finditer(url)}


def _view_shape(parser: str, scripting: bool, doc: str) -> list[object]:
    if parser == "html5lib":
        return _shape(_html5lib(doc, scripting), scripting)
    return _lexbor_shape(doc, scripting)


def _leaves(url: str, base: str | None) -> bool:
    """Whether a link goes to another host, resolved as a browser does (against the <base>, if any)."""
    return any(_elsewhere(url, base or document) is not None for document in _DOCUMENTS)


def _shape(tree: ET.Element, scripting: bool) -> list[object]:
    """The tree with link URLs blanked: what rewriting must leave as it was.

    With scripting on, the text of a <noscript> is left out: a browser without script reads
    it as markup, and the links it sees there are wrapped.
    """
    shape: list[object] = []
    for element, _ in _walk(tree):
        if scripting and element.tag == "noscript":
            shape.append(("noscript", sorted(element.attrib.items()), None, element.tail))
            continue
        attrs = dict(element.attrib)
        tag = element.tag
        if tag in ("a", "area", SVG_NS + "a") or tag.startswith(MATH_NS):
            for name in ("href", XLINK_HREF):
                if name in attrs:
                    attrs[name] = "_"
        shape.append((tag, sorted(attrs.items()), element.text, element.tail))
    return shape


def _lexbor_shape(doc: str, scripting: bool) -> list[object]:
    """Lexbor's tree with the URLs of links blanked (and, with scripting on, <noscript> text left out)."""
    shape: list[object] = []
    root = LexborHTMLParser(doc, scripting=scripting).root
    if root is None:
        return shape
    for node in root.traverse(include_text=True):
        if node.is_text_node:
            parent = node.parent
            if not (scripting and parent is not None and parent.tag == "noscript"):
                shape.append(node.text_content)
            continue
        attrs = dict(node.attributes)
        if node.tag in ("a", "area") or _has_ancestor(node, ("math",)) or node.tag == "math":
            for name in ("href", "xlink:href"):
                if name in attrs:
                    attrs[name] = "_"
        shape.append((node.tag, sorted(attrs.items(), key=str)))
    return shape


# -- XML documents: the XML reader against expat ----------------------------------------
#
# XHTML and SVG documents are read by the browser's XML parser. Firefox's is expat, which
# Python ships: with namespaces and the internal subset's parameter entities read (as
# Firefox sets it), every XHTML or SVG script expat completes, and every XHTML refresh it
# starts, before its first error (where a browser stops), the scanner reports in XML mode;
# and from a document expat reads to its end without error, nothing else.

XHTML_NS = "http://www.w3.org/1999/xhtml"
SVG_URI = "http://www.w3.org/2000/svg"
XML_PROLOGS = [
    "", '<?xml version="1.0"?>', "<!DOCTYPE html>",
    '<!DOCTYPE html [<!ENTITY e "S#">]>',
    "<!DOCTYPE html [<!ENTITY s \"<script>S#</script>\"><!ENTITY t '&#60;script>S#&#60;/script>'>]>",
    "<!DOCTYPE html [<!ENTITY % p \"<!ENTITY e 'S#'>\"> %p;]>",
    '<!DOCTYPE html [<!ATTLIST html xmlns CDATA #FIXED "http://www.w3.org/1999/xhtml">]>',
    '<!DOCTYPE svg [<!ATTLIST svg xmlns CDATA "http://www.w3.org/2000/svg"><!ENTITY e "S#">]>',
    "<!DOCTYPE html [<!ENTITY a \"&e;&e;\"><!ENTITY e 'S#'><!-- ]> --><?pi ]>?>]>",
]
XML_ROOTS = [
    ('<html xmlns="http://www.w3.org/1999/xhtml">', "</html>"),
    ('<svg xmlns="http://www.w3.org/2000/svg">', "</svg>"),
    ("<html>", "</html>"), ("<svg>", "</svg>"),
    ('<h:html xmlns:h="http://www.w3.org/1999/xhtml">', "</h:html>"),
    ('<root xmlns:s="http://www.w3.org/2000/svg">', "</root>"),
]
XML_FRAGMENTS = [
    "<script>S#</script>", "<script><![CDATA[S#]]></script>", "<script>S#<!-- S# -->S#</script>",
    "<script>&#115;S#&amp;&lt;</script>", "<script>S#<b>S#</b>S#</script>", "<script/>",
    "<script>&e;</script>",
    '<svg xmlns="http://www.w3.org/2000/svg"><script>S#</script></svg>', "<s:script>S#</s:script>",
    '<h:script xmlns:h="http://www.w3.org/1999/xhtml">S#</h:script>', '<script xmlns="">S#</script>',
    "<SCRIPT>S#</SCRIPT>", "<template><script>S#</script></template>",
    "<noscript><script>S#</script></noscript>",
    "<title><script>S#</script></title>", "<style><script>S#</script></style>", "&s;", "&t;", "&a;", "&e;",
    '<meta http-equiv="refresh" content="0;url=M#"/>', "<meta http-equiv='refresh' content='&e;'/>",
    '<meta HTTP-EQUIV="refresh" content="0;M#"/>', '<p xmlns="urn:x"><script>S#</script></p>',
    "<![CDATA[<script>S#</script>]]>", "<!-- <script>S#</script> -->", "<?pi <script>S#</script> ?>",
    "<p>S#</p>", "<b/>", "<a b='c' d=\"&e;\">S#</a>", "text", " ", "\r\n", "&amp;",
]
# Fragments that break well-formedness: a browser stops at the first.
XML_JUNK = ["<p>", "</p>", "</x>", "<", "&", "]]>", "<!--", "-->", '"', "'", "&nbsp;", "&#0;", "<p a=b>",
            "<p a='1' a='2'>", "<script>", "</script>"]


def xml_corpus(count: int, seed: int) -> Iterator[str]:
    """count XML documents: a prolog, a root, random fragments; a quarter of them mutated."""
    rng = random.Random(seed)
    counter = [0]
    for _ in range(count):
        opening, closing = rng.choice(XML_ROOTS)
        body = "".join(_fill(rng.choice(XML_JUNK if rng.random() < 0.05 else XML_FRAGMENTS), counter)
                       for _ in range(rng.randint(1, 10)))
        doc = _fill(rng.choice(XML_PROLOGS), counter) + opening + body + closing
        if rng.random() < 0.25:
            at = rng.randint(0, len(doc))
            doc = doc[:at] + doc[at + rng.randint(1, 6):]
        yield doc


def compare_xml(doc: str) -> Report:
    """Compare the scanner in XML mode with expat on one document."""
    report = Report()
    scripts: set[str] = set()
    refreshes: set[str] = set()
    for tag in MarkupScanner(doc, _WANTED, auto_events=True, foreign_links=True, xml=True):
        attrs = tag.attributes(doc)
        if tag.kind == SCRIPT and not tag.inert:
            scripts.add(tag.text)
        elif (tag.kind == START and tag.ns == HTML and tag.name == "meta" and not tag.inert
              and attrs.get("http-equiv", "").lower() == "refresh"):
            refreshes.add(attrs.get("content", ""))
    oracle = _Expat(doc)
    for text in oracle.scripts:
        if text.strip() and text not in scripts:
            report.disagreements.append(f"xml script missed (expat): {text[:60]!r}")
    for content in oracle.refreshes:
        if content not in refreshes:
            report.disagreements.append(f"xml refresh missed (expat): {content!r}")
    if oracle.error is None:
        for text in scripts - set(oracle.scripts):
            if text.strip():
                report.disagreements.append(f"xml script expat never runs: {text[:60]!r}")
    return report


class _Expat:
    """What expat (Firefox's XML parser) builds of a document, up to its first error."""

    def __init__(self, doc: str) -> None:
        self.scripts: list[str] = []
        self.refreshes: list[str] = []
        self.error: str | None = None
        self.stack: list[tuple[str, list[str] | None]] = []  # (namespace and name, a script's text)
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_UNLESS_STANDALONE)
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.characters
        try:
            parser.Parse(doc, True)
        except expat.ExpatError as e:
            self.error = str(e)

    def inert(self) -> bool:
        return any(name == f"{XHTML_NS} template" for name, _ in self.stack)

    def start(self, name: str, attrs: dict[str, str]) -> None:
        script = name in (f"{XHTML_NS} script", f"{SVG_URI} script") and not self.inert()
        if name == f"{XHTML_NS} meta" and not self.inert() and _is_refresh(attrs):
            self.refreshes.append(attrs["content"])
        self.stack.append((name, [] if script else None))

    def end(self, name: str) -> None:
        _, text = self.stack.pop()
        if text is not None:
            self.scripts.append("".join(text))

    def characters(self, data: str) -> None:
        if self.stack and self.stack[-1][1] is not None:
            self.stack[-1][1].append(data)


# -- the bounded corpus -------------------------------------------------------------


def test_seeds_agree() -> None:
    counter = [0]
    for seed in SEEDS:
        doc = _fill(seed, counter)
        assert compare(doc).disagreements == [], doc


def test_generated_corpus_agrees() -> None:
    """A bounded corpus for make test (bench/differential_html.py runs the full one)."""
    bad = []
    for doc in corpus(1500, seed=10):
        report = compare(doc)
        if report.disagreements:
            bad.append((doc, report.disagreements))
    assert bad[:3] == [] and len(bad) == 0


def test_xml_corpus_agrees_with_expat() -> None:
    """A bounded XML corpus for make test (bench/differential_html.py runs the full one)."""
    bad = [(doc, report.disagreements) for doc in xml_corpus(2000, seed=10)
           if (report := compare_xml(doc)).disagreements]
    assert bad[:3] == [] and len(bad) == 0
