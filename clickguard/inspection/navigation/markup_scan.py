"""Markup read as a browser's HTML parser reads it, for the few tags that can navigate, load or link.

`MarkupScanner` follows the WHATWG HTML standard's tokenizer (data, RCDATA, RAWTEXT, script
data with its escaped and double-escaped states, PLAINTEXT, comments and bogus comments,
CDATA sections in foreign content, attributes) and as much of tree construction as
decides where script and links are: which elements are raw text, when ``<svg>``/``<math>``
content starts and which tags break out of it (integration points included), ``template``
contents (inert, unless a declarative shadow root), and ``<noscript>`` read as raw text, as
a browser with scripting on does, with its content read again as markup, as one without
does. It yields the tags a caller asked for and every script's text; `tag_attributes`
(or `Markup.attributes`) reads a tag's attributes. What the tags mean is the caller's business.

An XHTML or SVG document is read by a browser's XML parser instead: ``xml=True`` hands it
to `xml_scan.XmlReader`, which yields the same events read by XML rules.

The cost is linear in the input. Outside foreign content one possessive regular
expression skips text, comments and the tags nobody asked for; the stack of open elements
(needed only to know when foreign content and templates end) is brought up to date lazily,
tag by tag, only when an ``<svg>``, ``<math>`` or ``<template>`` needs it, so each part of
the input is walked at most twice (once more for the scripting-off view of ``<noscript>``).
`MarkupScanner.steps` counts the tokens and stack operations, for tests that bound them.
"""

from __future__ import annotations

import html
import html.entities
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple

from clickguard.inspection.navigation.results import StepsSpent

ASCII_WS = "\t\n\f\r "  # the HTML standard's ASCII whitespace
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_WS = r"[\t\n\f\r ]"
_VALUE = r"""(?>"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z)|[^\t\n\f\r >]*+)"""
_ATTRIBUTE = rf"(?>[^\t\n\f\r />][^\t\n\f\r />=]*+(?>{_WS}*+={_WS}*+{_VALUE})?+)"
# A "/" right before ">" makes a start tag self-closing; anywhere else it only separates.
_ATTRIBUTES = rf"(?:{_WS}++|/(?!>)|{_ATTRIBUTE})*+"
TAG_ATTRIBUTES = _ATTRIBUTES  # a start tag's attributes up to its "/>" or ">", as the tokenizer reads them
# Event attributes that fire without a user: the tags that carry them must be looked at.
AUTO_EVENTS = frozenset({
    "load", "error", "pageshow", "readystatechange", "focus", "focusin", "toggle", "begin", "end",
    "animationstart", "animationend", "animationiteration", "transitionstart", "transitionrun",
    "transitionend",
})
_EVENT_NAMES = "|".join(sorted(AUTO_EVENTS, key=len, reverse=True))
_NOT_AUTO_EVENT = rf"(?!on(?:{_EVENT_NAMES})(?:[\t\n\f\r />=]|\Z))"
_QUIET_ATTRIBUTES = rf"(?:[\t\n\f\r /]*+{_NOT_AUTO_EVENT}{_ATTRIBUTE})*+[\t\n\f\r /]*+"
_AUTO_EVENT_ATTRIBUTE = re.compile(rf"on(?:{_EVENT_NAMES})(?:[\t\n\f\r />=]|\Z)", re.I | re.A)

# One token at a "<" (the tokenizer's tag open state and what follows it). CDATA is exact
# case; the rest holds no letters to fold.
_TOKEN = re.compile(
    rf"""<(?:
        (?P<comment>!--)
      | (?P<cdata>!\[CDATA\[)
      | (?P<bogus>[!?]|/(?=[^A-Za-z>]))  # "</" at the end of the text is text
      | (?P<nothing>/>)
      | (?P<end>/)?(?P<name>[A-Za-z][^\t\n\f\r />]*+)(?P<attrs>{_ATTRIBUTES})(?P<sc>/)?(?P<close>>)?
    )""",
    re.X | re.A | re.S,
)
_TAG_TAIL = re.compile(rf"(?:{_ATTRIBUTES})/?(?:>|\Z)", re.A)  # an end tag's attributes, to its ">"
_COMMENT_END = re.compile(r"--!?>")

# How written markup is read: a document, document.write output, or innerHTML.
DOCUMENT, WRITTEN, INNER = 0, 1, 2
# Namespaces of elements.
HTML, SVG, MATH = 0, 1, 2
# What one event is: a start tag asked for, or a script's text.
START, SCRIPT = 0, 1

