"""URLs as a browser reads them: resolved against a base, or fixed by a known prefix."""

from __future__ import annotations

import re
from urllib.parse import urljoin

C0_AND_SPACE = "".join(map(chr, range(0x21)))
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")


def resolve(url: str, base: str) -> str | None:
    """url resolved against base as a browser would, or None when it does not parse."""
    url = url.strip(C0_AND_SPACE)
    if "\t" in url or "\n" in url or "\r" in url:
        url = _TAB_NEWLINE.sub("", url)
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    base_scheme = base[:base.find(":")].lower() if ":" in base else ""
    if (scheme or base_scheme) in _SPECIAL_SCHEMES:
        cut = len(url)
        for stop in "?#":
            at = url.find(stop)
            if 0 <= at < cut:
                cut = at
        if "\\" in url[:cut]:  # before the query a backslash is a slash in special URLs
            url = url[:cut].replace("\\", "/") + url[cut:]
        if scheme:
            rest = url[len(scheme) + 1:]
            # "https:evil.example" and "http:///evil.example" name a host however many slashes follow
            if scheme != base_scheme or rest.startswith("//"):
                url = f"{scheme}://{rest.lstrip('/')}"
        elif url.startswith("//"):
            url = "//" + url.lstrip("/")
    try:
        return urljoin(base, url)
    except ValueError:
        return None


def prefix_target(prefix: str, base: str) -> str | None:
    """The target of a URL known only up to prefix, when the prefix already fixes its host."""
    prefix = prefix.lstrip(C0_AND_SPACE)
    if "\t" in prefix or "\n" in prefix or "\r" in prefix:
        prefix = _TAB_NEWLINE.sub("", prefix)
    if not prefix:
        return None
    match = _SCHEME.match(prefix)
    if match:
        if match.group(1).lower() not in _SPECIAL_SCHEMES:
            return resolve(prefix, base)  # data:, javascript:: the scheme is what matters
        authority = prefix[match.end():].lstrip("/\\")
        return resolve(prefix, base) if _HOST_END.search(authority) else None
    if prefix[0] in "/\\":
        if len(prefix) == 1:
            return None  # "/" + x may still become "//other.host"
        if prefix[1] in "/\\":
            authority = prefix.lstrip("/\\")
            return resolve(prefix, base) if _HOST_END.search(authority) else None
        return resolve(prefix, base)
    if prefix[0] in "?#":
        return resolve(prefix, base)
    if _SCHEME_CHARS.fullmatch(prefix):
        return None  # may still be spelling a scheme ("htt" + "p://...")
    return resolve(prefix, base)


_HOST_END = re.compile(r"[/\\?#]")
_SCHEME_CHARS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def scheme_of(url: str | None) -> str:
    """The lower-case scheme of an absolute URL, "" when there is none."""
    if not url:
        return ""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""
