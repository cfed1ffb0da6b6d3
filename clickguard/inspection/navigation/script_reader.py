"""The script reader: the navigation sinks of one script and what they are handed.

Sinks: ``location = ``, ``location.href = ``, ``location.host = ``,
``location.assign/replace()``, ``window.open()``, ``navigation.navigate()``,
``document.write()`` and ``innerHTML`` (the markup written is read as the page's own),
``form.submit()`` and ``link.click()``, hidden frames built with ``createElement``, and
code handed to ``eval``, ``Function`` or a string timer (read as script in turn, packed
code included). A plain-text pre-check (`may_navigate`) spares the tokenizer every script
that holds no sink at all.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from clickguard.inspection.navigation.deobfuscation import unpack
from clickguard.inspection.navigation.markup_scan import INNER, WRITTEN, is_hidden
from clickguard.inspection.navigation.results import RAW_MAX, Technique
from clickguard.inspection.navigation.script_evaluator import WINDOWS, Evaluator
from clickguard.inspection.navigation.script_lexer import (
    JS_TOKEN,
    NAME,
    NUM,
    STR,
    TPL_TAIL,
    lex,
    string_literal,
)
from clickguard.inspection.navigation.script_scopes import INHERIT, Ctx, Scopes, timer_delay
from clickguard.inspection.navigation.script_values import FRAGMENT, PH, Val, join
from clickguard.inspection.navigation.url_resolution import scheme_of

if TYPE_CHECKING:
    from clickguard.inspection.navigation.page_reader import Page


# Scripts without any of these words cannot navigate, so they are not tokenized at all. Words,
# not patterns: a comment or a line break may sit anywhere between a name and what follows
# (`location/**/.assign(u)`, `location?.replace(u)`), and since reading a script costs time
# linear in its length, a wide net costs little.
_HINT_WORDS = ("location", "open", "write", "ubmit", "click", "HTML", "navigate", "eval", "Function",
               "execScript", "setTimeout", "setInterval", "createElement", "\\")
# A computed member of one of these (`window["loc" + "ation"]`) may be anything.
_COMPUTED_ROOTS = ("window", "self", "top", "parent", "opener", "globalThis", "frames", "document")


def may_navigate(code: str) -> bool:
    """Whether a script contains anything that could navigate (cheap: no tokenizing)."""
    if any(word in code for word in _HINT_WORDS):
        return True
    return "[" in code and any(root in code for root in _COMPUTED_ROOTS)


_MAX_DEPTH = 4  # code in code (eval, timers) is read this deep (page_reader's bound); deeper is hidden
_ROOTS = WINDOWS | {"document", "location", "frames"}
_MEMBER_TRIGGERS = frozenset({
    "submit", "requestSubmit", "click", "innerHTML", "outerHTML", "href", "assign", "replace",
})
# The location object held in a variable: `var l = window.location;`
LOCATION_ALIAS = re.compile(r"=\s*(?:(?:window|self|top|parent|document)\s*\.\s*)*location\s*(?:[;,)\n]|\Z)")
_TRIGGERS = _ROOTS | _MEMBER_TRIGGERS | {"eval", "execScript", "Function", "setTimeout", "setInterval"}
_MAX_RECEIVER = 16  # the brackets and names walked back to find what a method is called on


class Script:
    """One script read for navigations: its tokens, its scopes, the values of its expressions.

    Only the tokens that can begin a sink are visited (`run`). Where a sink runs is asked
    of `scopes`, what a sink's argument evaluates to of `values`; both answer lazily and
    remember. What a sink finds goes to the page, which judges the whole at the end.
    """

    def __init__(self, page: Page, index: int, code: str, ctx: Ctx, depth: int, obfuscated: bool,
                 raw: str | None) -> None:
        self.page = page
        self.index = index  # among the page's scripts (`Page.sources`), in document order
        self.code = code
        self.steps = page.steps  # the page's one budget
        self.steps.charge(len(code) // 8)  # before lexing: a script past the budget is not lexed at all
        self.tokens = lex(code)
        self.steps.charge(len(self.tokens.kinds))
        self.kinds = self.tokens.kinds
        self.texts = self.tokens.texts
        self.n = self.tokens.n
        self.root = ctx
        self.ctx = ctx  # the context of the sink being handled
        self.depth = depth
        self.obfuscated = obfuscated
        self.raw_override = raw
        if ctx.script is None and ctx is not page.root:
            ctx.script, ctx.span = self, (0, self.n)  # an event attribute's or timer string's own scope
        self.scopes = Scopes(self)
        self.values = Evaluator(self)
        self.element_attrs: dict[str, dict[str, tuple[Val, Ctx]]] = {}

    def run(self) -> None:
        """Handle every sink of the script."""
        kinds, sites = self.kinds, self.tokens.sites
        for i in sorted(k for name in _TRIGGERS.intersection(sites) for k in sites[name]):
            if kinds[i] == NAME:
                self.steps.charge()
                self._trigger(i)

    # -- sinks ----------------------------------------------------------------

    def _at(self, i: int) -> None:
        """Make the context of token i the current one, for the sink that starts there."""
        self.ctx = self.scopes.ctx_at(i)

    def _trigger(self, i: int) -> None:
        """A name that may begin a navigation: a window or location chain, eval, a timer, submit()."""
        texts, n = self.texts, self.n
        name = texts[i]
        self.values.cut = False
        prev = texts[i - 1] if i else ""
        following = texts[i + 1] if i + 1 < n else ""
        if name in _MEMBER_TRIGGERS:
            if prev not in (".", "?."):
                return
            if following == "(" and name in ("submit", "requestSubmit", "click"):
                self._member_call(i)
            elif following == "=" and name in ("innerHTML", "outerHTML"):
                self._inner_html(i)
            elif following == ("=" if name == "href" else "(") and name in ("href", "assign", "replace"):
                self._location_alias(i)
            return
        if prev in (".", "?.", "var", "let", "const", "function"):
            return  # a member of something else, or a local of that name
        if following == ":" and prev in ("{", ","):
            return  # an object key
        if name in ("eval", "execScript", "Function") and following == "(":
            self._eval(i, i + 1, name == "Function", False)
            return
        if name in ("setTimeout", "setInterval") and following == "(":
            self._timer(i, i + 1)
            return
        if name not in _ROOTS:
            return
        parts, after, obfuscated = self._chain(i)
        k = 0
        while k < len(parts) - 1 and parts[k] in WINDOWS:
            k += 1
        rest = parts[k:]
        if rest[:2] == ["document", "location"]:
            rest = rest[1:]
        following = texts[after] if after < n else ""
        if rest[0] == "location":
            if following == "=" and (len(rest) == 1 or rest[1:] == ["href"]):
                self._assign_sink(i, after, obfuscated)
            elif following == "=" and rest[1:] in (["host"], ["hostname"]):
                self._host_sink(i, after, rest[1], obfuscated)
            elif following == "(" and rest[1:] in (["assign"], ["replace"]):
                self._call_sink(i, after, Technique.SCRIPT, obfuscated)
        elif following == "(" and k and rest == ["open"]:
            self._call_sink(i, after, Technique.WINDOW_OPEN, obfuscated)
        elif following == "(" and k and rest == ["navigate"]:
            self._call_sink(i, after, Technique.SCRIPT, obfuscated)
        elif following == "(" and rest in (["document", "write"], ["document", "writeln"]):
            self._write(i, after, obfuscated)
        elif following == "(" and rest == ["document", "createElement"]:
            self._created_element(i, after)
        elif following == "(" and rest in (["eval"], ["execScript"], ["Function"]):
            self._eval(i, after, rest == ["Function"], obfuscated)
        elif following == "(" and rest in (["setTimeout"], ["setInterval"]):
            self._timer(i, after)

    def _chain(self, i: int) -> tuple[list[str], int, bool]:
        """The member names of `a.b["c"]...` from i, where it ends, and whether a name was hidden."""
        texts, kinds, n = self.texts, self.kinds, self.n
        parts = [texts[i]]
        obfuscated = i in self.tokens.escaped
        j = i + 1
        while j < n and len(parts) < 8:
            text = texts[j]
            if (text == "." or text == "?.") and j + 1 < n and kinds[j + 1] == NAME:
                parts.append(texts[j + 1])
                obfuscated = obfuscated or (j + 1) in self.tokens.escaped
                j += 2
            elif text == "[":
                closer = self.tokens.close_of.get(j)
                if closer is None:
                    break
                key = self.values.value_of(j + 1, closer, 1)
                literal = closer == j + 2 and kinds[j + 1] in (STR, NUM)
                j = closer + 1
                if PH in key.text:
                    parts.append(PH)
                    break
                parts.append(key.text)
                # window["lo" + "cation"], window[atob(..)]: a member name computed to hide it
                obfuscated = obfuscated or key.obfuscated or not literal
            else:
                break
        return parts, j, obfuscated

    def _raw(self, start: int) -> str:
        """The source of the statement that begins at token start, at most 200 characters."""
        if self.raw_override is not None:
            return self.raw_override
        texts, close_of, starts = self.texts, self.tokens.close_of, self.tokens.starts
        limit = starts[start] + RAW_MAX
        k = start
        while k < self.n and starts[k] < limit:
            text = texts[k]
            jump = close_of.get(k)
            if jump is not None:
                while jump in close_of:
                    jump = close_of[jump]
                k = jump + 1
                continue
            if text == ";" or text in (")", "]", "}") or self.kinds[k] == TPL_TAIL:
                break
            k += 1
        last = min(max(k - 1, start), self.n - 1)
        end = starts[last] + len(texts[last])
        if last in self.tokens.escaped:  # the text is decoded: measure the source again
            match = JS_TOKEN.match(self.code, starts[last])
            end = match.end() if match else end
        return self.code[starts[start]:end][:RAW_MAX]

    def _emit(self, technique: Technique, value: Val | None, start: int, obfuscated: bool,
              ctx: Ctx | None = None, form_ref: tuple[str, str] | None = None) -> None:
        """Record a navigation from this script."""
        target = None if value is None else self.page.target_of(value)
        hidden = self.obfuscated or obfuscated or (value is not None and value.obfuscated)
        # A target left unknown by a bound on the work is hidden, not merely unknown: building
        # it through more values than the reader follows is a way to hide it.
        hidden = hidden or (self.values.cut and (value is None or PH in value.text))
        self.page.add(technique, target, self._raw(start), ctx or self.ctx, hidden, self.depth,
                      form_ref=form_ref)

    def _assign_sink(self, start: int, equals: int, obfuscated: bool) -> None:
        """`location = x`, `location.href = x`."""
        self._at(start)
        self._emit(Technique.SCRIPT, self.values.value_from(equals + 1), start, obfuscated)

    def _host_sink(self, start: int, equals: int, part: str, obfuscated: bool) -> None:
        """`location.host = x` moves the page to another host."""
        self._at(start)
        value = self.values.value_from(equals + 1)
        try:
            parts = urlsplit(self.page.doc_url)
            port = parts.port
        except ValueError:
            port = None
            parts = None
        if parts is None or PH in value.text or FRAGMENT in value.text:
            self._emit(Technique.SCRIPT, None, start, obfuscated or value.obfuscated)
            return
        netloc = value.text if part == "host" or port is None else f"{value.text}:{port}"
        url = parts._replace(netloc=netloc).geturl()
        self._emit(Technique.SCRIPT, Val(url, value.obfuscated), start, obfuscated)

    def _call_sink(self, start: int, opener: int, technique: Technique, obfuscated: bool) -> None:
        """`location.assign(x)`, `location.replace(x)`, `window.open(x)`."""
        self._at(start)
        args = self.tokens.args(opener)
        if not args or args[0][0] == args[0][1]:
            return  # window.open() with no URL opens a blank window
        self._emit(technique, self.values.value_of(*args[0]), start, obfuscated)

    def _write(self, start: int, opener: int, obfuscated: bool) -> None:
        """document.write(...): the markup written is read like the document's own."""
        self._at(start)
        value = join([self.values.value_of(first, stop) for first, stop in self.tokens.args(opener)])
        if "<" not in value.text:
            return
        raw = self._raw(start)
        hidden = self.obfuscated or obfuscated or value.obfuscated
        self.page.scan_markup(value.text, self.ctx, self.depth + 1, WRITTEN, hidden, raw)

    def _eval(self, start: int, opener: int, last_argument: bool, obfuscated: bool) -> None:
        """eval(code), Function(code): known code is read as script; unknown decoded code is reported."""
        self._at(start)
        args = self.tokens.args(opener)
        if not args:
            return
        first, stop = args[-1] if last_argument else args[0]
        if first >= stop:
            return
        value = self.values.value_of(first, stop)
        if PH in value.text and self.texts[first] == "function":
            unpacked = self._unpack(first, stop)
            if unpacked is not None:
                value = unpacked
        code = value.text.split(PH, 1)[0]
        if code.strip() and self.depth >= _MAX_DEPTH:
            self._emit(Technique.OBFUSCATED_SCRIPT, None, start, True)  # code too deep to read: hidden
        elif code.strip():
            self.page.analyze_script(code, self.ctx, self.depth + 1, True, self._raw(start), prefilter=False)
        elif value.obfuscated or obfuscated:
            self._emit(Technique.SCRIPT, None, start, True)

    def _unpack(self, first: int, stop: int) -> Val | None:
        """The code inside Dean Edwards' packer: eval(function(p,a,c,k,e,d){..}('..',62,9,'..'.split()))."""
        texts = self.texts
        params = [texts[k] for k in range(first + 2, min(first + 12, stop), 2)]
        if params[:4] != ["p", "a", "c", "k"]:
            return None
        closer = next((k for k in range(first, stop) if texts[k] == "{"), None)
        if closer is None:
            return None
        end = self.tokens.close_of.get(closer)
        if end is None or end + 1 >= stop or texts[end + 1] != "(":
            return None
        return unpack([self.values.value_of(a, b) for a, b in self.tokens.args(end + 1)])

    def _timer(self, start: int, opener: int) -> None:
        """setTimeout/setInterval with code as a string (a function argument is judged at its body)."""
        args = self.tokens.args(opener)
        if not args:
            return
        first, stop = args[0]
        if first >= stop or self.texts[first] in ("function", "async") or (
                "=>" in self.texts[first:min(stop, first + 64)]):
            return
        if stop - first == 1 and self.kinds[first] == NAME:
            known = self.values.lookup(self.texts[first], first)
            if known is None or PH in known.text:
                return  # a function passed by name: judged where the function is
        self._at(start)
        ctx = Ctx(INHERIT, self.ctx, timer=True, delay=timer_delay(self.tokens, opener))
        value = self.values.value_of(first, stop)
        code = value.text.split(PH, 1)[0]
        if code.strip() and self.depth >= _MAX_DEPTH:
            self._emit(Technique.OBFUSCATED_SCRIPT, None, start, True, ctx)
        elif code.strip():
            self.page.analyze_script(code, ctx, self.depth + 1, self.obfuscated or value.obfuscated,
                                     self._raw(start), prefilter=False)
        elif value.obfuscated:
            self._emit(Technique.SCRIPT, None, start, True, ctx)

    def _member_call(self, i: int) -> None:
        """`form.submit()` and `link.click()`."""
        name = self.texts[i]
        closer = self.tokens.close_of.get(i + 1)
        if name != "requestSubmit" and (closer is None or closer != i + 2):
            return  # submit(handler) binds a handler; only submit() submits
        start = self._receiver_start(i)
        receiver = self._receiver(i)
        if name == "click":
            if receiver is not None and receiver[0] == "var":
                href = self._element_attrs(receiver[1]).get("href")
                if href is not None:
                    self._at(i)
                    self._emit(Technique.SCRIPT, href[0], start, False)
            return
        self._at(i)
        if receiver is not None and receiver[0] == "var":
            action = self._element_attrs(receiver[1]).get("action")
            if action is not None:
                self._emit(Technique.FORM_AUTOSUBMIT, action[0], start, False)
                return
            site = self.values.assignment_site(receiver[1], i)
            receiver = None
            if site is not None:
                script, k = site
                receiver = script._element_ref(k + 2, script.values.expression_end(k + 2))
        self._emit(Technique.FORM_AUTOSUBMIT, None, start, False, form_ref=receiver or ("", ""))

    def _location_alias(self, i: int) -> None:
        """`l.href = x`, `l.replace(x)` where the variable l holds the location object."""
        receiver = i - 2
        if receiver < 0 or self.kinds[receiver] != NAME or self.texts[receiver] in _ROOTS \
                or (receiver and self.texts[receiver - 1] in (".", "?.")):
            return
        if not self.page.location_alias():
            return
        value = self.values.lookup(self.texts[receiver], receiver)
        if value is None or not value.location:
            return
        if self.texts[i] == "href":
            self._assign_sink(receiver, i + 1, False)
        else:
            self._call_sink(receiver, i + 1, Technique.SCRIPT, False)

    def _inner_html(self, i: int) -> None:
        """`el.innerHTML = markup`: the frames and refreshes in it load as in the document."""
        self._at(i)
        value = self.values.value_from(i + 2)
        if "<" in value.text:
            hidden = self.obfuscated or value.obfuscated
            self.page.scan_markup(value.text, self.ctx, self.depth + 1, INNER, hidden,
                                  self._raw(self._receiver_start(i)))

    def _created_element(self, start: int, opener: int) -> None:
        """`f = document.createElement('iframe')`, given a source and hidden: a hidden frame."""
        texts, kinds = self.texts, self.kinds
        closer = self.tokens.close_of.get(opener)
        if closer is None or closer != opener + 2 or kinds[opener + 1] != STR:
            return
        if string_literal(texts[opener + 1])[0].strip().lower() not in ("iframe", "frame"):
            return
        equals = start - 1
        if equals < 1 or texts[equals] != "=" or kinds[equals - 1] != NAME:
            return
        attrs = self._element_attrs(texts[equals - 1])
        if "src" not in attrs:
            return
        value, ctx = attrs["src"]
        target = self.page.target_of(value)
        if "hidden" in attrs or scheme_of(target) in ("data", "javascript"):
            raw = f"{texts[equals - 1]}.src = {value.text}"
            self.page.add(Technique.HIDDEN_IFRAME, target, raw, ctx, self.obfuscated or value.obfuscated,
                          self.depth)

    def _element_attrs(self, element: str) -> dict[str, tuple[Val, Ctx]]:
        """What the script sets on an element it holds in a variable: href, action, src, and hiding."""
        known = self.element_attrs.get(element)
        if known is not None:
            return known
        attrs: dict[str, tuple[Val, Ctx]] = {}
        self.element_attrs[element] = attrs
        texts, n = self.texts, self.n
        for k in self.tokens.name_sites(element):
            if k + 3 >= n or texts[k + 1] not in (".", "?.") or (k and texts[k - 1] in (".", "?.")):
                continue
            member = texts[k + 2]
            if member == "setAttribute" and texts[k + 3] == "(":
                args = self.tokens.args(k + 3)
                if len(args) == 2:
                    attribute = self.values.value_of(*args[0]).text.lower()
                    self._set_element_attr(attrs, attribute, self.values.value_of(*args[1]), k)
            elif texts[k + 3] == "=":
                self._set_element_attr(attrs, member.lower(), self.values.value_from(k + 4), k)
            elif member == "style" and k + 5 < n and texts[k + 3] in (".", "?.") and texts[k + 5] == "=":
                value = self.values.value_from(k + 6)
                style = value.text if texts[k + 4] == "cssText" else f"{texts[k + 4]}:{value.text}"
                self._set_element_attr(attrs, "style", Val(style, value.obfuscated), k)
        return attrs

    def _set_element_attr(self, attrs: dict[str, tuple[Val, Ctx]], attribute: str, value: Val,
                          k: int) -> None:
        """Record one attribute set on an element; width, height and style only for whether they hide it."""
        if attribute in ("href", "action", "src"):
            attrs[attribute] = (value, self.scopes.ctx_at(k))
        elif attribute in ("width", "height", "style", "hidden") and (
                attribute == "hidden" or is_hidden({attribute: value.text})):
            attrs["hidden"] = (value, self.scopes.ctx_at(k))

    def _receiver_start(self, i: int) -> int:
        """The first token of the object a method at i (after its ".") is called on."""
        texts, kinds, open_of = self.texts, self.kinds, self.tokens.open_of
        j = i - 2
        for _ in range(_MAX_RECEIVER):
            if j < 0:
                break
            if texts[j] in (")", "]"):
                opener = open_of.get(j)
                if opener is None:
                    break
                j = opener - 1
                continue
            if kinds[j] == NAME:
                if j > 0 and texts[j - 1] in (".", "?."):
                    j -= 2
                    continue
                return j
            break
        else:
            return i - 1  # longer than any receiver read here: unknown (a chain of calls is not walked again)
        return max(j + 1, 0)

    def _receiver(self, i: int) -> tuple[str, str] | None:
        """Which element a method at i is called on: ("index"|"id"|"name"|"new"|"var", key)."""
        start = self._receiver_start(i)
        ref = self._element_ref(start, i - 1)
        if ref is not None:
            return ref
        if start == i - 2 and self.kinds[start] == NAME:
            return "var", self.texts[start]
        return None

    def _element_ref(self, start: int, end: int) -> tuple[str, str] | None:
        """The element a document.forms[..], getElementById(), querySelector() or $() names, or creates."""
        texts, kinds = self.texts, self.kinds
        j = start
        if j + 1 < end and texts[j] in WINDOWS and texts[j + 1] == ".":
            j += 2
        if j >= end:
            return None
        if texts[j] in ("$", "jQuery") and j + 1 < end and texts[j + 1] == "(":
            closer = self.tokens.close_of.get(j + 1)
            if closer is None or closer + 1 != end:
                return None
            return _selector_ref(self.values.value_of(j + 2, closer).text)
        if texts[j] != "document" or j + 2 >= end or texts[j + 1] != ".":
            return None
        member = texts[j + 2]
        after = j + 3
        if member == "forms" and after < end and texts[after] == "[":
            closer = self.tokens.close_of.get(after)
            if closer is None:
                return None
            key = self.values.value_of(after + 1, closer)
            if PH in key.text:
                return None
            return ("index" if kinds[after + 1] == NUM else "name"), key.text
        if after < end and texts[after] == "(":
            closer = self.tokens.close_of.get(after)
            if closer is None:
                return None
            argument = self.values.value_of(after + 1, closer).text
            if PH in argument:
                return None
            indexed = closer + 1 < end and texts[closer + 1] == "["
            if member == "getElementById" and closer + 1 == end:
                return "id", argument
            if member == "querySelector" and closer + 1 == end:
                return _selector_ref(argument)
            if member == "createElement" and closer + 1 == end:
                return "new", argument.strip().lower()
            if member in ("getElementsByTagName", "querySelectorAll", "getElementsByName") and indexed:
                index = self.values.value_of(closer + 2, self.tokens.close_of.get(closer + 1, end)).text
                if member == "getElementsByName":
                    return "name", argument
                return "index", index
            return None
        if after == end and kinds[j + 2] == NAME and member not in ("body", "documentElement", "head"):
            return "name", member
        return None


def _selector_ref(selector: str) -> tuple[str, str] | None:
    """The element a simple CSS selector names: "#id", "form", "form[name=x]"."""
    selector = selector.strip()
    if PH in selector:
        return None
    if selector.startswith("#") and selector[1:].replace("-", "").replace("_", "").isalnum():
        return "id", selector[1:]
    if selector.lower() == "form":
        return "index", "0"
    match = re.fullmatch(r"form\[name=['\"]?([\w-]+)['\"]?\]", selector, re.I)
    return ("name", match.group(1)) if match else None