RAW_TEXT = frozenset({"style", "textarea", "title", "xmp", "noembed", "noframes", "iframe"})
_STRUCTURAL = frozenset({"svg", "math", "template", "select"})
_VOID = frozenset({
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr", "html", "head", "body", "frameset",
})  # and the ones never pushed here (html, head, body, frameset: their end tags close nothing)
_SPECIAL = frozenset({
    "address", "applet", "area", "article", "aside", "base", "basefont", "bgsound", "blockquote", "body",
    "br", "button", "caption", "center", "col", "colgroup", "dd", "details", "dir", "div", "dl", "dt",
    "embed", "fieldset", "figcaption", "figure", "footer", "form", "frame", "frameset", "h1", "h2", "h3",
    "h4", "h5", "h6", "head", "header", "hgroup", "hr", "html", "iframe", "img", "input", "keygen", "li",
    "link", "listing", "main", "marquee", "menu", "meta", "nav", "noembed", "noframes", "noscript",
    "object", "ol", "p", "param", "plaintext", "pre", "script", "search", "section", "select", "source",
    "style", "summary", "table", "tbody", "td", "template", "textarea", "tfoot", "th", "thead", "title",
    "tr", "track", "ul", "wbr", "xmp",
})
# "select": since the select parser relaxation, what is inside cannot close what is outside.
_SCOPE = frozenset({"applet", "caption", "html", "table", "td", "th", "marquee", "object", "template",
                    "select"})
_CLOSES_P = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl",
    "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "main", "menu", "nav", "ol", "p",
    "search", "section", "summary", "ul", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "listing", "form",
    "table", "xmp", "plaintext", "hr",
})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_SCOPED_END = frozenset({
    "address", "article", "aside", "blockquote", "button", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "listing", "main", "menu",
    "nav", "ol", "pre", "search", "section", "summary", "ul", "applet", "marquee", "object", "form", "dd",
    "dt", "select", "table", "caption", "td", "th", "tr", "tbody", "thead", "tfoot",
    # formatting elements: the adoption agency pops to them when they are in scope
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
})
# Start tags that leave foreign content (the standard's list; <font> only with these attributes).
_BREAKOUT = frozenset({
    "b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em", "embed", "h1",
    "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing", "menu", "meta", "nobr", "ol",
    "p", "pre", "ruby", "s", "small", "span", "strong", "strike", "sub", "sup", "table", "tt", "u", "ul",
    "var",
})
_FONT_BREAKOUT = re.compile(r"(?:^|[\t\n\f\r /\"'])(?:color|face|size)(?:[\t\n\f\r /=>]|\Z)", re.I | re.A)
_TEXT_IP_NAMES = frozenset({"mi", "mo", "mn", "ms", "mtext"})
_SVG_HTML_IP_NAMES = frozenset({"foreignobject", "desc", "title"})
_ANNOTATION_HTML = frozenset({"text/html", "application/xhtml+xml"})
# Flags of a stack entry.
_F_SPECIAL, _F_SCOPE, _F_HTML_IP, _F_TEXT_IP, _F_ANNOTATION, _F_INERT, _F_SCRIPT = 1, 2, 4, 8, 16, 32, 64
_IP = _F_HTML_IP | _F_TEXT_IP

_SCRIPT_DATA = re.compile(r"<!--|</script(?=[\t\n\f\r />])", re.I | re.A)
_SCRIPT_ESCAPED = re.compile(r"-->|<(/?)script(?=[\t\n\f\r />])", re.I | re.A)
_SCRIPT_DOUBLE_ESCAPED = re.compile(r"-->|</script(?=[\t\n\f\r />])", re.I | re.A)
_SELECT_END = re.compile(r"</select(?=[\t\n\f\r />])", re.I | re.A)
_RAW_END = {name: re.compile(rf"</{name}(?=[\t\n\f\r />])", re.I | re.A)
            for name in (*RAW_TEXT, "noscript")}

_ATTRIBUTE_PARTS = re.compile(
    rf"""{_WS}++|/|(?P<name>[^\t\n\f\r />][^\t\n\f\r />=]*+)
    (?:{_WS}*+={_WS}*+(?:"(?P<dq>[^"]*+)"?|'(?P<sq>[^']*+)'?|(?P<uq>[^\t\n\f\r >]*+)))?""",
    re.VERBOSE,
)
JS_TYPES = frozenset({
    "", "module", "text/javascript", "application/javascript", "application/ecmascript",
    "application/x-ecmascript", "application/x-javascript", "text/ecmascript", "text/javascript1.0",
    "text/javascript1.1", "text/javascript1.2", "text/javascript1.3", "text/javascript1.4",
    "text/javascript1.5", "text/jscript", "text/livescript", "text/x-ecmascript", "text/x-javascript",
})
_DIMENSION = re.compile(r"[\t\n\f\r ]*(\d+(?:\.\d*)?|\.\d+)(%?)", re.A)
_HIDING_STYLE = re.compile(
    r"(?:^|[;\s])(?:display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0*(?:\.0*)?\s*(?:!|;|$)"
    r"|(?:width|height)\s*:\s*(?:0*[01](?:\.0*)?)(?:px)?\s*(?:!|;|$))",
    re.I | re.A,
)


