"""The value of a script expression from its tokens: concatenations, decoders, variables, URLs.

Strings, templates and numbers are read from their literals; `+` concatenates; decoding
globals, string and array methods are applied by `deobfuscation`; `new URL(...)` and the
page's own `location` parts are known from the page's address. A variable is looked up
where it may have been set (`Evaluator.lookup`). Whatever cannot be known becomes an
unknown part (`PH`), so a target that only starts with a literal keeps that part.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import TYPE_CHECKING

from clickguard.inspection.navigation.deobfuscation import DECODERS, decode_call, string_method
from clickguard.inspection.navigation.script_lexer import (
    NAME,
    NUM,
    PUNCT,
    STR,
    TPL,
    TPL_HEAD,
    TPL_MID,
    TPL_TAIL,
    js_number,
    string_literal,
    template_chunk,
)
from clickguard.inspection.navigation.script_scopes import KEYWORDS, MAX_SCOPE_WALK, Ctx, ScriptPart
from clickguard.inspection.navigation.script_values import (
    FRAGMENT,
    NUMBER,
    PH,
    UNKNOWN,
    URL_PARTS,
    Val,
    join,
    unknown,
    url_part,
)
from clickguard.inspection.navigation.url_resolution import resolve

if TYPE_CHECKING:
    from clickguard.inspection.navigation.page_reader import Page
    from clickguard.inspection.navigation.script_reader import Script

# The names of the global object: `window.location` is `location`.
WINDOWS = frozenset({"window", "self", "globalThis", "top", "parent", "opener", "content"})

_CONTINUES = frozenset({
    "?", "||", "&&", "??", "-", "*", "/", "%", "**", "==", "!=", "===", "!==", "<", ">", "<=", ">=", "&", "|",
    "^", "<<", ">>", ">>>", ".", "?.", "[", "(",
})  # after an expression: it goes on, so its value is not the literal's alone
_MAX_EVAL_DEPTH = 24
_NONE: list[int] = []


class Evaluator(ScriptPart):
    """The values of one script's expressions, as far as literals tell, answered on demand.

    A variable's value comes from the assignments that may reach the use, in the nearest
    scope that sets it (an earlier script's top level included); branches that disagree
    make it unknown. Each assignment's value is worked out once and remembered, so values
    built from values cost what their definitions do, however often they are used; the
    recursion of values defined from other values is bounded (past it: unknown, and `cut`).
    """

    def __init__(self, script: Script) -> None:
        super().__init__(script)
        self.page = script.page
        self.scopes = script.scopes
        self.evaluating: set[int] = set()  # assignments being evaluated, so a cycle stays unknown
        self.settled: dict[int, Val] = {}  # assignment -> its value, when no bound or cycle cut it short
        self.assigned: dict[str, dict[Ctx, list[int]]] = {}  # name -> scope -> its assignments, in order
        # Whether a bound (on lookups, on depth) left a value unknown since the sink began: its
        # navigation is then reported as hidden, not as an ordinary unknown target.
        self.cut = False

    def reaching_assignments(self, name: str, low: int, high: int, scope: Ctx, at: int) -> list[int]:
        """The `name = ...` with low <= index < high, directly in scope, that may set the value used at `at`.

        That is the last one sure to have run (its block is still open at `at`) and the later
        ones inside blocks closed before `at` (an if, a loop): any of them may have won.
        """
        sites = self._assignments(name).get(scope, _NONE)
        close_of = self.tokens.close_of
        reaching: list[int] = []
        for k in reversed(sites[bisect_left(sites, low):bisect_left(sites, high)]):
            reaching.append(k)
            block = self.scopes.enclosing(k, False)
            if block < 0 or close_of.get(block, self.n) >= at or len(reaching) >= 4:
                break
        return reaching

    def _assignments(self, name: str) -> dict[Ctx, list[int]]:
        """The `name = ...` of this script by the scope they run in, from one look at the name's tokens."""
        known = self.assigned.get(name)
        if known is not None:
            return known
        known = self.assigned[name] = {}
        texts, n = self.texts, self.n
        sites = self.tokens.name_sites(name)
        self.script.steps.charge(len(sites))
        for k in sites:
            if k + 1 < n and texts[k + 1] == "=" and not (k and texts[k - 1] in (".", "?.")):
                known.setdefault(self.scopes.ctx_at(k), []).append(k)
        return known

    def _assignment_sites(self, name: str, at: int) -> list[tuple[Script, int]]:
        """Where the variable used at token `at` may have got its value, in the nearest scope that sets it."""
        scope: Ctx | None = self.scopes.ctx_at(at) if at < self.n else self.root
        for _ in range(MAX_SCOPE_WALK):
            if scope is None:
                return []
            self.script.steps.charge()
            sites: list[int] = []
            if scope.script is self.script and scope.span is not None:
                sites = self.reaching_assignments(name, scope.span[0], min(scope.span[1] + 1, at), scope, at)
            elif scope is self.root:
                sites = self.reaching_assignments(name, 0, at, scope, at)
            if sites:
                return [(self.script, k) for k in sites]
            other = scope.script
            if other is not None and other is not self.script and scope.span is not None:
                end = scope.span[1] + 1
                sites = other.values.reaching_assignments(name, scope.span[0], end, scope, end)
                if sites:
                    return [(other, k) for k in sites]
            if name in scope.params:
                return []
            if scope is self.page.root:
                return self.page.globals.sites(name, self.script)
            scope = scope.parent
        self.cut = True  # deeper than the walk goes: unknown, and reported as hidden
        return []

    def assignment_site(self, name: str, at: int) -> tuple[Script, int] | None:
        """The last assignment that may have set the variable used at token `at`."""
        sites = self._assignment_sites(name, at)
        return sites[0] if sites else None

    def lookup(self, name: str, at: int) -> Val | None:
        """A variable's value at token `at`, as far as literals tell; unknown when branches disagree."""
        if self.page.lookup_depth > 12:
            self.cut = True
            return None  # bounds the recursion of values defined from other values
        self.script.steps.charge()
        values = []
        for script, k in self._assignment_sites(name, at):
            assigned = script.values.assigned_value(k)
            if assigned is None:
                return None  # a value defined from itself
            value, cut = assigned
            self.cut = self.cut or cut
            values.append(value)
        if not values:
            return None
        if any(value != values[0] for value in values[1:]):
            return unknown(*values)
        return values[0]

    def assigned_value(self, k: int) -> tuple[Val, bool] | None:
        """The value the assignment to the name at token k gives, and whether a bound cut it short.

        None while that value is being worked out (a value defined from itself).
        """
        known = self.settled.get(k)
        if known is not None:
            return known, False
        page = self.page
        if k in self.evaluating:
            page.cycles += 1
            return None
        outer_cut, cycles = self.cut, page.cycles
        self.cut = False
        self.evaluating.add(k)
        page.lookup_depth += 1
        try:
            value = self.value_from(k + 2)
        finally:
            page.lookup_depth -= 1
            self.evaluating.discard(k)
            cut, self.cut = self.cut, outer_cut
        if not cut and page.cycles == cycles:
            self.settled[k] = value  # the same wherever it is asked from
        return value, cut

    def expression_end(self, i: int) -> int:
        """Where the expression from i stops (for element references)."""
        _, stop = self._expr(i, _MAX_EVAL_DEPTH - 4)
        return stop

    def value_from(self, i: int) -> Val:
        """The value of the expression from i to wherever it ends."""
        value, stop = self._expr(i, 0)
        if stop < self.n and self.texts[stop] in _CONTINUES and self.kinds[stop] == PUNCT:
            return unknown(value)
        return value

    def value_of(self, start: int, stop: int, depth: int = 0) -> Val:
        """The value of exactly the tokens start..stop, unknown unless all of them are understood."""
        if start >= stop:
            return UNKNOWN
        value, end = self._expr(start, depth)
        return value if end == stop else unknown(value)

    def _expr(self, i: int, depth: int) -> tuple[Val, int]:
        """A concatenation of operands from i; where it stopped."""
        value, i = self._operand(i, depth)
        texts, kinds, n = self.texts, self.kinds, self.n
        if i >= n or texts[i] != "+" or kinds[i] != PUNCT:
            return value, i
        parts = [value]  # joined once at the end: adding one part at a time would copy the string each time
        while i < n and texts[i] == "+" and kinds[i] == PUNCT:
            right, i = self._operand(i + 1, depth)
            parts.append(right)
        return self._joined(parts), i

    def _joined(self, parts: list[Val]) -> Val:
        """The concatenation of parts, charged by its length."""
        value = join(parts)
        self.script.steps.charge(len(value.text) >> 4)
        return value

    def _operand(self, i: int, depth: int) -> tuple[Val, int]:
        """One operand and what follows it (.method(), [index])."""
        if i >= self.n:
            return UNKNOWN, self.n
        if depth > _MAX_EVAL_DEPTH:
            self.cut = True
            return UNKNOWN, i + 1
        self.script.steps.charge()
        kind, text = self.kinds[i], self.texts[i]
        close_of = self.tokens.close_of
        value: Val
        if kind == STR:
            value = Val(*string_literal(text))
            i += 1
        elif kind == TPL:
            value = Val(*template_chunk(text))
            i += 1
        elif kind == TPL_HEAD:
            value, i = self._template(i, depth)
        elif kind == NUM:
            value = Val(js_number(text))
            i += 1
        elif kind == NAME:
            value, i = self._name_value(i, depth)
        elif text == "(" and kind == PUNCT:
            closer = close_of.get(i)
            inner, end = self._expr(i + 1, depth + 1)
            if closer is None:
                return unknown(inner), self.n
            value = inner if end == closer else unknown(inner)
            i = closer + 1
        elif text == "[" and kind == PUNCT:
            closer = close_of.get(i)
            if closer is None:
                return UNKNOWN, self.n
            items = [self.value_of(a, b, depth + 1) for a, b in self.tokens.args(i)]
            if any(PH in item.text for item in items):
                value = unknown(*items)
            else:
                value = Val(PH, any(item.obfuscated for item in items), tuple(item.text for item in items))
            i = closer + 1
        else:
            return UNKNOWN, i + 1
        return self._postfix(value, i, depth)

    def _template(self, i: int, depth: int) -> tuple[Val, int]:
        """A template literal with substitutions."""
        kinds = self.kinds
        parts = [Val(*template_chunk(self.texts[i]))]
        j = i + 1
        while True:
            inner, j = self._expr(j, depth + 1)
            parts.append(inner)
            if j < self.n and kinds[j] in (TPL_MID, TPL_TAIL):
                parts.append(Val(*template_chunk(self.texts[j])))
                if kinds[j] == TPL_TAIL:
                    return self._joined(parts), j + 1
                j += 1
                continue
            end = i
            while end in self.tokens.close_of:
                end = self.tokens.close_of[end]
            return unknown(self._joined(parts)), (end + 1 if end != i else self.n)

    def _name_value(self, i: int, depth: int) -> tuple[Val, int]:
        """The value of a name: a decoder call, the page's own location, or a variable."""
        texts, kinds, n = self.texts, self.kinds, self.n
        name = texts[i]
        if name == "new" and i + 2 < n and texts[i + 1] == "URL" and texts[i + 2] == "(":
            closer = self.tokens.close_of.get(i + 2)
            if closer is None:
                return UNKNOWN, n
            args = [self.value_of(a, b, depth + 1) for a, b in self.tokens.args(i + 2)]
            return self._new_url(args), closer + 1
        while name in WINDOWS and i + 2 < n and texts[i + 1] == "." and kinds[i + 2] == NAME \
                and name not in ("top", "parent", "opener"):
            i += 2
            name = texts[i]
        following = texts[i + 1] if i + 1 < n else ""
        if following == "(" and name in DECODERS:
            return self._decoder(name, i + 1, depth)
        if name == "String" and following == "." and i + 3 < n and texts[i + 2] == "fromCharCode" \
                and texts[i + 3] == "(":
            return self._decoder("fromCharCode", i + 3, depth)
        if name == "document" and following == "." and i + 2 < n:
            member = texts[i + 2]
            if member in ("URL", "documentURI"):
                return Val(self.page.doc_url), i + 3
            if member == "domain":
                return Val(self.page.self_parts.get("hostname", PH)), i + 3
            if member == "location":
                i += 2
                name = "location"
                following = texts[i + 1] if i + 1 < n else ""
        if name == "location":
            if following == "." and i + 2 < n and texts[i + 2] in URL_PARTS:
                return Val(self.page.self_parts.get(texts[i + 2], PH)), i + 3
            if following == "." and i + 2 < n and texts[i + 2] == "hash":
                return Val(FRAGMENT), i + 3
            if following == "." and i + 2 < n and texts[i + 2] in ("reload", "assign", "replace"):
                return UNKNOWN, i + 3
            return Val(self.page.doc_url, location=True), i + 1
        if name in KEYWORDS or name in WINDOWS:
            return UNKNOWN, i + 1
        known = self.lookup(name, i)
        return (known if known is not None else UNKNOWN), i + 1

    def _new_url(self, args: list[Val]) -> Val:
        """new URL(url, base): url resolved against base (or the page's base when relative)."""
        if not args or any(PH in a.text for a in args[:2]):
            return unknown(*args)
        base: str | None = self.page.base
        if len(args) > 1:
            base = resolve(args[1].text.split(FRAGMENT, 1)[0], self.page.base)
        url = resolve(args[0].text.split(FRAGMENT, 1)[0], base) if base is not None else None
        return Val(url, any(a.obfuscated for a in args), url=True) if url is not None else unknown(*args)

    def _decoder(self, name: str, opener: int, depth: int) -> tuple[Val, int]:
        """atob(..), unescape(..), String.fromCharCode(..) and the like, applied to known arguments."""
        closer = self.tokens.close_of.get(opener)
        if closer is None:
            return Val(PH, name in ("atob", "fromCharCode")), self.n
        args = [self.value_of(a, b, depth + 1) for a, b in self.tokens.args(opener)]
        return decode_call(name, args), closer + 1

    def _postfix(self, value: Val, i: int, depth: int) -> tuple[Val, int]:
        """Method calls, property reads and indexing applied to value."""
        texts, kinds, n = self.texts, self.kinds, self.n
        close_of = self.tokens.close_of
        while i < n:
            text = texts[i]
            if (text == "." or text == "?.") and i + 1 < n and kinds[i + 1] == NAME:
                member = texts[i + 1]
                if i + 2 < n and texts[i + 2] == "(":
                    closer = close_of.get(i + 2)
                    if closer is None:
                        return unknown(value), n
                    args = [self.value_of(a, b, depth + 1) for a, b in self.tokens.args(i + 2)]
                    value = string_method(value, member, args)
                    i = closer + 1
                else:
                    if member == "length" and PH not in value.text and FRAGMENT not in value.text:
                        value = Val(str(len(value.items if value.items is not None else value.text)),
                                    value.obfuscated)
                    elif value.url and member in URL_PARTS:
                        value = Val(url_part(value.text, member), value.obfuscated)
                    else:
                        value = unknown(value)
                    i += 2
            elif text == "[" and kinds[i] == PUNCT:
                closer = close_of.get(i)
                if closer is None:
                    return unknown(value), n
                index = self.value_of(i + 1, closer, depth + 1)
                sequence = value.items if value.items is not None else value.text
                if NUMBER.fullmatch(index.text) and (
                        value.items is not None or (PH not in value.text and FRAGMENT not in value.text)):
                    try:
                        value = Val(sequence[int(float(index.text))], value.obfuscated or index.obfuscated)
                    except (ValueError, IndexError):
                        value = unknown(value, index)
                else:
                    value = unknown(value, index)
                i = closer + 1
            else:
                break
        return value, i


# A name assigned with "=" (not "==", "=>"), not a member: the plain-text index of globals.
_ASSIGNED_NAME = re.compile(r"(?<![\w$.\\])([A-Za-z_$][\w$]*+)\s*=(?![=>])")


class PageGlobals:
    """Which of a page's scripts assign which global names: each script's text indexed once.

    A global used in one script and set in an earlier one (`var u = ...` in the head, used
    in the body) is looked up here, not by searching every earlier script for every name.
    Which of the scripts that seem to assign a name (by their text) do so at their top level
    is checked once per script and name, however many uses ask.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.indexed = 0  # the page's sources indexed so far
        self.assigning: dict[str, list[int]] = {}  # name -> the sources (by index) that assign it
        # name -> how many of its `assigning` were checked, and those that set it at their top level
        self.setting: dict[str, tuple[int, list[int]]] = {}

    def _index(self) -> None:
        """Index the sources added since the last look."""
        page = self.page
        for index in range(self.indexed, len(page.sources)):
            code, ctx = page.sources[index]
            page.steps.charge(len(code) >> 3)
            if ctx is page.root:
                for name in dict.fromkeys(_ASSIGNED_NAME.findall(code)):
                    self.assigning.setdefault(name, []).append(index)
        self.indexed = len(page.sources)

    def sites(self, name: str, before: Script) -> list[tuple[Script, int]]:
        """The top-level assignments that may set a global, in the nearest earlier script that sets it."""
        self._index()
        page = self.page
        candidates = self.assigning.get(name, _NONE)
        checked, setting = self.setting.get(name, (0, []))
        for index in candidates[checked:]:
            page.steps.charge()
            script = page.script(index)
            if script.values.reaching_assignments(name, 0, script.n, page.root, script.n):
                setting.append(index)
        self.setting[name] = (len(candidates), setting)
        at = bisect_left(setting, before.index) - 1
        if at < 0:
            return []
        script = page.script(setting[at])
        return [(script, site) for site in script.values.reaching_assignments(name, 0, script.n, page.root,
                                                                               script.n)]
