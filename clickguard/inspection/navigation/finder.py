"""`find_navigations`: the headers of a response first, then, for markup, the page itself.

The page is read by the parser the browser uses for its type: HTML, or XML for XHTML, SVG
and the other XML types (`document_text.is_xml`).

The page is read within a step budget linear in the body's size (`results.Steps`): a page
that spends it gets an `UNREAD` navigation saying so, and a navigation whose function could
not be settled as called or not by automatic code is reported as automatic, with why in
`incomplete`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from clickguard.inspection.navigation.document_text import decode_html, is_markup, is_xml
from clickguard.inspection.navigation.markup_scan import DOCUMENT
from clickguard.inspection.navigation.page_reader import Page
from clickguard.inspection.navigation.refresh import parse_refresh
from clickguard.inspection.navigation.results import (
    ACTIVE_STEPS,
    RAW_MAX,
    Navigation,
    Steps,
    StepsSpent,
    Technique,
    budget_for,
    with_scheme,
)
from clickguard.inspection.navigation.script_scopes import NAMED, Callers
from clickguard.inspection.navigation.url_resolution import C0_AND_SPACE, resolve

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_UNSETTLED = "the step budget ran out before the callers of its function were all read"


def find_navigations(
    *, status: int, headers: Sequence[tuple[str, str]], body: bytes, base_url: str, content_type: str | None,
    steps: Steps | None = None,
) -> list[Navigation]:
    """Every place this response sends the browser, in the order a browser meets them.

    ``steps``: the budget of the reading (one linear in the body's size when not given); its
    ``spent`` afterwards says how much work the reading took.
    """
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
        budget = steps if steps is not None else budget_for(len(body))
        token = ACTIVE_STEPS.set(budget)
        try:
            found.extend(_read_page(body, base_url, content_type, budget))
        finally:
            ACTIVE_STEPS.reset(token)
    return found


def _read_page(body: bytes, base_url: str, content_type: str | None, steps: Steps) -> list[Navigation]:
    """The navigations of a markup body, read within the step budget."""
    page = Page(base_url, steps=steps)
    unread = None
    text = decode_html(body, content_type)
    try:
        # XHTML, SVG and the other XML types: the browser's XML parser reads them.
        page.scan_markup(text, page.root, 0, DOCUMENT, False, None, xml=is_xml(content_type, body))
    except StepsSpent as stop:
        unread = f"{stop}: the rest of the page was not read"
    if steps.exhausted and unread is None:
        unread = "the code the page's scripts build ran past the step budget: some was not read"
    unsettled = set()
    try:
        callers = Callers(page)
    except StepsSpent:
        callers = None
    for navigation in page.found:
        anchor = navigation.ctx.anchor()
        if anchor.mode == NAMED and anchor not in unsettled:
            automatic = callers.automatic(anchor) if callers is not None else None
            if automatic is None:
                unsettled.add(anchor)
                page.called[anchor] = True  # unknown counts as automatic: the caller treats it as suspicious
    navigations = page.navigations()
    if unsettled:
        navigations = [
            replace(navigation, incomplete=_UNSETTLED) if found.ctx.anchor() in unsettled else navigation
            for navigation, found in zip(navigations, page.found, strict=True)
        ]
    if unread is not None:
        navigations.append(Navigation(Technique.UNREAD, None, "(not read: step budget)", True, None, unread))
    return navigations