def ascii_lower(text: str) -> str:
    """text with only A-Z lowered, as HTML folds tag and attribute names (never "K" for a Kelvin sign)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


class Markup(NamedTuple):
    """One thing the scanner found: a start tag asked for, or a script and its text."""

    kind: int  # START or SCRIPT
    name: str  # lower-case tag name (in XML: the local name, as written)
    ns: int  # HTML, SVG or MATH
    start: int  # the "<" of the start tag
    attrs_start: int
    attrs_end: int
    end: int  # just after the start tag
    complete: bool  # the start tag ends with ">" (not cut by the end of the text)
    inert: bool  # inside a <template>: never rendered, never run
    scripting_off: bool  # seen only as a browser without scripting reads <noscript>
    text: str = ""  # a script's text (SCRIPT)
    attrs: dict[str, str] | None = None  # read by the XML reader: its attributes, decoded

    def attributes(self, text: str) -> dict[str, str]:
        """The tag's attributes by name: read from text (HTML), or as the XML reader decoded them."""
        if self.attrs is not None:
            return self.attrs
        return tag_attributes(text[self.attrs_start:self.attrs_end], self.complete)


class _Entry(NamedTuple):
    """An element on the stack of open elements."""

    ns: int
    name: str
    flags: int


POLL_EVERY = 64  # tokens between two calls of a scanner's poll
# Views (of <noscript>, of <select> in older browsers) within views: a page nests them to any
# depth, each a scanner of its own on the stack. A reading with a budget (the navigation
# reader sets `max_depth`) stops past this (unread) instead of at Python's recursion limit.
MAX_VIEW_DEPTH = 32


def _no_poll() -> None:
    """A scan with no time bound: nothing to look at."""


