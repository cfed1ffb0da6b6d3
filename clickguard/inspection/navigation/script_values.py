"""What a script expression is worth, as far as its literals tell: a string with unknown parts."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

PH = "\uffff"  # stands for a part of a string that is not known
# Stands for location.hash: unknown, but "#..." or nothing, so it cannot change where a URL goes.
# String methods see it as unknown: location.hash.slice(1) may be any URL.
FRAGMENT = "\ufffe"


class Val(NamedTuple):
    """What a script expression evaluates to, as far as literals tell."""

    text: str  # the string, with PH where a part is unknown
    obfuscated: bool = False  # built with a decoder, hiding escapes, eval or reversal
    items: tuple[str, ...] | None = None  # an array of known strings
    location: bool = False  # the location object itself (whose text is the page's URL)
    url: bool = False  # a URL object (new URL(...)), whose text is its href


UNKNOWN = Val(PH)


def unknown(*values: Val) -> Val:
    """An unknown value that keeps the obfuscation of what built it."""
    return Val(PH, any(v.obfuscated for v in values))


def concat(left: Val, right: Val) -> Val:
    """left + right, with runs of unknown parts merged."""
    text = left.text + right.text
    if PH + PH in text:
        text = re.sub(f"{PH}+", PH, text)
    return Val(text, left.obfuscated or right.obfuscated)


def join(values: list[Val]) -> Val:
    """values[0] + values[1] + ..., built once (linear in the result), runs of unknown parts merged."""
    text = "".join(v.text for v in values)
    if PH + PH in text:
        text = _PH_RUN.sub(PH, text)
    return Val(text, any(v.obfuscated for v in values))


_PH_RUN = re.compile(f"{PH}{{2,}}")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")  # a number as a value's text: an index, a length, a delay

# The properties of a URL object (and of `location`) that read as strings.
URL_PARTS = frozenset({"href", "origin", "protocol", "host", "hostname", "port", "pathname", "search"})


def url_part(url: str, part: str) -> str:
    """One property of a URL object, as the URL API gives it."""
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError:
        return PH
    host = split.netloc.rpartition("@")[2]
    return {
        "href": url, "origin": f"{split.scheme}://{host}", "protocol": f"{split.scheme}:", "host": host,
        "hostname": split.hostname or "", "port": str(port or ""), "pathname": split.path or "/",
        "search": f"?{split.query}" if split.query else "",
    }[part]
