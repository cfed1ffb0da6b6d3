"""`find_navigations`: the headers of a response first, then, for markup, the page itself."""

from __future__ import annotations

from collections.abc import Sequence

from clickguard.inspection.navigation.document_text import decode_html, is_markup
from clickguard.inspection.navigation.markup_scan import DOCUMENT
from clickguard.inspection.navigation.page_reader import Page
from clickguard.inspection.navigation.refresh import parse_refresh
from clickguard.inspection.navigation.results import RAW_MAX, Navigation, Technique, with_scheme
from clickguard.inspection.navigation.url_resolution import C0_AND_SPACE, resolve

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def find_navigations(
    *, status: int, headers: Sequence[tuple[str, str]], body: bytes, base_url: str, content_type: str | None
) -> list[Navigation]:
    """Every place this response sends the browser, in the order a browser meets them."""
    location = refresh = None
    for name, value in headers:
        lower = name.lower()
        if lower == "location" and location is None:
            location = value
        elif lower == "refresh" and refresh is None:
            refresh = value
    if status in _REDIRECT_STATUSES and location is not None and location.strip(C0_AND_SPACE):
        target = resolve(location, base_url)
        return [Navigation(with_scheme(Technique.LOCATION, target), target,
                           f"Location: {location}"[:RAW_MAX], True)]
    found: list[Navigation] = []
    if refresh is not None:
        parsed = parse_refresh(refresh)
        if parsed is not None:
            target = base_url if parsed[1] is None else resolve(parsed[1], base_url)
            if target is not None:
                found.append(Navigation(with_scheme(Technique.REFRESH_HEADER, target), target,
                                        f"Refresh: {refresh}"[:RAW_MAX], True, parsed[0]))
    if body and is_markup(content_type, body):
        page = Page(base_url, budget=4 * len(body) + (1 << 20))
        page.scan_markup(decode_html(body, content_type), page.root, 0, DOCUMENT, False, None)
        found.extend(page.navigations())
    return found