class MarkupScanner:
    """The HTML standard's tokenizer and the parts of tree construction that move script and links.

    ``wanted``: names of the start tags to report (in any namespace); ``auto_events``: also
    report tags carrying an event attribute that fires by itself; ``foreign_links``: also
    report every SVG/MathML start tag with an ``href`` in its attributes. Scripts are always
    reported, with their text. ``scripting``: read ``<noscript>`` as raw text (a browser
    with script on), and, when ``noscript_view``, its content again as markup (one without).
    ``xml``: the text is an XML document (XHTML, SVG), read by XML rules instead (`xml_scan`).
    """

    def __init__(self, text: str, wanted: frozenset[str], *, auto_events: bool = False,
                 foreign_links: bool = False, scripting: bool = True, noscript_view: bool = True,
                 xml: bool = False, start: int = 0, _open: tuple[_Entry, ...] = (),
                 _old_select_until: int = -1) -> None:
        self.text = text
        self.xml = xml
        self.n = len(text)
        self.pos = start
        self.wanted = wanted
        self.auto_events = auto_events
        self.foreign_links = foreign_links
        self.scripting = scripting
        self.noscript_view = noscript_view
        self.steps = 0
        # Called every POLL_EVERY tokens: a reading with a time bound looks at its clock there
        # (a scan charges its steps only as it reports tags, and a page may report none).
        self.poll: Callable[[], None] = _no_poll
        self.depth = 0  # views this one is within
        self.max_depth: int | None = None  # views deeper than this stop the scan (StepsSpent)
        self.stack: list[_Entry] = []
        self.html_at: dict[str, list[int]] = {}  # HTML elements open, by name: their stack indices
        self.foreign_at: dict[str, list[int]] = {}
        self.specials: list[int] = []
        self.scopes: list[int] = []
        self.htmls: list[int] = []
        self.ips: list[int] = []
        self.foreign = 0  # SVG/MathML elements open
        self.selects = 0  # <select> elements open
        # Older browsers ignore most tags inside <select> (no raw text, no foreign content):
        # a raw-text element there is read again that way, up to this position.
        self.old_select_until = _old_select_until
        self.in_old_select = _old_select_until >= 0  # until a tag closes the <select> in that reading
        self.old_select_covered = start
        self.inert = 0  # inert templates open
        self.scripts: dict[int, list[str]] = {}  # open SVG scripts: their text so far
        self.script_tags: dict[int, tuple[int, int, int, int]] = {}
        self.valid_until = start  # the stack reflects every token before this position
        self.pending: list[Markup] = []
        self.off_covered = start  # the scripting-off view of <noscript> has read up to here
        self.stop_when_empty = bool(_open)
        for entry in _open:
            self._push(entry)
        self.fast = _fast_scan(wanted, auto_events, scripting)

    # -- the scan -----------------------------------------------------------------

    def __iter__(self) -> Iterator[Markup]:
        """Every wanted start tag and every script, in document order."""
        if self.xml:
            from clickguard.inspection.navigation.xml_scan import XmlReader  # it builds on this module

            yield from XmlReader(self).events()
            return
        text, n = self.text, self.n
        pos = self.pos
        pending = self.pending
        poll, countdown = self.poll, POLL_EVERY
        while pos < n:
            if (self.stop_when_empty and not self.stack) or 0 <= self.old_select_until <= pos:
                break
            countdown -= 1
            if not countdown:
                countdown = POLL_EVERY
                poll()
            if not (self.foreign or self.selects or self.in_old_select):
                match = self.fast(text, pos)
                self.steps += 1
                assert match is not None  # every part of the pattern is optional
                pos = match.end()
                if pos >= n:
                    break
            pos = self._token(pos, emit=True, sync=bool(self.foreign or self.selects or self.in_old_select))
            self.steps += 1
            if pending:
                yield from pending
                pending.clear()
        self.pos = pos
        if self.stop_when_empty and self.stack:
            self.pos = n
        self._pop_to(0, emit=True)  # the end: open SVG scripts keep the text they have
        yield from pending
        pending.clear()

    def _catch_up(self, pos: int) -> None:
        """Bring the stack of open elements up to pos, tag by tag, reporting nothing."""
        p = self.valid_until
        poll, countdown = self.poll, POLL_EVERY
        while p < pos:
            p = self._token(p, emit=False, sync=True)
            self.steps += 1
            countdown -= 1
            if not countdown:
                countdown = POLL_EVERY
                poll()
        self.valid_until = pos

    def _token(self, pos: int, emit: bool, sync: bool) -> int:
        """Read the one token at pos; the position after it."""
        text = self.text
        if text[pos] != "<":
            nxt = text.find("<", pos)
            nxt = self.n if nxt < 0 else nxt
            if sync and self.scripts and self.stack and self.stack[-1].flags & _F_SCRIPT:
                self._script_text(_decode_text(text[pos:nxt]))
            return self._done(nxt, sync)
        match = _TOKEN.match(text, pos)
        if match is None:  # a "<" that is text
            if sync and self.scripts and self.stack and self.stack[-1].flags & _F_SCRIPT:
                self._script_text("<")
            return self._done(pos + 1, sync)
        if match.group("comment") is not None:
            after = pos + 4
            if text.startswith(">", after):
                return self._done(after + 1, sync)
            if text.startswith("->", after):
                return self._done(after + 2, sync)
            end = _COMMENT_END.search(text, after)
            return self._done(end.end() if end else self.n, sync)
        if match.group("cdata") is not None and self.stack and self.stack[-1].ns != HTML:
            # A CDATA section only in foreign content; elsewhere a bogus comment.
            close = text.find("]]>", match.end())
            if sync and self.stack[-1].flags & _F_SCRIPT:
                self._script_text(text[match.end():self.n if close < 0 else close])
            return self._done(self.n if close < 0 else close + 3, sync)
        if match.group("bogus") is not None or match.group("cdata") is not None:
            close = text.find(">", pos + 2)
            return self._done(self.n if close < 0 else close + 1, sync)
        if match.group("nothing") is not None:
            return self._done(pos + 3, sync)
        name = ascii_lower(match.group("name"))
        if "\0" in name:
            name = name.replace("\0", "\ufffd")
        if match.group("close") is None:
            # A tag cut by the end of the text: a browser drops it; a sample's last tag is still read.
            if emit and match.group("end") is None and self._asked(name, match, HTML):
                self._emit_start(name, self._ns_for_start(name), match, complete=False)
            return self._done(self.n, sync)
        if match.group("end") is not None:
            if name == "select":
                self.in_old_select = False
            if not sync and (name == "template" or (name == "noscript" and self.stop_when_empty)):
                self._catch_up(pos)
                sync = True
            if sync:
                self._end_tag(name, emit)
            return self._done(match.end(), sync)
        if not sync and name in _STRUCTURAL:
            self._catch_up(pos)
            sync = True
        return self._done(self._start_tag(name, match, emit, sync), sync)

    def _done(self, pos: int, sync: bool) -> int:
        """pos, remembered as the point the stack is valid to when the token was read in sync."""
        if sync:
            self.valid_until = pos
        return pos

    # -- start tags -----------------------------------------------------------------

    def _ns_for_start(self, name: str) -> int:
        """The namespace a start tag's element gets (without changing anything)."""
        if not self.stack or self._html_rules(name):
            return SVG if name == "svg" else MATH if name == "math" else HTML
        return HTML if name in _BREAKOUT else self.stack[-1].ns

    def _html_rules(self, name: str) -> bool:
        """Whether a start tag is handled by the HTML rules (not those for foreign content)."""
        top = self.stack[-1]
        if top.ns == HTML or top.flags & _F_HTML_IP:
            return True
        if top.flags & _F_TEXT_IP:
            return name not in ("mglyph", "malignmark")
        return bool(top.flags & _F_ANNOTATION) and name == "svg"

    def _start_tag(self, name: str, match: re.Match[str], emit: bool, sync: bool) -> int:
        """A start tag by the tree construction rules; the position after it (and its raw text)."""
        if self.stack and self.stack[-1].ns != HTML and not self._html_rules(name):
            if name in _BREAKOUT or (name == "font" and _FONT_BREAKOUT.search(match.group("attrs"))):
                self._pop_to(self._html_boundary(), emit)
            else:
                return self._foreign_start(name, match, emit)
        return self._html_start(name, match, emit, sync)

    def _html_start(self, name: str, match: re.Match[str], emit: bool, sync: bool) -> int:
        """A start tag read by the HTML rules."""
        end = match.end()
        if self.in_old_select:
            if name in ("select", "input", "keygen", "textarea"):
                self.in_old_select = False  # these close the <select>
            elif name not in ("script", "template", "option", "optgroup", "hr"):
                return end  # ignored, and the content of a raw-text element is markup
        ns = SVG if name == "svg" else MATH if name == "math" else HTML
        if emit and self._asked(name, match, ns):
            self._emit_start(name, ns, match, True)
        if name == "script":
            content_end, after = self._script_end(end)
            if emit:
                self.pending.append(self._markup(SCRIPT, name, HTML, match, True, self.text[end:content_end]))
            return after
        if name in RAW_TEXT or (name == "noscript" and self.scripting):
            content_end, after = self._raw_end(name, end)
            if name == "noscript" and self.noscript_view and emit and end >= self.off_covered:
                self._noscript_off(end)
            if self.selects and emit and name != "textarea":
                self._old_select(end, after)
            if sync and name in _CLOSES_P:
                self._close_p(emit)
            return after
        if name == "plaintext":
            if self.selects and emit:
                self._old_select(end, self.n)
            return self.n
        if not sync:
            return end
        if name in ("svg", "math"):
            if self.selects and emit:
                close = _SELECT_END.search(self.text, end)
                self._old_select(end, close.start() if close else self.n)
            if match.group("sc") is None:
                self._push(_Entry(SVG if name == "svg" else MATH, name, 0))
            return end
        if name == "template":
            attrs = tag_attributes(match.group("attrs"), True)
            shadow = ascii_lower(attrs.get("shadowrootmode", "")) in ("open", "closed")
            self._push(_Entry(HTML, name, _F_SPECIAL | _F_SCOPE | (0 if shadow else _F_INERT)))
            return end
        if name in _VOID:
            return end
        if name in _CLOSES_P:
            self._close_p(emit)
            if name in _HEADINGS and self.stack and self.stack[-1].name in _HEADINGS:
                self._pop_to(len(self.stack) - 1, emit)
        elif name in ("li", "dd", "dt"):
            self._close_list_item(("li",) if name == "li" else ("dd", "dt"), emit)
        elif name in ("option", "optgroup") and self.stack and self.stack[-1].name == "option":
            self._pop_to(len(self.stack) - 1, emit)
        flags = (_F_SPECIAL if name in _SPECIAL else 0) | (_F_SCOPE if name in _SCOPE else 0)
        self._push(_Entry(HTML, name, flags))
        return end

    def _foreign_start(self, name: str, match: re.Match[str], emit: bool) -> int:
        """A start tag inside SVG or MathML: an element of that namespace, never raw text."""
        ns = self.stack[-1].ns
        end = match.end()
        if emit and self._asked(name, match, ns):
            self._emit_start(name, ns, match, complete=True)
        if match.group("sc") is not None:
            return end  # self-closing is honoured in foreign content
        flags = 0
        if ns == SVG:
            if name in _SVG_HTML_IP_NAMES:
                flags = _F_HTML_IP | _F_SPECIAL | _F_SCOPE
            elif name == "script":
                flags = _F_SCRIPT
        elif name in _TEXT_IP_NAMES:
            flags = _F_TEXT_IP | _F_SPECIAL | _F_SCOPE
        elif name == "annotation-xml":
            encoding = ascii_lower(tag_attributes(match.group("attrs"), True).get("encoding", ""))
            flags = _F_ANNOTATION | _F_SPECIAL | _F_SCOPE
            if encoding in _ANNOTATION_HTML:
                flags |= _F_HTML_IP
        index = len(self.stack)
        self._push(_Entry(ns, name, flags))
        if flags & _F_SCRIPT:
            self.scripts[index] = []
            self.script_tags[index] = (match.start(), match.start("attrs"), match.end("attrs"), end)
        return end

    def _asked(self, name: str, match: re.Match[str], ns: int) -> bool:
        """Whether the caller wants this start tag reported."""
        if name in self.wanted:
            return True
        attrs = match.group("attrs")
        if self.auto_events and "n" in attrs and _AUTO_EVENT_ATTRIBUTE.search(attrs):
            return True
        return self.foreign_links and ns != HTML and "ref" in attrs.lower()

    def _emit_start(self, name: str, ns: int, match: re.Match[str], complete: bool) -> None:
        """Report a start tag."""
        self.pending.append(self._markup(START, name, ns, match, complete, ""))

    def _markup(self, kind: int, name: str, ns: int, match: re.Match[str], complete: bool,
                text: str) -> Markup:
        """The event for a tag read by match."""
        return Markup(kind, name, ns, match.start(), match.start("attrs"), match.end("attrs"), match.end(),
                      complete, self.inert > 0, not self.scripting, text)

    # -- raw text -----------------------------------------------------------------

    def _raw_end(self, name: str, pos: int) -> tuple[int, int]:
        """(end of the text, end of the end tag) of a RAWTEXT/RCDATA element whose text starts at pos."""
        return raw_text_end(self.text, name, pos)

    def _script_end(self, pos: int) -> tuple[int, int]:
        """(end of the text, end of the end tag) of a script: script data and its escaped states."""
        content_end, after, steps = script_text_end(self.text, pos)
        self.steps += steps
        return content_end, after

    def _noscript_off(self, pos: int) -> None:
        """Read a <noscript>'s content as markup, as a browser without scripting does."""
        view = MarkupScanner(self.text, self.wanted, auto_events=self.auto_events,
                             foreign_links=self.foreign_links, scripting=False, noscript_view=False,
                             start=pos, _open=(_Entry(HTML, "noscript", _F_SPECIAL),))
        self._enter(view)
        self.pending.extend(view)
        self.steps += view.steps
        self.off_covered = max(view.pos, pos + 1)

    def _enter(self, view: MarkupScanner) -> None:
        """A view within this scan gets its state; StepsSpent past max_depth views deep."""
        if self.max_depth is not None and self.depth >= self.max_depth:
            raise StepsSpent(f"views of the markup nested more than {self.max_depth} deep")
        self.poll()  # a view reads only a few tokens before the next one starts: look at the clock here
        view.inert, view.poll = self.inert, self.poll
        view.depth, view.max_depth = self.depth + 1, self.max_depth

    def _old_select(self, pos: int, until: int) -> None:
        """Read inside <select> again as browsers before the select relaxation do: tags there ignored."""
        if pos < self.old_select_covered:
            return
        self.old_select_covered = until
        view = MarkupScanner(self.text, self.wanted, auto_events=self.auto_events,
                             foreign_links=self.foreign_links, scripting=self.scripting, noscript_view=False,
                             start=pos, _old_select_until=until)
        self._enter(view)
        self.pending.extend(view)
        self.steps += view.steps

    def _script_text(self, chunk: str) -> None:
        """Text that is a direct child of the open SVG script on top of the stack."""
        self.scripts[len(self.stack) - 1].append(chunk)

    # -- end tags -----------------------------------------------------------------

    def _end_tag(self, name: str, emit: bool) -> None:
        """An end tag by the tree construction rules (foreign content first)."""
        if self.stack and self.stack[-1].ns != HTML:
            if name in ("br", "p"):
                self._pop_to(self._html_boundary(), emit)
            else:
                at = self.foreign_at.get(name)
                if at and at[-1] > (self.htmls[-1] if self.htmls else -1):
                    self._pop_to(at[-1], emit)
                    return
        if name == "template":
            at = self.html_at.get(name)
            if at:
                self._pop_to(at[-1], emit)
            return
        if name in ("p", "li") or name in _SCOPED_END or name in _HEADINGS:
            extra = ("button",) if name == "p" else ("ol", "ul") if name == "li" else ()
            candidates = _HEADINGS if name in _HEADINGS else (name,)
            target = max((self.html_at[c][-1] for c in candidates if self.html_at.get(c)), default=-1)
            if target >= 0 and target >= self._boundary(extra):
                self._pop_to(target, emit)
            return
        at = self.html_at.get(name)
        if at and at[-1] >= (self.specials[-1] if self.specials else -1):
            self._pop_to(at[-1], emit)

    # -- the stack of open elements -------------------------------------------------

    def _boundary(self, extra: tuple[str, ...]) -> int:
        """The index of the innermost element that ends the scope (with extra names), or -1."""
        boundary = self.scopes[-1] if self.scopes else -1
        for name in extra:
            at = self.html_at.get(name)
            if at and at[-1] > boundary:
                boundary = at[-1]
        return boundary

    def _html_boundary(self) -> int:
        """The index just above the innermost HTML element or integration point (foreign content ends)."""
        return max(self.htmls[-1] if self.htmls else -1, self.ips[-1] if self.ips else -1) + 1

    def _close_p(self, emit: bool) -> None:
        """A start tag that closes an open <p> (in button scope)."""
        at = self.html_at.get("p")
        if at and at[-1] >= self._boundary(("button",)):
            self._pop_to(at[-1], emit)

    def _close_list_item(self, names: tuple[str, ...], emit: bool) -> None:
        """<li> closes an open <li> (<dd>/<dt> each other) unless a special element lies between."""
        for k in range(len(self.stack) - 1, max(-1, len(self.stack) - 65), -1):
            entry = self.stack[k]
            if entry.ns == HTML and entry.name in names:
                self._pop_to(k, emit)
                return
            if entry.flags & _F_SPECIAL and entry.name not in ("address", "div", "p"):
                return

    def _push(self, entry: _Entry) -> None:
        """Push an element and index it (by name, special, scope, HTML, integration point)."""
        index = len(self.stack)
        self.stack.append(entry)
        self.steps += 1
        (self.html_at if entry.ns == HTML else self.foreign_at).setdefault(entry.name, []).append(index)
        if entry.ns == HTML:
            self.htmls.append(index)
            if entry.name == "select":
                self.selects += 1
        else:
            self.foreign += 1
        if entry.flags & _F_SPECIAL:
            self.specials.append(index)
        if entry.flags & _F_SCOPE:
            self.scopes.append(index)
        if entry.flags & _IP:
            self.ips.append(index)
        if entry.flags & _F_INERT:
            self.inert += 1

    def _pop_to(self, index: int, emit: bool) -> None:
        """Pop every element from index up; an SVG script popped is reported with its text."""
        stack = self.stack
        while len(stack) > index:
            self.steps += 1
            k = len(stack) - 1
            entry = stack.pop()
            (self.html_at if entry.ns == HTML else self.foreign_at)[entry.name].pop()
            if entry.ns == HTML:
                self.htmls.pop()
                if entry.name == "select":
                    self.selects -= 1
            else:
                self.foreign -= 1
            if self.specials and self.specials[-1] == k:
                self.specials.pop()
            if self.scopes and self.scopes[-1] == k:
                self.scopes.pop()
            if self.ips and self.ips[-1] == k:
                self.ips.pop()
            if entry.flags & _F_INERT:
                self.inert -= 1
            if entry.flags & _F_SCRIPT:
                chunks = self.scripts.pop(k)
                start, attrs_start, attrs_end, end = self.script_tags.pop(k)
                if emit:
                    self.pending.append(Markup(SCRIPT, "script", SVG, start, attrs_start, attrs_end, end,
                                               True, self.inert > 0, not self.scripting, "".join(chunks)))


