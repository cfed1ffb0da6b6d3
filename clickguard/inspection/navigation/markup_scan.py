"""Markup read as a browser's tokenizer would, for the few tags that can navigate or load.

`MARKUP_SCAN` skips, inside one regular-expression match, everything up to the next tag
that matters (meta, base, script, frames, forms, raw-text elements, or any tag with an
event attribute that fires by itself) and stops at that tag; `tag_attributes` reads its
attributes. What the tags mean is the page reader's business.
"""

from __future__ import annotations

import html
import re

ASCII_WS = "\t\n\f\r "  # the HTML standard's ASCII whitespace

_WS = r"[\t\n\f\r ]"
_VALUE = r"""(?>"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z)|[^\t\n\f\r >]*+)"""
_ATTRIBUTE = rf"(?>[^\t\n\f\r />][^\t\n\f\r />=]*+(?>{_WS}*+={_WS}*+{_VALUE})?+)"
_ATTRIBUTES = rf"(?:{_WS}++|/|{_ATTRIBUTE})*+"
# Event attributes that fire without a user: the tags that carry them must be looked at.
AUTO_EVENTS = frozenset({
    "load", "error", "pageshow", "readystatechange", "focus", "focusin", "toggle", "begin", "end",
    "animationstart", "animationend", "animationiteration", "transitionstart", "transitionrun",
    "transitionend",
})
_NOT_AUTO_EVENT = rf"(?!on(?:{'|'.join(sorted(AUTO_EVENTS))})(?:[\t\n\f\r />=]|\Z))"
_QUIET_ATTRIBUTES = rf"(?:[\t\n\f\r /]*+{_NOT_AUTO_EVENT}{_ATTRIBUTE})*+[\t\n\f\r /]*+"
_TAG_END = r"(?:>|\Z)"
RAW_TEXT = frozenset({"style", "textarea", "title", "xmp", "noembed", "noframes", "iframe"})
_WANTED_TAGS = "meta|base|script|body|frameset|form|iframe|frame|noscript|style|textarea|title|xmp|noembed" \
               "|noframes|plaintext"
# A tag name that is none of the wanted ones; most names fail the first test already.
_NOT_WANTED = rf"(?:(?![bfimnpstx])|(?!(?:{_WANTED_TAGS})(?:[\t\n\f\r />]|\Z)))"
# One match: everything up to the next tag that matters (or one with an automatic event
# attribute), consumed token by token inside the regex engine, then that tag. The
# alternatives are ordered by how often they occur: Python's re tries them in turn.
MARKUP_SCAN = re.compile(
    rf"""
    (?:
        [^<]++
      | </(?!noscript(?:[\t\n\f\r />]|\Z))[a-z][^\t\n\f\r />]*+{_ATTRIBUTES}{_TAG_END}
      | <{_NOT_WANTED}[a-z][^\t\n\f\r />]*+{_QUIET_ATTRIBUTES}{_TAG_END}
      | <!--(?:-?>|.*?(?:--!?>|\Z))                                   # comment
      | <[!?][^>]*+>?                                                 # doctype, bogus comment
      | <(?![a-z!?/])                                                 # a "<" that is text
      | </(?![a-z])
    )*+
    (?:<(?P<end>/)?(?P<name>[a-z][^\t\n\f\r />]*+)(?P<attrs>{_ATTRIBUTES})(?P<close>>)?)?
    """,
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
_ATTRIBUTE_PARTS = re.compile(
    rf"""{_WS}++|/|(?P<name>[^\t\n\f\r />][^\t\n\f\r />=]*+)
    (?:{_WS}*+={_WS}*+(?:"(?P<dq>[^"]*+)"?|'(?P<sq>[^']*+)'?|(?P<uq>[^\t\n\f\r >]*+)))?""",
    re.VERBOSE,
)
END_TAGS = {name: re.compile(rf"</{name}(?=[\t\n\f\r />]|\Z)", re.I) for name in (*RAW_TEXT, "script")}
JS_TYPES = frozenset({
    "", "module", "text/javascript", "application/javascript", "application/ecmascript",
    "application/x-ecmascript", "application/x-javascript", "text/ecmascript", "text/javascript1.0",
    "text/javascript1.1", "text/javascript1.2", "text/javascript1.3", "text/javascript1.4",
    "text/javascript1.5", "text/jscript", "text/livescript", "text/x-ecmascript", "text/x-javascript",
})
_DIMENSION = re.compile(r"[\t\n\f\r ]*(\d+(?:\.\d*)?|\.\d+)(%?)")
_HIDING_STYLE = re.compile(
    r"(?:^|[;\s])(?:display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0*(?:\.0*)?\s*(?:!|;|$)"
    r"|(?:width|height)\s*:\s*(?:0*[01](?:\.0*)?)(?:px)?\s*(?:!|;|$))",
    re.I,
)

# How written markup is read: a document, document.write output, or innerHTML.
DOCUMENT, WRITTEN, INNER = 0, 1, 2


def tag_attributes(text: str, complete: bool) -> dict[str, str]:
    """The attributes of a start tag by lower-case name; the first of duplicates wins, as in HTML."""
    attrs: dict[str, str] = {}
    last: str | None = None
    for part in _ATTRIBUTE_PARTS.finditer(text):
        name = part.group("name")
        if name is None:
            continue
        name = name.lower()
        value = next((v for v in part.group("dq", "sq", "uq") if v is not None), "")
        if "&" in value:
            value = html.unescape(value)
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
