"""XHTML and SVG documents read as a browser's XML parser reads them, for `MarkupScanner` (``xml=True``).

An XHTML or SVG document (application/xhtml+xml, image/svg+xml, any XML type whose elements
are in those namespaces) is read by the browser's XML parser: no raw text, no script data
states, <noscript> and <template> tags nothing special to the tokenizer, names
case-sensitive, elements in the namespace their prefix or xmlns says, character and entity
references decoded everywhere outside CDATA sections (in <script> too), and the entities
and attribute defaults the document's own DOCTYPE declares. `XmlReader` yields the same
events as the HTML scanner (`markup_scan.Markup`), each with its attributes decoded. A
browser stops at the first error of well-formedness; this reader reads on, so it reports a
superset of what runs.
"""

from __future__ import annotations

import html.entities
import re
from collections.abc import Iterator
from typing import NamedTuple

from clickguard.inspection.navigation.markup_scan import (
    AUTO_EVENTS,
    HTML,
    MATH,
    POLL_EVERY,
    SCRIPT,
    START,
    SVG,
    Markup,
    MarkupScanner,
)
from clickguard.inspection.navigation.results import StepsSpent

XHTML_NS = "http://www.w3.org/1999/xhtml"
SVG_NS = "http://www.w3.org/2000/svg"
MATHML_NS = "http://www.w3.org/1998/Math/MathML"
XLINK_NS = "http://www.w3.org/1999/xlink"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_NAMESPACES = {XHTML_NS: HTML, SVG_NS: SVG, MATHML_NS: MATH}
_NO_NAMESPACE = -1
_X_WS = r"[\t\n\r ]"
_X_VALUE = r"""(?>"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z)|[^\t\n\r >]*+)"""
_X_ATTRIBUTE = rf"(?>[^\t\n\r />][^\t\n\r />=]*+(?>{_X_WS}*+={_X_WS}*+{_X_VALUE})?+)"
# Attributes read leniently (unquoted values too): a browser stops at such an error, this reads on.
_X_ATTRIBUTES = rf"(?:{_X_WS}++|/(?!>)|{_X_ATTRIBUTE})*+"
_X_ATTRIBUTE_PARTS = re.compile(
    rf"""{_X_WS}++|/|(?P<name>[^\t\n\r />][^\t\n\r />=]*+)
    (?:{_X_WS}*+={_X_WS}*+(?:"(?P<dq>[^"]*+)"?|'(?P<sq>[^']*+)'?|(?P<uq>[^\t\n\r >]*+)))?""",
    re.X,
)
_ENTITIES = html.entities.html5
_X_TOKEN = re.compile(
    rf"""<(?:
        (?P<comment>!--)
      | (?P<cdata>!\[CDATA\[)
      | (?P<doctype>!DOCTYPE)
      | (?P<declaration>!)
      | (?P<pi>\?)
      | /(?P<end>[^\t\n\r />]++)[^>]*+>?
      | (?P<name>[^\t\n\r />!?][^\t\n\r />]*+)(?P<attrs>{_X_ATTRIBUTES})(?P<sc>/)?(?P<close>>)?
    )""",
    re.X | re.S,
)
_X_REFERENCE = re.compile(r"&(?:#[xX]([0-9A-Fa-f]++);|#([0-9]++);|([^\t\n\r &;<>\"'#][^\t\n\r &;<>\"']*+);)")
_X_CHARACTER_REFERENCE = re.compile(r"&#(?:[xX]([0-9A-Fa-f]++)|([0-9]++));")
_X_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "apos": "'", "quot": '"'}
_X_SPACES = str.maketrans("\t\n\r", "   ")
_QUOTED_OR_NOT = r"""(?:[^>"']|"[^"]*+"|'[^']*+')*+"""
_DOCTYPE_HEAD = re.compile(r"""(?:[^\[>"']|"[^"]*+"|'[^']*+')*+""")
# One token of a DOCTYPE's internal subset: the declarations that change the document are
# general and parameter entities and attribute defaults (an xmlns default puts elements in
# a namespace); comments, processing instructions and other declarations are skipped.
_DTD_TOKEN = re.compile(
    rf"""(?:
        <!--.*?(?:-->|\Z)
      | <\?.*?(?:\?>|\Z)
      | <!ENTITY{_X_WS}++(?P<pe>%{_X_WS}++)?(?P<entity>[^\t\n\r "'%>]++){_X_WS}*+
          (?:"(?P<dq>[^"]*+)"|'(?P<sq>[^']*+)')?{_QUOTED_OR_NOT}>?
      | <!ATTLIST{_X_WS}++(?P<element>[^\t\n\r >]++)(?P<definitions>{_QUOTED_OR_NOT})>?
      | <!{_QUOTED_OR_NOT}>?
      | %(?P<reference>[^\t\n\r %;<>"']++);
      | (?P<end>\])
      | [^<%\]]++
      | [<%]
    )""",
    re.X | re.S,
)
# One attribute definition of an <!ATTLIST>, or a word or a space to skip (so that each
# character is looked at a bounded number of times).
_ATTRIBUTE_DEFINITION = re.compile(
    rf"""(?P<name>[^\t\n\r >()"']++){_X_WS}++(?:NOTATION{_X_WS}*+)?(?:\([^)]*+\)|[A-Z]++){_X_WS}*+
    (?:\#REQUIRED|\#IMPLIED|(?:\#FIXED{_X_WS}++)?(?:"(?P<dq>[^"]*+)"|'(?P<sq>[^']*+)'))
    | "[^"]*+"? | '[^']*+'? | [^\t\n\r "']++ | {_X_WS}++""",
    re.X,
)
_MAX_ENTITY_DEPTH = 40
_XF_SCRIPT, _XF_INERT = 1, 2