def raw_text_end(text: str, name: str, pos: int) -> tuple[int, int]:
    """(end of the text, end of the end tag) of the RAWTEXT/RCDATA element name, its text starting at pos."""
    close = _RAW_END[name].search(text, pos)
    if close is None:
        return len(text), len(text)
    tail = _TAG_TAIL.match(text, close.end())
    return close.start(), tail.end() if tail else len(text)


def script_text_end(text: str, pos: int) -> tuple[int, int, int]:
    """(end of the text, end of the end tag, steps) of a script whose text starts at pos.

    The script data state and its escaped and double-escaped states, each change of state a step.
    """
    n = len(text)
    state = 0  # 0 script data, 1 escaped, 2 double escaped
    steps = 0
    while True:
        steps += 1
        if state == 0:
            found = _SCRIPT_DATA.search(text, pos)
            if found is None:
                return n, n, steps
            if found.group() != "<!--":
                break
            pos = found.end()
            while pos < n and text[pos] == "-":  # "<!-->" and "<!--->" end where they start
                pos += 1
            if pos < n and text[pos] == ">":
                pos += 1
            else:
                state = 1
        elif state == 1:
            found = _SCRIPT_ESCAPED.search(text, pos)
            if found is None:
                return n, n, steps
            pos = found.end()
            if found.group() == "-->":
                state = 0
            elif found.group(1):
                break
            else:
                state = 2
        else:
            found = _SCRIPT_DOUBLE_ESCAPED.search(text, pos)
            if found is None:
                return n, n, steps
            pos = found.end()
            state = 0 if found.group() == "-->" else 1
    tail = _TAG_TAIL.match(text, found.end())
    return found.start(), tail.end() if tail else n, steps


