"""Where a piece of script runs: the function around it, and whether that runs without a user.

A `Ctx` is one such function (or the top level); `Scopes` finds the `Ctx` of any token of
one script on demand. Top-level code, immediately invoked functions, load handlers, timers
and promise callbacks run by themselves; click handlers and functions that are only
defined do not, unless a named function is seen being called from code that does.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING

from clickguard.inspection.navigation.results import StepsSpent
from clickguard.inspection.navigation.script_lexer import (
    NAME,
    NUM,
    PUNCT,
    STR,
    TPL_HEAD,
    TPL_MID,
    TPL_TAIL,
    Tokens,
    js_number,
    string_literal,
)
from clickguard.inspection.navigation.script_values import NUMBER

if TYPE_CHECKING:
    from clickguard.inspection.navigation.page_reader import Page
    from clickguard.inspection.navigation.script_reader import Script

_LINE_BREAK = re.compile("[\n\r\u2028\u2029]")
_MAX_OPEN_SEARCH = 17  # the lexer pairs a closer with one of the 16 innermost open brackets (and parts)
# How many enclosing functions a name is looked up through. Past it the answer is the suspicious
# one (a call reaches the function; a value is unknown and hidden): the work per use of a name
# stays constant, however deep an attacker nests functions.
MAX_SCOPE_WALK = 64


# How a function's body runs: by itself (the top level), as its caller does (an
# immediately invoked function, a load handler, a timer), never by itself (a click
# handler, an unknown callback), or when its name is seen called from automatic code.
ALWAYS, INHERIT, NEVER, NAMED = range(4)


class Ctx:
    """The function a piece of script runs in: how it gets run, its parameters, where its body is."""

    __slots__ = (
        "_anchor",
        "_timer",
        "delay",
        "member",
        "mode",
        "name",
        "params",
        "parent",
        "script",
        "span",
        "timer",
    )

    def __init__(self, mode: int, parent: Ctx | None, name: str = "", *, timer: bool = False,
                 delay: float | None = None, script: Script | None = None,
                 span: tuple[int, int] | None = None, member: bool = False) -> None:
        self.mode = mode
        self.parent = parent
        self.name = name  # of a NAMED function
        self.member = member  # a NAMED function defined as an object member, called as `x.name()`
        self.timer = timer
        self.delay = delay
        self.script = script  # the script and token span of the body, when known
        self.span = span
        self.params: set[str] = set()
        self._anchor: Ctx | None = None  # remembered answers: each chain of contexts is walked once
        self._timer: tuple[Ctx | None] | None = None

    def anchor(self) -> Ctx:
        """The nearest enclosing context that decides by itself whether code runs."""
        walked = []
        ctx = self
        while ctx._anchor is None and ctx.mode == INHERIT and ctx.parent is not None:
            walked.append(ctx)
            ctx = ctx.parent
        anchor = ctx._anchor if ctx._anchor is not None else ctx
        for inner in walked:
            inner._anchor = anchor
        return anchor

    def timer_ctx(self) -> Ctx | None:
        """The timer callback this code runs in, if any."""
        walked = []
        ctx: Ctx | None = self
        found: Ctx | None = None
        while ctx is not None:
            if ctx._timer is not None:
                found = ctx._timer[0]
                break
            walked.append(ctx)
            if ctx.timer:
                found = ctx
                break
            if ctx.mode != INHERIT:
                break
            ctx = ctx.parent
        for inner in walked:
            inner._timer = (found,)
        return found


KEYWORDS = frozenset({
    "break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do", "else",
    "export", "extends", "finally", "for", "function", "if", "import", "in", "instanceof", "let", "new",
    "return", "super", "switch", "this", "throw", "try", "typeof", "var", "void", "while", "with", "yield",
    "await", "async", "of", "static", "get", "set", "true", "false", "null", "undefined",
})
EXPRESSION_KEYWORDS = frozenset({
    "return", "typeof", "void", "new", "yield", "await", "delete", "in", "of", "instanceof", "case", "throw",
})
# Callbacks that run when their caller runs, without a user.
_RUN_CALLBACKS = frozenset({
    "requestAnimationFrame", "setImmediate", "queueMicrotask", "requestIdleCallback", "then", "catch",
    "finally", "done", "always", "ready", "forEach", "map", "filter", "some", "every", "find", "findIndex",
    "reduce", "reduceRight", "each", "flatMap", "sort", "Promise",
})
_LISTENERS = frozenset({"addEventListener", "attachEvent", "on", "one", "bind"})
_LOAD_EVENTS = frozenset({"load", "domcontentloaded", "pageshow", "readystatechange"})
LOAD_HANDLERS = frozenset({"onload", "onpageshow", "onreadystatechange", "onerror"})


def timer_delay(tokens: Tokens, opener: int) -> float | None:
    """The delay in seconds of a timer call, when its second argument is a number."""
    args = tokens.args(opener)
    if len(args) < 2:
        return 0.0
    start, stop = args[1]
    if stop - start == 1 and tokens.kinds[start] == NUM:
        text = js_number(tokens.texts[start])
        if NUMBER.fullmatch(text):
            return max(float(text), 0.0) / 1000
    return None


class ScriptPart:
    """One part of reading a script, with the script's tokens at hand."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.tokens = script.tokens
        self.kinds = script.tokens.kinds
        self.texts = script.tokens.texts
        self.n = script.tokens.n
        self.root = script.root  # the context the script's top level runs in


