"""JavaScript as tokens: a tolerant lexer, and the values of the literals it finds.

`lex` reads a script once, in time linear in its length, into parallel lists (kind, text,
start), pairs its brackets (template parts included) and indexes its names; it never fails,
whatever the input (cut off, unbalanced, stray characters). Whether a "/" starts a regular
expression or divides follows the grammar, as a browser's parser decides it: after the
")" of `if`/`while`/`for`/`with`, after a block's "}", after an operator or a keyword such
as `return` or `typeof`, a regular expression; after a name, a number, "]", the ")" of a
call or the "}" of an object literal or function expression, a division. `yield` and `await`
are operators only in the body of a generator or an async function (arrow functions and
methods included); elsewhere in a classic script they are names, and "/" after them
divides. No semicolon is inserted before a "/" on a new line: the expression goes on.
Classic scripts' HTML-like comments (``<!--`` anywhere, ``-->`` at the start of a line)
are comments. Names written with ``\\u`` escapes are decoded and remembered, since hiding
a name is itself a sign of obfuscation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from clickguard.inspection.navigation.results import ACTIVE_STEPS
from clickguard.inspection.navigation.script_values import PH

NAME, STR, NUM, PUNCT, TPL, TPL_HEAD, TPL_MID, TPL_TAIL, REGEX, OTHER = range(10)
_ESCAPED_CHAR = r"\\u(?:[0-9a-fA-F]{4}|\{[0-9a-fA-F]+\})"
# JavaScript's white space and line terminators (Python's \s differs: it has \x1c-\x1f and
# \x85, which JavaScript does not, and lacks \ufeff, which it has).
_LINE_TERMINATORS = "\n\r\u2028\u2029"
_WS = "\t\v\f \xa0\ufeff\u1680\u2000-\u200a\u202f\u205f\u3000" + _LINE_TERMINATORS
# Letters, digits and the rest of what may be part of a name, white space excluded.
_NAME_CHAR = ("\u00aa-\u167f\u1681-\u1fff\u200b-\u2027\u202a-\u202e\u2030-\u205e\u2060-\u2fff"
              "\u3001-\ufefe\uff00-\uffff\U00010000-\U0010ffff")
# Whitespace and comments, then one token; the groups are numbered in order of frequency:
# 1 name, 2 punctuator, 3 string, 4 number, 5 name with escapes, 6 template start, 7 end, 8 other.
JS_TOKEN = re.compile(
    rf"""(?:[{_WS}]++|//[^{_LINE_TERMINATORS}]*+|/\*[\s\S]*?(?:\*/|\Z)|<!--[^{_LINE_TERMINATORS}]*+)*+
    (?:
        ([A-Za-z_${_NAME_CHAR}][\w${_NAME_CHAR}]*+(?!\\))
      | (=>|\.\.\.|\?\.(?!\d)|[=!]==?|\*\*=?|&&=?|\|\|=?|\?\?=?|\+\+|--|<<=?|>>>?=?|[-+*/%&|^<>]=
         |[{{}}()\[\];,<>+\-*/%&|^!~?:=@\#]|\.(?!\d))
      | ("(?:[^"\\\n\r]++|\\(?:\r\n|[\s\S]))*+"?|'(?:[^'\\\n\r]++|\\(?:\r\n|[\s\S]))*+'?)
      | (0[xXoObB][0-9a-fA-F_]*+n?|(?:\d[\d_]*+(?:\.[\d_]*+)?|\.\d[\d_]*+)(?:[eE][+-]?[\d_]++)?n?)
      | ((?:[\w${_NAME_CHAR}]|{_ESCAPED_CHAR})++)
      | (`)
      | (\Z)
      | ([\s\S])
    )""",
    re.VERBOSE,
)
_JS_REGEX = re.compile(
    rf"/(?![*/])(?:[^/\\\[{_LINE_TERMINATORS}]++|\\[^{_LINE_TERMINATORS}]"
    rf"|\[(?:[^\]\\{_LINE_TERMINATORS}]++|\\[^{_LINE_TERMINATORS}])*+\])++/[\w$]*+"
)
_LINE_END = re.compile(rf"[{_LINE_TERMINATORS}]|\Z")
_HAS_LINE_TERMINATOR = re.compile(rf"[{_LINE_TERMINATORS}]")
_TPL_REST = re.compile(r"(?:[^`\\$]++|\\[\s\S]?|\$(?!\{))*+(`|\$\{|\Z)")  # matches anywhere
# Keywords after which an expression starts (so "/" begins a regular expression).
_REGEX_AFTER = frozenset({
    "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else",
    "yield", "await", "extends",
})
# Keywords after which a statement starts, and a "{" opens a block.
_STATEMENT_AFTER = frozenset({"else", "do", "try", "finally", "export", "default"})
_STATEMENT_PARENS = frozenset({"if", "while", "for", "with"})
_OPENER = {")": "(", "]": "[", "}": "{"}
_TEMPLATE_OPEN = (TPL_HEAD, TPL_MID)
# What a bracket opens: a statement block or the parenthesis of if/while/for/with (after whose
# closer a statement starts), the body of a function or class expression (after which an
# operator may follow), an expression (parenthesis, array, object literal, template part).
_BLOCK, _EXPRESSION_BODY, _EXPRESSION, _ARROW_BODY = range(4)
# Where `yield` and `await` are operators (so "/" after them begins a regular expression): in
# the body of a generator, of an async function. Elsewhere in a classic script they are names,
# in the body of an arrow function too (`yield` in any, `await` in one not itself async).
_YIELD, _AWAIT = 1, 2
# "(" after these opens a statement's head or a catch clause, never a function's parameters.
_NOT_PARAMETERS = _STATEMENT_PARENS | {"catch", "switch"}
_MAX_BRACKET_SEARCH = 16  # how far down the open brackets a closer looks for its opener


@dataclass(slots=True)
class Tokens:
    """A script as tokens: parallel lists, where each bracket pair opens and closes, where each name is."""

    code: str
    kinds: list[int]
    texts: list[str]  # strings, templates and regexes keep their delimiters
    starts: list[int]
    close_of: dict[int, int]  # opener index -> closer index (a template part counts as both)
    open_of: dict[int, int]
    escaped: set[int]  # names written with \u escapes
    sites: dict[str, list[int]]  # name -> the indexes of its tokens, in order
    n: int = field(init=False)

    def __post_init__(self) -> None:
        self.n = len(self.kinds)

    def args(self, opener: int) -> list[tuple[int, int]]:
        """The token ranges of the arguments of the call whose "(" is at opener."""
        close_of, texts = self.close_of, self.texts
        closer = close_of.get(opener, self.n)
        args: list[tuple[int, int]] = []
        start = j = opener + 1
        while j < closer:
            jump = close_of.get(j)
            if jump is not None:
                while jump in close_of:  # template parts chain to the tail
                    jump = close_of[jump]
                j = jump + 1
                continue
            if texts[j] == "," and self.kinds[j] == PUNCT:
                args.append((start, j))
                start = j + 1
            j += 1
        if start < closer or args:
            args.append((start, closer))
        return args

    def name_sites(self, name: str) -> list[int]:
        """The indexes of the tokens that are this name, in order (from the index built while lexing)."""
        return self.sites.get(name, _NO_SITES)


_NO_SITES: list[int] = []


def _line_end(code: str, pos: int) -> int:
    """Where the line that pos is on ends (its terminator, or the end of the code)."""
    match = _LINE_END.search(code, pos)
    return match.start() if match is not None else len(code)


POLL_EVERY = 64  # tokens between two looks at the reading's clock


def _no_poll() -> None:
    """A script lexed outside any reading: no clock to look at."""


def lex(code: str) -> Tokens:
    """Tokens of a script, tolerant of anything (cut-off input, stray characters, unbalanced brackets)."""
    return _Lexer(code).run()


class _Lexer:
    """One pass over a script, keeping what the grammar needs to tell a regular expression from a division.

    `expr` says whether an expression may start here (then "/" begins a regular expression),
    `stmt` whether a statement may (then "{" opens a block and `function` declares). Each open
    bracket remembers what it opened, so its closer knows what may follow it.
    """

    def __init__(self, code: str) -> None:
        self.code = code
        # The reading's budget is charged for the script before it is lexed; one with a time
        # bound also looks at its clock every POLL_EVERY tokens (inline.py).
        steps = ACTIVE_STEPS.get()
        self.poll = steps.poll if steps is not None else _no_poll
        self.countdown = POLL_EVERY
        self.kinds: list[int] = []
        self.texts: list[str] = []
        self.starts: list[int] = []
        self.close_of: dict[int, int] = {}
        self.open_of: dict[int, int] = {}
        self.escaped: set[int] = set()
        self.sites: dict[str, list[int]] = {}
        self.openers: list[int] = []  # token indexes of the open brackets
        self.opened: list[int] = []  # what each open bracket opened (_BLOCK, ...)
        self.operators: list[int] = []  # inside each open bracket: whether yield / await are operators
        # The bare bodies of arrow functions open (`x => x / 2`): bracket level, and whether
        # yield / await are operators in it (await in an async arrow's; yield in none).
        self.bare_arrows: list[tuple[int, int]] = []
        self.questions: list[int] = [0]  # "?" waiting for their ":", per bracket level
        self.pending: list[tuple[int, bool, bool]] = []  # function/class keywords: (level, declared, class)
        self.expr = True
        self.stmt = True
        self.async_stmt = False  # whether the last `async` stood where a statement starts
        # After an arrow function's block body, an operator cannot follow: "/" on the next line
        # starts a new statement (a regular expression); on the same line it is an error.
        self.arrow_body_closed = False
        self.no_regex_before = -1  # a regular expression that failed here: none before the line's end

    def run(self) -> Tokens:
        """Lex the whole script."""
        code = self.code
        pos = 0
        while pos >= 0:
            pos = self._scan(pos)
        return Tokens(code, self.kinds, self.texts, self.starts, self.close_of, self.open_of, self.escaped,
                      self.sites)

    def _add(self, kind: int, text: str, start: int) -> None:
        self.kinds.append(kind)
        self.texts.append(text)
        self.starts.append(start)

    def _scan(self, pos: int) -> int:
        """Tokens from pos until one that makes the scan start again (a regex, a template); -1 at the end."""
        code = self.code
        kinds, texts = self.kinds, self.texts
        add_kind, add_text, add_start = kinds.append, texts.append, self.starts.append
        sites = self.sites
        for m in JS_TOKEN.finditer(code, pos):
            self.countdown -= 1
            if not self.countdown:
                self.countdown = POLL_EVERY
                self.poll()
            group = m.lastindex
            arrow_body_closed, self.arrow_body_closed = self.arrow_body_closed, False
            if group == 1:
                text = m.group(1)
                sites.setdefault(text, []).append(len(kinds))
                self._name(text, m.start(), m.start(1))
                add_kind(NAME)
                add_text(text)
                add_start(m.start(1))
            elif group == 2:
                text = m.group(2)
                start = m.start(2)
                if text == "/" or text == "/=":
                    if (self.expr or (arrow_body_closed and _HAS_LINE_TERMINATOR.search(
                            code, m.start(), start) is not None)) and start >= self.no_regex_before:
                        regex = _JS_REGEX.match(code, start)
                        if regex is not None:
                            self._add(REGEX, regex.group(), start)
                            self.expr = self.stmt = False
                            return regex.end()
                        # Unterminated: a syntax error for the browser. Read it as a division, and try
                        # no other regular expression on this line, so each line is scanned once.
                        self.no_regex_before = _line_end(code, start)
                elif text == "--" and code.startswith(">", m.end(2)) and (
                        not kinds or _HAS_LINE_TERMINATOR.search(code, m.start(), start) is not None):
                    return _line_end(code, start)  # "-->" at a line's start: a comment to its end
                elif text == "}" and self.openers and kinds[self.openers[-1]] in _TEMPLATE_OPEN:
                    return self._template_part(m.end(2), start, self.openers.pop())
                self._punctuator(text, start, m.start())
                add_kind(PUNCT)
                add_text(text)
                add_start(start)
            elif group == 3:
                add_kind(STR)
                add_text(m.group(3))
                add_start(m.start(3))
                self.expr = self.stmt = False
            elif group == 4:
                add_kind(NUM)
                add_text(m.group(4))
                add_start(m.start(4))
                self.expr = self.stmt = False
            elif group == 5:
                text = unescape_js(m.group(5))[0]
                self.escaped.add(len(kinds))
                sites.setdefault(text, []).append(len(kinds))
                self._name(text, m.start(), m.start(5))
                add_kind(NAME)
                add_text(text)
                add_start(m.start(5))
            elif group == 6:
                return self._template_part(m.end(), m.start(6), -1)
            elif group == 7:
                return -1
            else:
                add_kind(OTHER)
                add_text(m.group(8))
                add_start(m.start(8))
                self.expr, self.stmt = True, False
        return -1

    def _member_name(self) -> bool:
        """Whether the name about to be added is a property name (after ".", "?." or "#"), not a keyword."""
        return bool(self.kinds) and self.kinds[-1] == PUNCT and self.texts[-1] in (".", "?.", "#")

    def _name(self, text: str, trivia: int, start: int) -> None:
        """The state after a name or keyword (whose source starts at start, after trivia from trivia)."""
        if self.bare_arrows and self.bare_arrows[-1][0] >= len(self.openers) and not self.expr \
                and _HAS_LINE_TERMINATOR.search(self.code, trivia, start) is not None:
            self.bare_arrows.pop()  # `x => x` then a line break and a name: a new statement
        if self._member_name():
            self.expr = self.stmt = False
        elif (text == "yield" or text == "await") and not self._operator(text):
            self.expr = self.stmt = False  # a name here: `await / 2` divides
        elif text in _REGEX_AFTER:
            # `of` is a keyword only in the head of a `for`: `for (x of /re/)`, but `of / 2`.
            self.expr = text != "of" or (not self.expr and self._in_for_head())
            self.stmt = text in _STATEMENT_AFTER
        elif text in _STATEMENT_AFTER:
            self.expr, self.stmt = False, True
        elif text == "function" or text == "class":
            # A declaration where a statement starts: after `;`, a block, or a line break that
            # ends an expression (`x\nfunction f(){}` cannot go on, so a semicolon is inserted).
            declared = self.stmt or not self.texts or (self.texts[-1] == "async" and self.async_stmt) or (
                not self.expr and _HAS_LINE_TERMINATOR.search(self.code, trivia, start) is not None)
            self.pending.append((len(self.openers), declared, text == "class"))
            self.expr = self.stmt = False
        else:
            if text == "async":  # `async function` declares where `function` would (after `x\n` too)
                self.async_stmt = self.stmt or not self.texts or (
                    not self.expr and _HAS_LINE_TERMINATOR.search(self.code, trivia, start) is not None)
            self.expr = self.stmt = False

    def _punctuator(self, text: str, start: int, trivia: int) -> None:
        """The state after a punctuator; brackets are paired."""
        if text == "(" or text == "[" or text == "{":
            if text == "(":
                opened = _BLOCK if self._statement_paren() else _EXPRESSION
                self.expr, self.stmt = True, False
            elif text == "[":
                opened = _EXPRESSION
                self.expr, self.stmt = True, False
            else:
                opened = self._brace(trivia, start)
                self.expr, self.stmt = True, opened != _EXPRESSION
            arrow_body = opened == _BLOCK and text == "{" and bool(self.texts) and self.texts[-1] == "=>"
            self.operators.append(self._body_operators(arrow_body) if text == "{" else self._operators_here())
            self.openers.append(len(self.kinds))
            self.opened.append(_ARROW_BODY if arrow_body else opened)
            self.questions.append(0)
        elif text == ")" or text == "]" or text == "}":
            opened = self._close(text)
            self.expr = self.stmt = opened == _BLOCK
            self.arrow_body_closed = opened == _ARROW_BODY
        elif text == ";" or text == ",":
            level = len(self.openers)
            while self.bare_arrows and self.bare_arrows[-1][0] >= level:
                self.bare_arrows.pop()  # the end of an arrow function's bare body
            self.expr = True
            self.stmt = text == ";"
        elif text == "=>":
            # A bare body until "{" makes it a block body, or until it ends.
            self.bare_arrows.append((len(self.openers), _AWAIT if self.kinds and self._async_arrow() else 0))
            self.expr, self.stmt = True, False
        elif text == "++" or text == "--":
            self.stmt = False  # `a++ / 2` divides, `x = ++/re/.lastIndex` does not: what was allowed stays
        elif text == "." or text == "?." or text == "#":
            self.expr = self.stmt = False
        elif text == "?":
            self.questions[-1] += 1
            self.expr, self.stmt = True, False
        elif text == ":":
            self.expr = True
            if self.questions[-1]:
                self.questions[-1] -= 1  # the other half of a conditional
                self.stmt = False
            else:  # a label or `case x:` in a block starts a statement; a key in an object does not
                self.stmt = not self.opened or (self.opened[-1] != _EXPRESSION
                                                and self.texts[self.openers[-1]] == "{")
        else:
            self.expr, self.stmt = True, False

    def _operators_here(self) -> int:
        """Whether yield / await are operators where the lexer is (_YIELD | _AWAIT bits)."""
        if self.bare_arrows and self.bare_arrows[-1][0] == len(self.openers):
            return self.bare_arrows[-1][1]
        return self.operators[-1] if self.operators else 0

    def _operator(self, text: str) -> bool:
        """Whether `yield` or `await` here is an operator (in a generator, an async function), not a name."""
        if self._member_name():
            return False
        if text == "await" and self.texts and self.texts[-1] == "for":
            return True  # `for await (`
        return bool(self._operators_here() & (_YIELD if text == "yield" else _AWAIT))

    def _async_arrow(self) -> bool:
        """Whether the "=>" about to be added ends the parameters of an async arrow function."""
        k = len(self.kinds) - 1
        if self.texts[k] == ")" and self.kinds[k] == PUNCT:
            k = self.open_of.get(k, k)
        elif self.kinds[k] != NAME:
            return False
        return k > 0 and self.texts[k - 1] == "async" and self.kinds[k - 1] == NAME

    def _body_operators(self, arrow_body: bool) -> int:
        """Whether yield / await are operators in the block a "{" here opens (a function has its own)."""
        here = self._operators_here()
        if arrow_body:
            if self.bare_arrows and self.bare_arrows[-1][0] == len(self.openers):
                return self.bare_arrows.pop()[1]  # `() => {`: a block body, not a bare one
            return 0
        k = len(self.kinds) - 1
        if k < 0 or self.texts[k] != ")" or self.kinds[k] != PUNCT:
            return here
        k = self.open_of.get(k, 0) - 1  # before the parameters: `function* name`, `async *[key]`, `m`
        if k >= 0 and self.texts[k] == "]":
            k = self.open_of.get(k, 0) - 1
        elif k >= 0 and self.kinds[k] == NAME and self.texts[k] != "function":
            if self.texts[k] in _NOT_PARAMETERS:
                return here
            k -= 1
        flags = 0
        if k >= 0 and self.texts[k] == "*":
            flags |= _YIELD
            k -= 1
        if k >= 0 and self.texts[k] == "function":
            k -= 1
        if k >= 0 and self.texts[k] == "async" and self.kinds[k] == NAME:
            flags |= _AWAIT
        return flags

    def _in_for_head(self) -> bool:
        """Whether the innermost open bracket is the "(" of a `for`."""
        if not self.openers or self.opened[-1] != _BLOCK or self.texts[self.openers[-1]] != "(":
            return False
        k = self.openers[-1] - 1
        return k >= 0 and self.texts[k] in ("for", "await")

    def _statement_paren(self) -> bool:
        """Whether a "(" here follows `if`, `while`, `for`, `with` (or `for await`)."""
        k = len(self.kinds) - 1
        if k < 0 or self.kinds[k] != NAME:
            return False
        text = self.texts[k]
        if text == "await" and k > 0 and self.texts[k - 1] == "for":
            k -= 1
            text = "for"
        return text in _STATEMENT_PARENS and not (k > 0 and self.kinds[k - 1] == PUNCT
                                                  and self.texts[k - 1] in (".", "?.", "#"))

    def _brace(self, trivia: int, start: int) -> int:
        """What a "{" here opens: a block, the body of a function or class expression, or an object."""
        level = len(self.openers)
        pending = self.pending
        while pending and pending[-1][0] > level:
            pending.pop()  # a function keyword whose body never came
        previous = self.texts[-1] if self.texts else ""
        if pending and pending[-1][0] == level and (pending[-1][2] or previous == ")"):
            _, declared, _ = pending.pop()
            return _BLOCK if declared else _EXPRESSION_BODY
        if not self.kinds or self.stmt or previous == "=>":
            return _BLOCK
        if previous == "return" and _HAS_LINE_TERMINATOR.search(self.code, trivia, start):
            return _BLOCK  # `return` ends at the line's end; the brace starts a block
        if self.kinds[-1] == PUNCT and previous == ")":
            return _BLOCK  # a method's body, `catch (e) {`
        return _EXPRESSION if self.expr else _BLOCK

    def _close(self, text: str) -> int:
        """Pair a closer with its opener; what the opener opened (_EXPRESSION when unpaired)."""
        openers, texts = self.openers, self.texts
        want = _OPENER[text]
        for depth in range(len(openers) - 1, max(-1, len(openers) - 1 - _MAX_BRACKET_SEARCH), -1):
            if texts[openers[depth]] == want and self.kinds[openers[depth]] == PUNCT:
                index = len(self.kinds)
                self.close_of[openers[depth]] = index
                self.open_of[index] = openers[depth]
                opened = self.opened[depth]
                del openers[depth:]
                del self.opened[depth:]
                del self.operators[depth:]
                while self.bare_arrows and self.bare_arrows[-1][0] > depth:
                    self.bare_arrows.pop()
                del self.questions[depth + 1:]
                return opened
        return _EXPRESSION

    def _template_part(self, pos: int, start: int, opener: int) -> int:
        """Add the template literal part from start (a backtick, or the "}" after a substitution); its end."""
        code = self.code
        rest = _TPL_REST.match(code, pos)
        assert rest is not None  # every part of the pattern is optional
        head = rest.group(1) == "${"
        index = len(self.kinds)
        if opener < 0:
            self.kinds.append(TPL_HEAD if head else TPL)
        else:
            del self.opened[len(self.openers):]
            del self.operators[len(self.openers):]
            del self.questions[len(self.openers) + 1:]
            while self.bare_arrows and self.bare_arrows[-1][0] > len(self.openers):
                self.bare_arrows.pop()
            self.kinds.append(TPL_MID if head else TPL_TAIL)
            self.close_of[opener] = index
            self.open_of[index] = opener
        if head:
            self.operators.append(self._operators_here())
            self.openers.append(index)
            self.opened.append(_EXPRESSION)
            self.questions.append(0)
            self.expr, self.stmt = True, False
        else:
            self.expr = self.stmt = False
        self.texts.append(code[start:rest.end()])
        self.starts.append(start)
        return rest.end() if rest.end() < len(code) or rest.group(1) else -1


_JS_ESCAPE = re.compile(
    r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|u\{([0-9a-fA-F]{1,6})\}|([0-7]{1,3})|(\r\n|[\s\S]))"
)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v",
                   "\n": "", "\r": "", "\r\n": "", "\u2028": "", "\u2029": ""}


def unescape_js(body: str) -> tuple[str, bool]:
    """A string literal's body decoded, and whether an escape hid a letter or digit."""
    if "\\" not in body:
        return body, False
    hiding = False

    def decode(match: re.Match[str]) -> str:
        nonlocal hiding
        hexa, unicode, braced, octal, other = match.groups()
        digits = hexa or unicode or braced
        if digits is not None:
            char = chr(min(int(digits, 16), 0x10FFFF))
        elif octal is not None:
            char = chr(int(octal, 8))
        else:
            return _SIMPLE_ESCAPES.get(other, other)
        if char.isascii() and char.isalnum():
            hiding = True
        return char

    return _JS_ESCAPE.sub(decode, body), hiding


def string_literal(raw: str) -> tuple[str, bool]:
    """The value of a quoted string token; one cut off by the end of the sample ends in an unknown part."""
    if len(raw) > 1 and raw[-1] == raw[0]:
        return unescape_js(raw[1:-1])
    text, hiding = unescape_js(raw[1:])
    return text + PH, hiding


def template_chunk(raw: str) -> tuple[str, bool]:
    """The cooked text of one template token part, without its delimiters."""
    body = raw[1:]
    if body.endswith("${"):
        return unescape_js(body[:-2])
    if body.endswith("`") and len(raw) > 1:
        return unescape_js(body[:-1])
    text, hiding = unescape_js(body)
    return text + PH, hiding  # cut off by the end of the sample


def js_number(text: str) -> str:
    """A numeric literal as JavaScript prints it."""
    text = text.replace("_", "").rstrip("n")
    try:
        prefix = text[:2].lower()
        if prefix in ("0x", "0o", "0b"):
            return str(int(text[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix]))
        number = float(text)
    except ValueError:
        return PH
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    return repr(number)