_FAST_SCANS: dict[tuple[frozenset[str], bool, bool], re.Pattern[str]] = {}


def _fast_scan(wanted: frozenset[str], auto_events: bool,
               scripting: bool) -> Callable[[str, int], re.Match[str] | None]:
    """A regex that skips, outside foreign content, every token nobody needs to look at."""
    return fast_scan_pattern(wanted, auto_events, scripting).match


def fast_scan_pattern(wanted: frozenset[str], auto_events: bool, scripting: bool) -> re.Pattern[str]:
    """The scanner's skipping regex (verbose; re.I, re.A, re.S): it stops at each token worth a look.

    It matches everything up to the next start tag of wanted, of a raw-text, script or
    structural element, a ``</template>`` (``</noscript>`` too without scripting), or the end.
    """
    key = (wanted, auto_events, scripting)
    pattern = _FAST_SCANS.get(key)
    if pattern is None:
        names = sorted(wanted | RAW_TEXT | _STRUCTURAL | {"script", "plaintext", "noscript"},
                       key=len, reverse=True)
        interesting = "|".join(re.escape(name) for name in names)
        firsts = "".join(sorted({name[0] for name in names}))
        # Most tag names fail the first test already: their first letter starts no name asked for.
        not_interesting = rf"(?:(?![{firsts}])|(?!(?:{interesting})[\t\n\f\r />]))"
        ends = ("(?![tT])|(?!template[\t\n\f\r />])" if scripting
                else "(?![nNtT])|(?!(?:template|noscript)[\t\n\f\r />])")
        attributes = _QUIET_ATTRIBUTES if auto_events else _ATTRIBUTES + "/?"
        # The alternatives are ordered by how often they occur: Python's re tries them in turn.
        # A start tag's letter is looked for before the names: a "<" that is text failed each name
        # in turn first, and a page of them cost 0.4 µs a character.
        pattern = re.compile(
            rf"""
            (?:
                [^<]++
              | </(?:{ends})[A-Za-z][^\t\n\f\r />]*+{_ATTRIBUTES}/?(?:>|\Z)
              | <(?=[A-Za-z]){not_interesting}[A-Za-z][^\t\n\f\r />]*+{attributes}(?:>|\Z)
              | <!--(?:-?>|.*?(?:--!?>|\Z))                               # comment
              | <[!?][^>]*+>?                                             # doctype, bogus comment
              | </(?![A-Za-z])[^>]*+>?                                    # bogus comment, </>
              | <(?![A-Za-z!?/])                                          # a "<" that is text
            )*+
            """,
            re.I | re.A | re.S | re.X,
        )
        _FAST_SCANS[key] = pattern
    return pattern


