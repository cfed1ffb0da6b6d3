"""The page reader: what one response's markup and scripts do, collected, then judged once.

`Page.scan_markup` reads the document (and markup that scripts write) tag by tag: meta
refreshes, ``<base href>``, hidden and data:/javascript: frames, forms, inline scripts and
the event attributes that fire by themselves. Scripts are handed to the script reader;
those without a navigation sink are only kept, in case a later question (a variable's
value, a call of a named function) needs them. At the end, `Page.navigations` decides for
each navigation found whether it happens without a user, and which form a script submits.

Every navigation found is kept, however many: the reading's one step budget (`results.Steps`)
bounds the work, markup scanning included, so a page cannot hide a navigation behind others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from clickguard.inspection.navigation.markup_scan import (
    ASCII_WS,
    AUTO_EVENTS,
    DOCUMENT,
    HTML,
    INNER,
    JS_TYPES,
    MAX_VIEW_DEPTH,
    SCRIPT,
    WRITTEN,
    MarkupScanner,
    ascii_lower,
    is_hidden,
    tag_attributes,
)
from clickguard.inspection.navigation.refresh import parse_refresh
from clickguard.inspection.navigation.results import (
    RAW_MAX,
    Navigation,
    Steps,
    Technique,
    active_steps,
    with_scheme,
)
from clickguard.inspection.navigation.script_evaluator import PageGlobals
from clickguard.inspection.navigation.script_reader import LOCATION_ALIAS, Script, may_navigate
from clickguard.inspection.navigation.script_scopes import ALWAYS, INHERIT, NAMED, NEVER, Ctx
from clickguard.inspection.navigation.script_values import FRAGMENT, PH, Val
from clickguard.inspection.navigation.url_resolution import C0_AND_SPACE, prefix_target, resolve, scheme_of

_TRIVIAL_JS = re.compile(r"[\s;]*(?:void[\s(]*0[\s)]*|false|true|null|undefined|0|''|\"\"|)[\s;]*\Z")
_NOT_LOADED_SCHEMES = frozenset({"", "about"})
_READ_TAGS = frozenset({"meta", "base", "iframe", "frame", "form"})


@dataclass(slots=True)
class _Found:
    """A navigation seen, before the page as a whole decides whether it is automatic."""

    technique: Technique
    target: str | None
    raw: str
    ctx: Ctx
    obfuscated: bool
    delay: float | None = None
    form_ref: tuple[str, str] | None = None  # FORM_AUTOSUBMIT whose form is looked up at the end


class _Form(NamedTuple):
    """A <form> of the document, for script that submits it."""

    id: str
    name: str
    action: str | None
    base: str


class Page:
    """Everything one response's markup and scripts showed, read within one step budget.

    The budget is ``steps``, or the reading's in progress (`results.ACTIVE_STEPS`).
    """

    def __init__(self, doc_url: str, steps: Steps | None = None) -> None:
        self.doc_url = doc_url
        self.base = doc_url
        self.base_set = False
        self.steps = steps if steps is not None else active_steps(0)
        self.root = Ctx(ALWAYS, None)
        self.never = Ctx(NEVER, None)
        self.found: list[_Found] = []
        self.forms: list[_Form] = []
        # Every script in document order; one without sinks is tokenized only if a
        # later question (a variable, a call of a function) needs it.
        self.sources: list[tuple[str, Ctx]] = []
        self.scripts: list[Script | None] = []
        self.called: dict[Ctx, bool] = {}  # named function -> whether automatic code calls it
        self.lookup_depth = 0  # how deep values defined from other values are being looked up
        self.cycles = 0  # values found defined from themselves (what was worked out meanwhile is not kept)
        self.globals = PageGlobals(self)
        self.alias_checked = 0  # the sources searched so far for the location object in a variable
        self.alias_seen = False
        try:
            parts = urlsplit(doc_url)
            host = parts.netloc.rpartition("@")[2]
            self.self_parts = {
                "href": doc_url, "origin": f"{parts.scheme}://{host}", "protocol": f"{parts.scheme}:",
                "host": host, "hostname": parts.hostname or "", "port": str(parts.port or ""),
                "pathname": parts.path or "/", "search": f"?{parts.query}" if parts.query else "",
            }
        except ValueError:
            self.self_parts = {"href": doc_url}

    def add(self, technique: Technique, target: str | None, raw: str, ctx: Ctx, obfuscated: bool,
            depth: int, delay: float | None = None, form_ref: tuple[str, str] | None = None) -> None:
        """Record a navigation; a javascript: target is also read as the script it is."""
        self.steps.charge()
        raw = raw.strip()[:RAW_MAX]
        if scheme_of(target) == "javascript" and target is not None:
            code = unquote(target[len("javascript:"):])
            if _TRIVIAL_JS.match(code):
                return
            self.found.append(_Found(technique, target, raw, ctx, obfuscated, delay, form_ref))
            self.analyze_script(code, ctx, depth + 1, obfuscated, raw, prefilter=False)
            return
        self.found.append(_Found(technique, target, raw, ctx, obfuscated, delay, form_ref))

    def target_of(self, value: Val) -> str | None:
        """The absolute URL a script value names, or the part of it a known prefix fixes."""
        return self._url(value.text)

    def _url(self, url: str) -> str | None:
        """A URL resolved against the base; one built by script may hold unknown parts."""
        if FRAGMENT in url:
            url = url.split(FRAGMENT, 1)[0]  # location.hash: "#..." or nothing, the rest is fragment too
        if PH in url:
            return prefix_target(url.split(PH, 1)[0], self.base)
        return resolve(url, self.base)

    def analyze_script(self, code: str, ctx: Ctx, depth: int, obfuscated: bool, raw: str | None,
                       prefilter: bool) -> None:
        """Read one script for navigations; one with no navigation sink in it is only kept for later."""
        if depth > 4 or not code:
            return
        self.sources.append((code, ctx))
        self.scripts.append(None)
        if prefilter and not may_navigate(code):
            return
        script = Script(self, len(self.sources) - 1, code, ctx, depth, obfuscated, raw)
        self.scripts[-1] = script
        script.run()

    def script(self, index: int) -> Script:
        """The script at index, tokenized now if it was passed over."""
        script = self.scripts[index]
        if script is None:
            code, ctx = self.sources[index]
            script = self.scripts[index] = Script(self, index, code, ctx, 0, False, None)
        return script

    def location_alias(self) -> bool:
        """Whether any script of the page so far may hold the location object in a variable.

        Each source is searched once, however many scripts ask.
        """
        sources = self.sources
        while not self.alias_seen and self.alias_checked < len(sources):
            code = sources[self.alias_checked][0]
            self.steps.charge(len(code) >> 4)
            self.alias_seen = LOCATION_ALIAS.search(code) is not None
            self.alias_checked += 1
        return self.alias_seen

    def scan_markup(self, text: str, ctx: Ctx, depth: int, mode: int, obfuscated: bool,
                    raw: str | None, xml: bool = False) -> None:
        """Read markup (a document, or markup a script writes) for the tags that navigate or load.

        ``xml``: the document is XML (XHTML, SVG), read by the XML parser's rules. The scanning
        is charged to the page's steps: the text each time it is read (the same markup written
        again is read again) and the scanner's tokens and stack operations as they come.
        """
        if depth > 4 or "<" not in text:
            return
        steps = self.steps
        steps.charge(len(text) >> 3)
        written = mode != DOCUMENT
        scanner = MarkupScanner(text, _READ_TAGS, auto_events=True, xml=xml)
        scanner.poll, scanner.max_depth = steps.poll, MAX_VIEW_DEPTH
        charged = 0
        for tag in scanner:
            steps.charge(scanner.steps - charged)
            charged = scanner.steps
            if tag.inert:
                continue  # template contents: never rendered, never run
            tag_raw = raw if raw is not None else text[tag.start:tag.end]
            if tag.kind == SCRIPT:
                if not tag.scripting_off and mode != INNER:
                    attrs = tag.attrs if tag.attrs is not None else tag_attributes(
                        text[tag.attrs_start:tag.attrs_end], True)
                    self._script(attrs, tag.text, ctx, depth, written, obfuscated, raw)
                continue
            attrs = tag.attributes(text)
            name = tag.name
            if tag.ns == HTML:
                if name == "meta":
                    # In <noscript> too: a browser without script obeys it.
                    self._meta(attrs, tag_raw, ctx, depth, mode, obfuscated)
                elif tag.scripting_off:
                    if name in ("iframe", "frame"):
                        self._frame(attrs, tag_raw, self.never, depth, mode, obfuscated)
                    continue
                elif name == "base":
                    href = attrs.get("href")
                    if href is not None and not self.base_set:
                        self.base_set = True
                        resolved = resolve(href, self.doc_url)
                        if resolved is not None and scheme_of(resolved) not in ("data", "javascript"):
                            self.base = resolved
                elif name in ("iframe", "frame"):
                    self._frame(attrs, tag_raw, ctx, depth, mode, obfuscated)
                elif name == "form":
                    self.forms.append(_Form(attrs.get("id", ""), attrs.get("name", ""), attrs.get("action"),
                                            self.base))
            if not tag.scripting_off and mode != INNER:
                self._event_attributes(attrs, tag_raw, ctx, depth, obfuscated)
        steps.charge(scanner.steps - charged)

    def _meta(self, attrs: dict[str, str], raw: str, ctx: Ctx, depth: int, mode: int,
              obfuscated: bool) -> None:
        """A <meta http-equiv=refresh> (in <noscript> too: a browser without script obeys it)."""
        if ascii_lower(attrs.get("http-equiv", "").strip(ASCII_WS)) != "refresh" or "content" not in attrs:
            return
        parsed = parse_refresh(attrs["content"])
        if parsed is None:
            return
        seconds, url = parsed
        if url is None:
            target: str | None = self.doc_url
        elif PH in url or FRAGMENT in url:
            target = self._url(url)
        else:
            target = resolve(url, self.base)
            if target is None:
                return  # a URL that does not parse: the browser ignores the refresh
        technique = Technique.META_REFRESH if mode == DOCUMENT else Technique.DOCUMENT_WRITE
        self.add(technique, target, raw, ctx, obfuscated, depth, seconds)

    def _script(self, attrs: dict[str, str], content: str, ctx: Ctx, depth: int, written: bool,
                obfuscated: bool, raw: str | None) -> None:
        """An inline script, read for navigations; a written <script src> is a load by itself."""
        kind = attrs.get("type")
        if kind is not None:
            if ascii_lower(kind.strip(ASCII_WS)) not in JS_TYPES:
                return
        elif not ascii_lower(attrs.get("language", "javascript")).startswith(
                ("javascript", "jscript", "ecmascript", "livescript")):
            return
        src = attrs.get("src")
        if src is not None:
            if written and src.strip(C0_AND_SPACE):
                target = self._url(src)
                if target is not None:
                    self.add(Technique.DOCUMENT_WRITE, target, raw or f"<script src={src}>", ctx, obfuscated,
                             depth)
            return
        if content.startswith("<![CDATA[") or "<![CDATA[" in content[:64]:
            content = content.replace("<![CDATA[", "", 1).replace("]]>", "")
        self.analyze_script(content, ctx, depth, obfuscated, raw, prefilter=not written)

    def _frame(self, attrs: dict[str, str], raw: str, ctx: Ctx, depth: int, mode: int,
               obfuscated: bool) -> None:
        """An <iframe>/<frame>: reported when hidden, when its source is data: or javascript:, or written."""
        src = attrs.get("src", "")
        if not src.strip(C0_AND_SPACE):
            return
        target = self._url(src)
        if scheme_of(target) in _NOT_LOADED_SCHEMES and target is not None:
            return
        hidden = is_hidden(attrs)
        if mode == WRITTEN or (mode == INNER and hidden):
            self.add(Technique.DOCUMENT_WRITE, target, raw, ctx, obfuscated, depth)
        elif mode == DOCUMENT and (hidden or scheme_of(target) in ("data", "javascript")):
            self.add(Technique.HIDDEN_IFRAME, target, raw, ctx, obfuscated, depth)

    def _event_attributes(self, attrs: dict[str, str], raw: str, ctx: Ctx, depth: int,
                          obfuscated: bool) -> None:
        """Event attributes that fire by themselves, read as scripts run at load."""
        for name, code in attrs.items():
            if not name.startswith("on") or name[2:] not in AUTO_EVENTS:
                continue
            if name in ("onfocus", "onfocusin") and "autofocus" not in attrs:
                continue
            if name == "ontoggle" and "open" not in attrs:
                continue
            self.analyze_script(code, Ctx(INHERIT, ctx), depth, obfuscated, None, prefilter=False)

    # -- the end: decide what was automatic ---------------------------------

    def navigations(self) -> list[Navigation]:
        """The navigations found, judged as a whole: named functions and forms resolved.

        Whether automatic code calls a named function comes from `called`, which the caller
        fills (`script_scopes.Callers`); one not settled there counts as called: unknown is
        treated as suspicious.
        """
        result = []
        forms = self._form_index()
        for found in self.found:
            target = found.target
            if found.form_ref is not None:
                target = self._form_target(found.form_ref, forms)
            anchor = found.ctx.anchor()
            automatic = anchor.mode == ALWAYS or (anchor.mode == NAMED and self.called.get(anchor, True))
            timer = found.ctx.timer_ctx()
            technique = found.technique
            scheme = scheme_of(target)
            if scheme in ("data", "javascript"):
                technique = with_scheme(technique, target)
            elif found.obfuscated:
                technique = Technique.OBFUSCATED_SCRIPT
            elif timer is not None and technique is Technique.SCRIPT:
                technique = Technique.SCRIPT_TIMER
            delay = found.delay if found.delay is not None else (timer.delay if timer is not None else None)
            result.append(Navigation(technique, target, found.raw, automatic, delay))
        return result

    def _form_index(self) -> dict[str, _Form]:
        """The first form of each id or name, built once (not searched per submit)."""
        index: dict[str, _Form] = {}
        for form in self.forms:
            index.setdefault(form.id, form)
            index.setdefault(form.name, form)
        return index

    def _form_target(self, ref: tuple[str, str], forms: dict[str, _Form]) -> str | None:
        """Where the form a script submits goes: its action, resolved, or the document itself."""
        kind, key = ref
        form: _Form | None = None
        if kind == "index" and key.isdigit() and int(key) < len(self.forms):
            form = self.forms[int(key)]
        elif kind in ("id", "name"):
            form = forms.get(key)
        elif kind == "" and len(self.forms) == 1:
            form = self.forms[0]
        if form is None:
            return None
        if not form.action or not form.action.strip(C0_AND_SPACE):
            return self.doc_url
        return resolve(form.action, form.base)