class Scopes(ScriptPart):
    """Which function each token of one script runs in, and how that function gets run.

    The function a token runs in is found by walking back over balanced brackets to the
    ones around it, each classified once (a function body, an arrow body, a plain block)
    and remembered. A function is classified by what it is handed to: a timer or a load
    listener runs it as its caller runs, a click handler never by itself, a named function
    when automatic code is seen calling it (`call_site`).
    """

    def __init__(self, script: Script) -> None:
        super().__init__(script)
        self.inside: dict[int, Ctx] = {}  # opener (or -2 - arrow) -> context of the code within
        self.brackets: list[int] | None = None  # token -> the bracket around it (-1: none), built once
        self.bodies: list[int] | None = None  # token -> the bracket or bare arrow body around it
        self.declared: dict[str, set[Ctx]] = {}  # name -> the scopes that declare it, built per name once
        self.used: dict[str, list[int]] = {}  # name -> its tokens that may call it (not `function name`)
        self.bound: dict[str, dict[Ctx | None, list[int]]] = {}  # name -> declaring scope -> its uses
        self.delays: dict[int, float | None] = {}  # timer call "(" -> its delay

    def ctx_at(self, i: int) -> Ctx:
        """The context token i runs in."""
        pending: list[int] = []
        j = i
        while True:
            key = self.enclosing(j, True)
            if key == -1:
                ctx = self.root
                break
            known = self.inside.get(key)
            if known is not None:
                ctx = known
                break
            pending.append(key)
            before = j
            j = self._arrow_start(-2 - key) if key < -1 else key
            if not 0 <= j < before:  # an arrow with nothing before it (`=>x` at the start): the walk ends
                ctx = self.root
                break
        for key in reversed(pending):
            ctx = self._inside(key, ctx)
            self.inside[key] = ctx
        return ctx

    def enclosing(self, i: int, arrows: bool) -> int:
        """The innermost open bracket around token i; -2 - arrow for an arrow function's bare body; or -1."""
        if self.brackets is None:
            self._index_levels()
        assert self.brackets is not None and self.bodies is not None
        if not 0 <= i < self.n:
            return -1
        return self.bodies[i] if arrows else self.brackets[i]

    def _index_levels(self) -> None:
        """One pass over the tokens: for each, the bracket around it and the arrow body it is in, if any.

        An arrow function without braces (`x => location = x`) runs to the end of its
        expression: the next "," or ";" at its level, its bracket's closer, or a line break
        before a name (a new statement by automatic semicolon insertion).
        """
        kinds, texts, n = self.kinds, self.texts, self.n
        close_of, open_of = self.tokens.close_of, self.tokens.open_of
        brackets = [-1] * n
        bodies = [-1] * n
        stack: list[int] = []  # open brackets (and template parts) around the current token
        arrows: list[int] = [-1]  # per level: the arrow whose bare body the current token is in, or -1
        for i in range(n):
            kind = kinds[i]
            if i and kind == NAME and arrows[-1] != -1 and self._line_break_after(i - 1):
                arrows[-1] = -1
            bracket = stack[-1] if stack else -1
            brackets[i] = bracket
            bodies[i] = -2 - arrows[-1] if arrows[-1] != -1 else bracket
            if kind == PUNCT:
                text = texts[i]
                if text == "(" or text == "[" or text == "{":
                    stack.append(i)
                    arrows.append(-1)
                elif text == ")" or text == "]" or text == "}":
                    self._close_level(open_of.get(i), stack, arrows)
                elif text == "=>":
                    arrows[-1] = i if i + 1 < n and texts[i + 1] != "{" else arrows[-1]
                elif text == "," or text == ";":
                    arrows[-1] = -1
            elif kind == TPL_HEAD:
                stack.append(i)
                arrows.append(-1)
            elif kind in (TPL_MID, TPL_TAIL):
                self._close_level(open_of.get(i), stack, arrows)
                if kind == TPL_MID and i in close_of:
                    stack.append(i)
                    arrows.append(-1)
        self.brackets, self.bodies = brackets, bodies
        self.script.steps.charge(n)

    @staticmethod
    def _close_level(opener: int | None, stack: list[int], arrows: list[int]) -> None:
        """Leave the level a closer ends (and any left open inside it); an unpaired closer ends none."""
        if opener is None or opener not in stack[-_MAX_OPEN_SEARCH:]:
            return
        while stack:
            arrows.pop()
            if stack.pop() == opener:
                return

    def _line_break_after(self, j: int) -> bool:
        """Whether token j ends an expression and a line break follows it (so a new statement may start)."""
        kind, text = self.kinds[j], self.texts[j]
        if kind == PUNCT:
            if text not in (")", "]", "}", "++", "--"):
                return False
        elif kind == NAME and text in EXPRESSION_KEYWORDS:
            return False
        start = self.tokens.starts[j] + len(text)
        return _LINE_BREAK.search(self.tokens.code, start, self.tokens.starts[j + 1]) is not None

    def _inside(self, key: int, outer: Ctx) -> Ctx:
        """The context of the code within a bracket (or arrow body) that runs in outer."""
        if key < -1:
            arrow = -2 - key
            opener = self.enclosing(arrow, False)
            end = self.tokens.close_of.get(opener, self.n - 1) if opener >= 0 else self.n - 1
            ctx = self._function(self._arrow_start(arrow), outer, (arrow + 1, end))
            self._arrow_params(arrow, ctx)
            return ctx
        if self.texts[key] == "{" and self.kinds[key] == PUNCT:
            return self._block(key, outer)
        return outer

    def _block(self, i: int, ctx: Ctx) -> Ctx:
        """The context of the block a "{" opens: a new one for a function body, else the current."""
        texts, kinds = self.texts, self.kinds
        if i == 0:
            return ctx
        span = (i, self.tokens.close_of.get(i, self.n - 1))
        before = texts[i - 1]
        if before == "=>":
            new = self._function(self._arrow_start(i - 1), ctx, span)
            self._arrow_params(i - 1, new)
            return new
        if before != ")" or kinds[i - 1] != PUNCT:
            return ctx
        opener = self.tokens.open_of.get(i - 1)
        if opener is None or opener == 0:
            return ctx
        head = opener - 1
        head_text = texts[head]
        if kinds[head] != NAME:
            return ctx
        if head_text == "function":
            new = self._function(head, ctx, span)
        elif head and (texts[head - 1] == "function" or (texts[head - 1] == "*" and head > 1
                                                          and texts[head - 2] == "function")):
            keyword = head - 1 if texts[head - 1] == "function" else head - 2
            if self.in_expression(keyword):
                new = self._function(keyword, ctx, span)
            else:
                new = self._named(head_text, ctx, span, member=False)
        elif head_text in KEYWORDS or (head and texts[head - 1] in (".", "?.")):
            return ctx
        else:
            new = self._named(head_text, ctx, span, member=True)  # a method: `go(u) { ... }`
        self._declare_params(opener, i - 1, new)
        return new

    def in_expression(self, keyword: int) -> bool:
        """Whether the `function` at keyword starts an expression (not a declaration)."""
        before = keyword - 1
        if before >= 0 and self.texts[before] == "async":
            before -= 1
        if before < 0:
            return False
        kind, text = self.kinds[before], self.texts[before]
        if kind == PUNCT:
            return text not in (";", "{", "}", ")", "]")
        return (kind == NAME and text in EXPRESSION_KEYWORDS) or kind in (TPL_HEAD, TPL_MID)

    def _named(self, name: str, ctx: Ctx, span: tuple[int, int], member: bool) -> Ctx:
        """A function that runs when something calls it by name (as `name()`, or `x.name()` for a member)."""
        return Ctx(NAMED, ctx, name, script=self.script, span=span, member=member)

    def _arrow_start(self, arrow: int) -> int:
        """The first token of the arrow function whose "=>" is at arrow."""
        start = arrow - 1
        if start >= 0 and self.texts[start] == ")":
            start = self.tokens.open_of.get(start, start)
        if start > 0 and self.texts[start - 1] == "async":
            start -= 1
        return start

    def _arrow_params(self, arrow: int, ctx: Ctx) -> None:
        """An arrow function's parameters shadow outer variables of the same name."""
        before = arrow - 1
        if before < 0:
            return
        if self.texts[before] == ")":
            opener = self.tokens.open_of.get(before)
            if opener is not None:
                self._declare_params(opener, before, ctx)
        elif self.kinds[before] == NAME:
            ctx.params.add(self.texts[before])

    def _declare_params(self, opener: int, closer: int, ctx: Ctx) -> None:
        """Parameters shadow outer variables of the same name."""
        texts, kinds = self.texts, self.kinds
        for k in range(opener + 1, closer):
            if kinds[k] == NAME and texts[k - 1] in ("(", ",", "...") and texts[k] not in KEYWORDS:
                ctx.params.add(texts[k])

    def _function(self, start: int, ctx: Ctx, span: tuple[int, int]) -> Ctx:
        """The context of a function expression starting at start, judged by what it is handed to."""
        texts, kinds = self.texts, self.kinds
        if start > 0 and texts[start - 1] == "async" and texts[start] != "async":
            start -= 1
        before = start - 1
        if before < 0:
            return Ctx(NEVER, ctx, script=self.script, span=span)
        prev = texts[before]
        if prev in ("!", "~", "+", "-", "void", "new"):  # !function(){...}(): invoked where it stands
            return Ctx(INHERIT, ctx, script=self.script, span=span)
        if prev in ("(", ","):
            opener = self.enclosing(start, False)
            if opener < 0 or texts[opener] != "(":
                return Ctx(NEVER, ctx, script=self.script, span=span)
            callee = opener - 1
            if callee < 0 or kinds[callee] != NAME or texts[callee] in KEYWORDS:
                # a grouping paren: (function(){...})() runs where it stands
                return Ctx(INHERIT if prev == "(" else NEVER, ctx, script=self.script, span=span)
            callback = self._callback(callee, opener, start == opener + 1, ctx)
            callback.script, callback.span = self.script, span
            return callback
        if prev == "=" and before > 0 and kinds[before - 1] == NAME:
            target = texts[before - 1]
            if target in LOAD_HANDLERS:
                return Ctx(INHERIT, ctx, script=self.script, span=span)
            member = before > 1 and texts[before - 2] in (".", "?.")
            if target.startswith("on") and member:
                return Ctx(NEVER, ctx, script=self.script, span=span)
            return self._named(target, ctx, span, member)
        if prev == ":" and before > 0 and kinds[before - 1] in (NAME, STR):
            key = texts[before - 1]
            return self._named(string_literal(key)[0] if kinds[before - 1] == STR else key, ctx, span, True)
        return Ctx(NEVER, ctx, script=self.script, span=span)

    def _callback(self, callee: int, opener: int, first: bool, ctx: Ctx) -> Ctx:
        """The context of a function passed to the call whose name is at callee."""
        texts = self.texts
        name = texts[callee]
        member = callee > 0 and texts[callee - 1] in (".", "?.")
        if name in ("setTimeout", "setInterval"):
            return Ctx(INHERIT, ctx, timer=True, delay=self.timer_delay(opener))
        if name in _RUN_CALLBACKS or (name in ("$", "jQuery") and first and not member) \
                or (name == "load" and member):
            return Ctx(INHERIT, ctx)
        if name in _LISTENERS and opener + 1 < self.n and self.kinds[opener + 1] == STR:
            event = string_literal(texts[opener + 1])[0].lower()
            event = event[2:] if name == "attachEvent" and event.startswith("on") else event
            return Ctx(INHERIT if event in _LOAD_EVENTS else NEVER, ctx)
        return Ctx(NEVER, ctx)

    def call_site(self, k: int, function: Ctx) -> Ctx | None:
        """The context in which the function named at token k gets called there, or None if it is not."""
        texts, n = self.texts, self.n
        prev = texts[k - 1] if k else ""
        following = texts[k + 1] if k + 1 < n else ""
        member = prev in (".", "?.")
        if following == "(" and prev != "function":
            if member != function.member:
                return None
            ctx = self.ctx_at(k)
            return ctx if member or self._sees(ctx, function) else None
        if member or function.member:
            return None
        if prev in ("(", ",") and following in (",", ")"):  # passed as a callback: setTimeout(go, 9)
            opener = k - 1 if prev == "(" else self.enclosing(k, False)
            callee = opener - 1
            if opener < 0 or texts[opener] != "(" or callee < 0 or self.kinds[callee] != NAME \
                    or texts[callee] in KEYWORDS:
                return None
            ctx = self.ctx_at(k)
            if not self._sees(ctx, function):
                return None
            callback = self._callback(callee, opener, k == opener + 1, ctx)
            return callback if callback.mode != NEVER else None
        if prev == "=" and k > 1 and texts[k - 2] in LOAD_HANDLERS:  # window.onload = go
            ctx = self.ctx_at(k)
            return Ctx(INHERIT, ctx) if self._sees(ctx, function) else None
        return None

    def _sees(self, ctx: Ctx, function: Ctx) -> bool:
        """Whether code in ctx reaches the function by its name: nothing of that name declared in between.

        Past `MAX_SCOPE_WALK` enclosing functions, yes: the call counts (the suspicious answer).
        """
        scope: Ctx | None = ctx
        for _ in range(MAX_SCOPE_WALK):
            if scope is None:
                return False
            self.script.steps.charge()
            if scope is function.parent:
                return True
            if function.name in scope.params or self._declares(scope, function.name):
                return False
            scope = scope.parent
        return True

    def _declares(self, scope: Ctx, name: str) -> bool:
        """Whether a function body declares name itself (`function name`, `var name`, `let`, `const`)."""
        script = scope.script
        if script is None or scope.span is None:
            return False
        return scope in script.scopes.declarations(name)

    def declarations(self, name: str) -> set[Ctx]:
        """The scopes of this script that declare name, from one look at the name's tokens."""
        known = self.declared.get(name)
        if known is not None:
            return known
        known = self.declared[name] = set()
        texts = self.texts
        sites = self.tokens.name_sites(name)
        self.script.steps.charge(len(sites))
        for k in sites:
            if k and texts[k - 1] in ("function", "var", "let", "const"):
                if texts[k - 1] == "function" and self.in_expression(k - 1):
                    continue  # a named function expression's name is only seen inside it
                known.add(self.ctx_at(k))
        return known

    def uses(self, name: str) -> list[int]:
        """The tokens of this name that may refer to a function (its declarations left out), found once."""
        known = self.used.get(name)
        if known is None:
            texts = self.texts
            sites = self.tokens.name_sites(name)
            self.script.steps.charge(len(sites))
            known = self.used[name] = [k for k in sites if not (k and texts[k - 1] == "function") and not (
                k > 1 and texts[k - 1] == "*" and texts[k - 2] == "function")]
        return known

    def uses_bound_to(self, name: str, scope: Ctx) -> list[int] | None:
        """The uses of name that reach the declaration in scope; None when some may, walked no further.

        Each use is resolved once (out through its enclosing functions to the first that declares
        the name), so the uses of each of a thousand nested `function f` are found in one pass.
        """
        bound = self.bound.get(name)
        if bound is None:
            bound = self.bound[name] = {}
            for k in self.uses(name):
                bound.setdefault(self._declaring(self.ctx_at(k), name), []).append(k)
        if _UNRESOLVED in bound:
            return None
        return bound.get(scope, [])

    def _declaring(self, ctx: Ctx, name: str) -> Ctx | None:
        """The nearest scope around ctx that declares name (None: none does), or _UNRESOLVED past the walk."""
        scope: Ctx | None = ctx
        for _ in range(MAX_SCOPE_WALK):
            if scope is None:
                return None
            self.script.steps.charge()
            if name in scope.params or self._declares(scope, name):
                return scope
            scope = scope.parent
        return _UNRESOLVED

    def timer_delay(self, opener: int) -> float | None:
        """The delay of the timer call whose "(" is at opener, read once."""
        if opener not in self.delays:
            self.delays[opener] = timer_delay(self.tokens, opener)
        return self.delays[opener]