def _decode_text(chunk: str) -> str:
    """Character data as the tokenizer's data state hands it on (references decoded, NUL replaced)."""
    if "&" in chunk:
        chunk = decode_references(chunk, attribute=False)
    return chunk.replace("\0", "\ufffd") if "\0" in chunk else chunk


_REFERENCE = re.compile(r"&(?:#[xX]([0-9A-Fa-f]+);?|#([0-9]+);?|([A-Za-z][A-Za-z0-9]*)(;?))")
_ENTITIES = html.entities.html5


def decode_references(text: str, attribute: bool) -> str:
    """Character references decoded as the HTML tokenizer does, in text or in an attribute value."""
    return _REFERENCE.sub(lambda match: _reference(match, attribute), text)


def _reference(match: re.Match[str], attribute: bool) -> str:
    """One character reference: numeric by the standard's table, named by the HTML5 entity list."""
    hex_digits, digits, name, semicolon = match.groups()
    if name is None:
        number_text = hex_digits or digits
        number = 0x110000 if len(number_text) > 8 else int(number_text, 16 if hex_digits else 10)
        if number == 0 or number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
            return "\ufffd"
        if 0x80 <= number <= 0x9F:
            return html.unescape(f"&#{number};")  # the windows-1252 table of the standard
        return chr(number)  # control characters and noncharacters are kept, as browsers do
    if semicolon:
        return _ENTITIES.get(name + ";", match.group()) if attribute else html.unescape(match.group())
    # Without ";" only a legacy name decodes, and in an attribute not when "=" or an
    # alphanumeric follows: "?a=1&copy=2" and "&region=eu" are query strings, not ©.
    if attribute:
        after = match.string[match.end():match.end() + 1]
        return match.group() if after == "=" or name not in _ENTITIES else _ENTITIES[name]
    return html.unescape(match.group())


