"""The Refresh header and <meta http-equiv=refresh>, read by the HTML standard's steps."""

from __future__ import annotations

from clickguard.inspection.navigation.markup_scan import ASCII_WS
from clickguard.inspection.navigation.url_resolution import C0_AND_SPACE


def parse_refresh(value: str) -> tuple[float, str | None] | None:
    """Seconds and URL of a Refresh value by the HTML standard's shared declarative refresh steps."""
    end = len(value)
    pos = _skip_ascii_ws(value, 0)
    start = pos
    while pos < end and "0" <= value[pos] <= "9":
        pos += 1
    if pos == start:
        if pos >= end or value[pos] != ".":
            return None
        seconds = 0.0
    else:
        seconds = float(value[start:pos])  # the fraction is read and ignored, as the standard says
    while pos < end and (value[pos] == "." or "0" <= value[pos] <= "9"):
        pos += 1
    if pos < end:
        if value[pos] not in ";," and value[pos] not in ASCII_WS:
            return None
        pos = _skip_ascii_ws(value, pos)
        if pos < end and value[pos] in ";,":
            pos += 1
        pos = _skip_ascii_ws(value, pos)
    if pos >= end:
        return seconds, None
    url_start = pos
    if value[pos] in "Uu":
        if value[pos + 1:pos + 2] in ("R", "r") and value[pos + 2:pos + 3] in ("L", "l"):
            pos = _skip_ascii_ws(value, pos + 3)
            url = _refresh_quoted(value, _skip_ascii_ws(value, pos + 1)) if value[pos:pos + 1] == "=" \
                else value[url_start:]
        else:
            url = value[url_start:]
    else:
        url = _refresh_quoted(value, pos)
    url = url.strip(C0_AND_SPACE)  # what the URL parser strips before anything else
    return seconds, url or None


def _skip_ascii_ws(text: str, pos: int) -> int:
    """The first position at or after pos that is not ASCII whitespace."""
    end = len(text)
    while pos < end and text[pos] in ASCII_WS:
        pos += 1
    return pos


def _refresh_quoted(value: str, pos: int) -> str:
    """The refresh URL from pos: up to the matching quote when it starts with one."""
    if value[pos:pos + 1] in ("'", '"'):
        quote_char = value[pos]
        rest = value[pos + 1:]
        cut = rest.find(quote_char)
        return rest if cut < 0 else rest[:cut]
    return value[pos:]