class Callers:
    """Which named functions of a page code that runs by itself calls, directly or through others.

    The page's names are indexed once (every script tokenized once); a question is answered
    by a walk back over the call graph from the function, each function's callers looked up
    once: the cost follows the number of references walked, whatever the length of a chain
    of calls. Functions that the same calls reach (the same name, seen from the same scope,
    or a method of that name) are one node of the walk, so a thousand of them cost what one
    does. A walk that finds no automatic caller settles every node it visited (none of them
    is reached), one that finds one settles the nodes on the path. A walk the step budget
    stops answers None: unknown.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.scripts_with: dict[str, list[int]] | None = None  # name -> the page's scripts that hold it
        self.settled: dict[_Callee, bool] = {}  # node -> whether automatic code calls it

    def _index(self) -> dict[str, list[int]]:
        """The page's names, indexed on the first question (a page without one never tokenizes all)."""
        if self.scripts_with is None:
            scripts_with: dict[str, list[int]] = {}
            for index in range(len(self.page.sources)):
                for name in self.page.script(index).tokens.sites:
                    scripts_with.setdefault(name, []).append(index)
            self.scripts_with = scripts_with
        return self.scripts_with

    def automatic(self, function: Ctx) -> bool | None:
        """Whether automatic code calls the named function; None when the budget stopped the search."""
        called = self.page.called
        known = called.get(function)
        if known is None:
            known = self.settled.get(_callee(function))
            if known is None:
                known = self._walk(function)
            if known is not None:
                called[function] = known
        return known

    def _walk(self, function: Ctx) -> bool | None:
        """Walk the callers back from the function until automatic code or none is left."""
        settled = self.settled
        start = _callee(function)
        came_from: dict[_Callee, _Callee | None] = {start: None}  # caller -> the node it calls
        queue = [(start, function)]
        try:
            self._index()
            while queue:
                node, callee = queue.pop()
                for script, site in self._references(callee):
                    script.steps.charge()
                    ctx = script.scopes.call_site(site, callee)
                    if ctx is None:
                        continue
                    anchor = ctx.anchor()
                    known = None
                    if anchor.mode == NAMED:
                        caller = _callee(anchor)
                        known = settled.get(caller)
                        if known is None and caller not in came_from:
                            came_from[caller] = node
                            queue.append((caller, anchor))
                    if anchor.mode == ALWAYS or known is True:
                        reached: _Callee | None = node
                        while reached is not None:
                            settled[reached] = True
                            reached = came_from[reached]
                        return True
        except StepsSpent:
            return None
        for visited in came_from:  # each one's callers were all visited: none is reached
            settled[visited] = False
        return False

    def _references(self, function: Ctx) -> Iterator[tuple[Script, int]]:
        """Every token that names the function where it can be seen: its scope, or the whole page."""
        scope = function.parent
        name = function.name
        if not function.member and scope is not None and scope.script is not None and scope.span is not None:
            script = scope.script
            if script.scopes._declares(scope, name):  # a declared function: the uses that reach it
                bound = script.scopes.uses_bound_to(name, scope)
                if bound is not None:
                    yield from ((script, k) for k in bound)
                    return
            sites = script.scopes.uses(name)
            low, high = scope.span
            for k in sites[bisect_left(sites, low):bisect_right(sites, high)]:
                yield script, k
            return
        for index in self._index().get(name, ()):
            script = self.page.script(index)
            for k in script.scopes.uses(name):
                yield script, k


_UNRESOLVED = Ctx(NEVER, None)  # a use whose declaration lies deeper than MAX_SCOPE_WALK functions out

# What decides who calls a named function: its scope, its name, whether it is a method. Functions
# alike in these are reached by the same calls (`Scopes.call_site` asks nothing else of them).
_Callee = tuple[Ctx | None, str, bool]


def _callee(function: Ctx) -> _Callee:
    """The node of the call graph a named function is."""
    return (None if function.member else function.parent, function.name, function.member)