class _XEntry(NamedTuple):
    """An open element of an XML document."""

    qname: str
    ns: int  # HTML, SVG, MATH or _NO_NAMESPACE
    flags: int
    bound: tuple[str, ...]  # the prefixes its xmlns attributes bound ("" for the default namespace)
    span: tuple[int, int, int, int]  # start, attributes start and end, end of its start tag
    attrs: dict[str, str]


class XmlReader:
    """An XML document read as a browser's XML parser reads it, for a `MarkupScanner` in XML mode.

    Linear in the text and in what its entities expand to, which is bounded: past
    ``8 * len(text) + 256 KiB`` characters of expansion (each expansion counting 16 more, and
    each attribute default applied one) the reading stops with `StepsSpent`, as a browser's
    parser stops an entity bomb; the caller reports the rest as unread.
    """

    def __init__(self, scanner: MarkupScanner) -> None:
        self.scanner = scanner
        self.text = scanner.text
        self.entities: dict[str, str] = {}
        self.parameter_entities: dict[str, str] = {}
        self.defaults: dict[str, dict[str, str]] = {}  # element name -> attribute name -> default value
        self.stack: list[_XEntry] = []
        self.open_at: dict[str, list[int]] = {}  # open elements by name: their stack indices
        self.bound: dict[str, list[str]] = {"xml": [_XML_NS]}  # prefix -> namespaces bound, innermost last
        self.scripts: dict[int, list[str]] = {}  # open scripts: their text so far
        self.inert = 0  # open XHTML <template> elements
        self.expanding: list[str] = []  # the entities being expanded, outermost first
        self.reference: tuple[int, int] | None = None  # where in the text the expansion being read started
        self.room = 8 * len(self.text) + (1 << 18)

    def events(self) -> Iterator[Markup]:
        """Every wanted start tag and every script, in document order."""
        text, n = self.text, len(self.text)
        pending = self.scanner.pending
        pos = 0
        poll, countdown = self.scanner.poll, POLL_EVERY
        while pos < n:
            pos = self._token(text, pos, n)
            self.scanner.steps += 1
            countdown -= 1
            if not countdown:
                countdown = POLL_EVERY
                poll()
            if pending:
                yield from pending
                pending.clear()
        self._pop_to(0)  # the end: open scripts keep the text they have
        yield from pending
        pending.clear()

    def _charge(self, size: int) -> None:
        """Count characters of expansion (and a few for the expansion itself); past the room left, stop."""
        self.room -= size + 16
        self.scanner.steps += 1 + size // 64
        if self.room < 0:
            raise StepsSpent("the document's entities and attribute defaults expand past the reading budget")

    def _token(self, source: str, pos: int, n: int) -> int:
        """Read the one token of source at pos; the position after it."""
        if source[pos] != "<":
            end = source.find("<", pos, n)
            end = n if end < 0 else end
            self._text(source, pos, end)
            return end
        match = _X_TOKEN.match(source, pos, n)
        if match is None:  # "<" and then nothing a tag can start with: a browser stops here
            self._characters("<")
            return pos + 1
        after = match.end()
        if match.group("comment") is not None:
            return _after(source, "-->", after, n)
        if match.group("cdata") is not None:
            close = source.find("]]>", after, n)
            self._characters(_newlines(source[after:n if close < 0 else close]))
            return n if close < 0 else close + 3
        if match.group("pi") is not None:
            return _after(source, "?>", after, n)
        if match.group("doctype") is not None:
            return self._doctype(source, after, n)
        if match.group("declaration") is not None:
            return _after(source, ">", after, n)
        if match.group("end") is not None:
            at = self.open_at.get(match.group("end"))
            if at:
                self._pop_to(at[-1])  # in a browser a mismatched end tag stops the parser
            return after
        self._start_tag(source, match)
        return after

    def _text(self, source: str, pos: int, end: int) -> None:
        """Character data: references decoded, entities expanded (their markup read as markup)."""
        in_script = bool(self.stack) and bool(self.stack[-1].flags & _XF_SCRIPT)
        if not in_script and not self.entities:
            return
        if "&" not in source[pos:end]:
            self._characters(_newlines(source[pos:end]))
            return
        for reference in _X_REFERENCE.finditer(source, pos, end):
            self._characters(_newlines(source[pos:reference.start()]))
            name = reference.group(3)
            if name is not None and name in self.entities and name not in _X_PREDEFINED:
                self._expand(name, reference.span())
            else:
                self._characters(_x_reference(reference))
            pos = reference.end()
        self._characters(_newlines(source[pos:end]))

    def _characters(self, data: str) -> None:
        """Text of the element on top of the stack (kept when it is a script)."""
        if data and self.stack and self.stack[-1].flags & _XF_SCRIPT:
            self.scripts[len(self.stack) - 1].append(data)

    def _expand(self, name: str, span: tuple[int, int]) -> None:
        """A reference to an entity the document declares: its replacement text read as content."""
        if name in self.expanding or len(self.expanding) >= _MAX_ENTITY_DEPTH:
            return  # a loop: a browser stops with an error
        replacement = self.entities[name]
        self._charge(len(replacement))
        outer = self.reference
        if outer is None:
            self.reference = span
        self.expanding.append(name)
        try:
            pos, n = 0, len(replacement)
            while pos < n:
                pos = self._token(replacement, pos, n)
                self.scanner.steps += 1
        finally:
            self.expanding.pop()
            self.reference = outer

    # -- elements -----------------------------------------------------------------------

    def _start_tag(self, source: str, match: re.Match[str]) -> None:
        """A start tag: namespaces bound, the element's namespace found, reported if asked for, pushed."""
        qname = match.group("name")
        raw = self._raw_attributes(match.group("attrs"), qname)
        bound = []
        for name, value in raw.items():
            if name == "xmlns" or name.startswith("xmlns:"):
                prefix = name[6:]
                self.bound.setdefault(prefix, []).append(self._attribute_value(value))
                bound.append(prefix)
        prefix, colon, local = qname.partition(":")
        if not colon:
            prefix, local = "", qname
        ns = _NAMESPACES.get(self._namespace(prefix) or "", _NO_NAMESPACE)
        attrs = self._attributes(raw)
        if self.reference is not None:
            span = (self.reference[0], self.reference[0], self.reference[1], self.reference[1])
        else:
            span = (match.start(), match.start("attrs"), match.end("attrs"), match.end())
        complete = match.group("close") is not None
        if ns != _NO_NAMESPACE and self._asked(local, ns, attrs):
            self.scanner.pending.append(Markup(START, local, ns, *span, complete, self.inert > 0, False, "",
                                               attrs))
        flags = (_XF_SCRIPT if local == "script" and ns in (HTML, SVG) else 0) | (
            _XF_INERT if local == "template" and ns == HTML else 0)
        entry = _XEntry(qname, ns, flags, tuple(bound), span, attrs)
        if match.group("sc") is not None or not complete:
            if complete and flags & _XF_SCRIPT:
                self._emit_script(entry, "")
            self._unbind(entry)
            return
        index = len(self.stack)
        self.stack.append(entry)
        self.open_at.setdefault(qname, []).append(index)
        if flags & _XF_SCRIPT:
            self.scripts[index] = []
        if flags & _XF_INERT:
            self.inert += 1

    def _asked(self, local: str, ns: int, attrs: dict[str, str]) -> bool:
        """Whether the scanner's caller wants this start tag reported."""
        scanner = self.scanner
        if local in scanner.wanted:
            return True
        if scanner.auto_events and any(name.startswith("on") and name[2:] in AUTO_EVENTS for name in attrs):
            return True
        return scanner.foreign_links and ns != HTML and ("href" in attrs or "xlink:href" in attrs)

    def _pop_to(self, index: int) -> None:
        """Close every element from index up; a script closed is reported with its text."""
        stack = self.stack
        while len(stack) > index:
            self.scanner.steps += 1
            k = len(stack) - 1
            entry = stack.pop()
            self.open_at[entry.qname].pop()
            if entry.flags & _XF_INERT:
                self.inert -= 1
            if entry.flags & _XF_SCRIPT:
                self._emit_script(entry, "".join(self.scripts.pop(k)))
            self._unbind(entry)

    def _emit_script(self, entry: _XEntry, text: str) -> None:
        """Report a script element with its text."""
        self.scanner.pending.append(
            Markup(SCRIPT, "script", entry.ns, *entry.span, True, self.inert > 0, False, text, entry.attrs))

    def _unbind(self, entry: _XEntry) -> None:
        """Undo the namespace bindings of an element that is closed."""
        for prefix in entry.bound:
            self.bound[prefix].pop()

    def _namespace(self, prefix: str) -> str | None:
        """The namespace prefix stands for here ("" for the default namespace); None when unbound."""
        bound = self.bound.get(prefix)
        return bound[-1] if bound else None

    # -- attributes -----------------------------------------------------------------------

    def _raw_attributes(self, text: str, element: str) -> dict[str, str]:
        """Attribute values as written, by name (the first of duplicates), and the DTD's defaults."""
        raw: dict[str, str] = {}
        poll = self.scanner.poll
        for count, part in enumerate(_X_ATTRIBUTE_PARTS.finditer(text), 1):
            if not count % POLL_EVERY:
                poll()  # one tag may hold the whole document's attributes
            name = part.group("name")
            if name is not None and name not in raw:
                raw[name] = next((v for v in part.group("dq", "sq", "uq") if v is not None), "")
        defaults = self.defaults.get(element)
        if defaults:
            self._charge(len(defaults))
            for name, value in defaults.items():
                raw.setdefault(name, value)
        return raw

    def _attributes(self, raw: dict[str, str]) -> dict[str, str]:
        """Attribute values decoded, by name: local names, and "xlink:"/"xml:" for those namespaces."""
        attrs: dict[str, str] = {}
        for name, value in raw.items():
            if name == "xmlns" or name.startswith("xmlns:"):
                continue
            prefix, colon, local = name.partition(":")
            if colon:
                namespace = self._namespace(prefix)
                if namespace == XLINK_NS:
                    name = "xlink:" + local
                elif namespace == _XML_NS:
                    name = "xml:" + local
            attrs.setdefault(name, self._attribute_value(value))
        return attrs

    def _attribute_value(self, value: str) -> str:
        """An attribute value as XML normalises it: white space made spaces, references decoded."""
        value = _newlines(value).translate(_X_SPACES)
        if "&" not in value:
            return value
        return _X_REFERENCE.sub(self._attribute_reference, value)

    def _attribute_reference(self, reference: re.Match[str]) -> str:
        """One reference in an attribute value; an entity's replacement text normalised in turn."""
        name = reference.group(3)
        if name is None or name not in self.entities or name in _X_PREDEFINED:
            return _x_reference(reference)
        if name in self.expanding or len(self.expanding) >= _MAX_ENTITY_DEPTH:
            return ""
        replacement = self.entities[name]
        self._charge(len(replacement))
        self.expanding.append(name)
        try:
            return self._attribute_value(replacement)
        finally:
            self.expanding.pop()

    # -- the DOCTYPE ------------------------------------------------------------------------

    def _doctype(self, source: str, pos: int, n: int) -> int:
        """A DOCTYPE: its internal subset read for declarations; the position after it."""
        head = _DOCTYPE_HEAD.match(source, pos, n)
        pos = head.end() if head else pos
        if pos < n and source[pos] == "[":
            pos = self._subset(source, pos + 1, n)
        return _after(source, ">", pos, n)

    def _subset(self, source: str, pos: int, n: int) -> int:
        """Declarations up to the "]" ending an internal subset (or the end of source); the position after."""
        while pos < n:
            match = _DTD_TOKEN.match(source, pos, n)
            assert match is not None  # the last alternatives take any character
            pos = match.end()
            self.scanner.steps += 1
            if match.group("end") is not None:
                if not self.expanding:
                    return pos
            elif match.group("entity") is not None:
                self._declare_entity(match)
            elif match.group("element") is not None:
                self._declare_defaults(match.group("element"), match.group("definitions"))
            elif match.group("reference") is not None:
                self._expand_parameter_entity(match.group("reference"))
        return n

    def _declare_entity(self, match: re.Match[str]) -> None:
        """<!ENTITY name "value">: character references decoded now, entity references when used."""
        value = match.group("dq") if match.group("dq") is not None else match.group("sq")
        if value is None:
            return  # an external entity: browsers do not load it
        name = match.group("entity")
        declared = self.parameter_entities if match.group("pe") else self.entities
        if name not in declared:  # the first declaration binds
            self._charge(len(value))
            declared[name] = _X_CHARACTER_REFERENCE.sub(_x_reference, value) if "&#" in value else value

    def _declare_defaults(self, element: str, definitions: str) -> None:
        """<!ATTLIST element name type "default" ...>: values the element's tags get when they lack them."""
        defaults = self.defaults.setdefault(element, {})
        for definition in _ATTRIBUTE_DEFINITION.finditer(definitions):
            self.scanner.steps += 1
            value = definition.group("dq") if definition.group("dq") is not None else definition.group("sq")
            if value is not None:
                defaults.setdefault(definition.group("name"), value)

    def _expand_parameter_entity(self, name: str) -> None:
        """%name; between declarations: its replacement text read as declarations."""
        replacement = self.parameter_entities.get(name)
        if replacement is None or name in self.expanding or len(self.expanding) >= _MAX_ENTITY_DEPTH:
            return
        self._charge(len(replacement))
        self.expanding.append(name)
        try:
            self._subset(replacement, 0, len(replacement))
        finally:
            self.expanding.pop()


def _after(source: str, mark: str, pos: int, n: int) -> int:
    """The position just after the next mark in source[pos:n], or n."""
    found = source.find(mark, pos, n)
    return n if found < 0 else found + len(mark)


def _newlines(text: str) -> str:
    """Line ends as the XML parser hands them on: CR LF and CR become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _x_reference(match: re.Match[str]) -> str:
    """A character reference, or one of the predefined or XHTML entities, by XML rules."""
    hex_digits, digits = match.group(1), match.group(2)
    if hex_digits is None and digits is None:
        name = match.group(3)
        # An entity nobody declared: skipped (after a parameter entity the DTD may have declared it
        # elsewhere), or an error that stops the browser.
        return _X_PREDEFINED.get(name) or _ENTITIES.get(name + ";") or ""
    number_text = hex_digits or digits
    number = 0x110000 if len(number_text) > 8 else int(number_text, 16 if hex_digits else 10)
    if number in (0x9, 0xA, 0xD) or 0x20 <= number <= 0xD7FF or 0xE000 <= number <= 0xFFFD or (
            0x10000 <= number <= 0x10FFFF):
        return chr(number)
    return "\ufffd"  # not a character XML allows: a browser stops with an error