def tag_attributes(text: str, complete: bool) -> dict[str, str]:
    """The attributes of a start tag by lower-case name; the first of duplicates wins, as in HTML."""
    attrs: dict[str, str] = {}
    last: str | None = None
    for part in _ATTRIBUTE_PARTS.finditer(text):
        name = part.group("name")
        if name is None:
            continue
        name = ascii_lower(name)
        value = next((v for v in part.group("dq", "sq", "uq") if v is not None), "")
        if "&" in value:
            value = decode_references(value, attribute=True)
        if "\0" in value or "\0" in name:
            name, value = name.replace("\0", "\ufffd"), value.replace("\0", "\ufffd")
        last = None
        if name not in attrs:
            attrs[name] = value
            last = name
    if not complete and last is not None:
        del attrs[last]  # cut by the end of the sample: its value may be incomplete
    return attrs


def is_hidden(attrs: dict[str, str]) -> bool:
    """Whether a frame with these attributes shows nothing: 0 or 1 pixel, display:none, and the like."""
    if "hidden" in attrs:
        return True
    for key in ("width", "height"):
        value = attrs.get(key)
        if value is None:
            continue
        match = _DIMENSION.match(value)
        if match and (float(match.group(1)) == 0 or (float(match.group(1)) <= 1 and not match.group(2))):
            return True
    style = attrs.get("style")
    return style is not None and _HIDING_STYLE.search(style) is not None

