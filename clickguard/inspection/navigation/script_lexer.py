"""JavaScript as tokens: a tolerant lexer, and the values of the literals it finds.

`lex` reads a script once into parallel lists (kind, text, start) and pairs its brackets,
template parts included; it never fails, whatever the input (cut off, unbalanced, stray
characters). Regular expressions and template literals are told from division and from
plain text by the token before them, as a JavaScript parser would. Names written with
``\\u`` escapes are decoded and remembered, since hiding a name is itself a sign of
obfuscation.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field

from clickguard.inspection.navigation.script_values import PH

NAME, STR, NUM, PUNCT, TPL, TPL_HEAD, TPL_MID, TPL_TAIL, REGEX, OTHER = range(10)
_ESCAPED_CHAR = r"\\u(?:[0-9a-fA-F]{4}|\{[0-9a-fA-F]+\})"
# Whitespace and comments, then one token; the groups are numbered in order of frequency:
# 1 name, 2 punctuator, 3 string, 4 number, 5 name with escapes, 6 template start, 7 end, 8 other.
JS_TOKEN = re.compile(
    rf"""(?:\s++|//[^\n\r\u2028\u2029]*+|/\*[\s\S]*?(?:\*/|\Z)|<!--[^\n\r]*+)*+
    (?:
        ([A-Za-z_$\u00aa-\uffff][\w$\u00aa-\uffff]*+(?!\\))
      | (=>|\.\.\.|\?\.(?!\d)|[=!]==?|\*\*=?|&&=?|\|\|=?|\?\?=?|\+\+|--|<<=?|>>>?=?|[-+*/%&|^<>]=
         |[{{}}()\[\];,<>+\-*/%&|^!~?:=@\#]|\.(?!\d))
      | ("(?:[^"\\\n\r]++|\\(?:\r\n|[\s\S]))*+"?|'(?:[^'\\\n\r]++|\\(?:\r\n|[\s\S]))*+'?)
      | (0[xXoObB][0-9a-fA-F_]*+n?|(?:\d[\d_]*+(?:\.[\d_]*+)?|\.\d[\d_]*+)(?:[eE][+-]?\d++)?n?)
      | ((?:[\w$\u00aa-\uffff]|{_ESCAPED_CHAR})++)
      | (`)
      | (\Z)
      | ([\s\S])
    )""",
    re.VERBOSE,
)
_JS_REGEX = re.compile(
    r"/(?![*/])(?:[^/\\\[\n\r]++|\\[^\n\r]|\[(?:[^\]\\\n\r]++|\\[^\n\r])*+\])++/[A-Za-z]*+"
)
_TPL_REST = re.compile(r"(?:[^`\\$]++|\\[\s\S]?|\$(?!\{))*+(`|\$\{|\Z)")  # matches anywhere
_REGEX_AFTER = frozenset({
    "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else",
    "yield", "await",
})
_OPENER = {")": "(", "]": "[", "}": "{"}
_TEMPLATE_OPEN = (TPL_HEAD, TPL_MID)


@dataclass(slots=True)
class Tokens:
    """A script as tokens: parallel lists, plus where each bracket pair opens and closes."""

    code: str
    kinds: list[int]
    texts: list[str]  # strings, templates and regexes keep their delimiters
    starts: list[int]
    close_of: dict[int, int]  # opener index -> closer index (a template part counts as both)
    open_of: dict[int, int]
    escaped: set[int]  # names written with \u escapes
    n: int = field(init=False)
    sites: dict[str, list[int]] = field(init=False, default_factory=dict)  # name -> its tokens, on demand

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
        """The indexes of the tokens that are this name, in order."""
        known = self.sites.get(name)
        if known is not None:
            return known
        starts, texts, kinds = self.starts, self.texts, self.kinds
        sites = []
        for match in re.finditer(rf"(?<![\w$\\]){re.escape(name)}(?![\w$\\])", self.code):
            k = bisect_left(starts, match.start())
            if k < self.n and starts[k] == match.start() and kinds[k] == NAME and texts[k] == name:
                sites.append(k)
        self.sites[name] = sites
        return sites


def lex(code: str) -> Tokens:
    """Tokens of a script, tolerant of anything (cut-off input, stray characters, unbalanced brackets)."""
    kinds: list[int] = []
    texts: list[str] = []
    starts: list[int] = []
    close_of: dict[int, int] = {}
    open_of: dict[int, int] = {}
    escaped: set[int] = set()
    openers: list[int] = []
    add_kind, add_text, add_start = kinds.append, texts.append, starts.append
    pos = 0
    while True:
        # A regular expression or template literal needs the tokens before it to be
        # read; the scan stops there and starts again after it.
        restart = -1
        for m in JS_TOKEN.finditer(code, pos):
            group = m.lastindex
            if group == 1:
                add_kind(NAME)
                add_text(m.group(1))
                add_start(m.start(1))
            elif group == 2:
                text = m.group(2)
                start = m.start(2)
                if text == "(" or text == "[" or text == "{":
                    openers.append(len(kinds))
                elif text == ")" or text == "]" or text == "}":
                    if text == "}" and openers and kinds[openers[-1]] in _TEMPLATE_OPEN:
                        restart = _template_part(code, m.end(), start, openers.pop(), kinds, texts, starts,
                                                 close_of, open_of, openers)
                        break
                    want = _OPENER[text]
                    for depth in range(len(openers) - 1, max(-1, len(openers) - 17), -1):
                        if texts[openers[depth]] == want:
                            close_of[openers[depth]] = len(kinds)
                            open_of[len(kinds)] = openers[depth]
                            del openers[depth:]
                            break
                elif text[0] == "/" and _regex_allowed(kinds, texts):
                    regex = _JS_REGEX.match(code, start)
                    if regex is not None:
                        add_kind(REGEX)
                        add_text(regex.group())
                        add_start(start)
                        restart = regex.end()
                        break
                add_kind(PUNCT)
                add_text(text)
                add_start(start)
            elif group == 3:
                add_kind(STR)
                add_text(m.group(3))
                add_start(m.start(3))
            elif group == 4:
                add_kind(NUM)
                add_text(m.group(4))
                add_start(m.start(4))
            elif group == 5:
                escaped.add(len(kinds))
                add_kind(NAME)
                add_text(unescape_js(m.group(5))[0])
                add_start(m.start(5))
            elif group == 6:
                restart = _template_part(code, m.end(), m.start(6), -1, kinds, texts, starts, close_of,
                                         open_of, openers)
                break
            elif group == 7:
                break
            else:
                add_kind(OTHER)
                add_text(m.group(8))
                add_start(m.start(8))
        if restart < 0:
            return Tokens(code, kinds, texts, starts, close_of, open_of, escaped)
        pos = restart


def _template_part(code: str, pos: int, start: int, opener: int, kinds: list[int], texts: list[str],
                   starts: list[int], close_of: dict[int, int], open_of: dict[int, int],
                   openers: list[int]) -> int:
    """Add the template literal part from start (a backtick, or the "}" after a substitution); its end."""
    rest = _TPL_REST.match(code, pos)
    assert rest is not None  # every part of the pattern is optional
    head = rest.group(1) == "${"
    index = len(kinds)
    if opener < 0:
        kinds.append(TPL_HEAD if head else TPL)
    else:
        kinds.append(TPL_MID if head else TPL_TAIL)
        close_of[opener] = index
        open_of[index] = opener
    if head:
        openers.append(index)
    texts.append(code[start:rest.end()])
    starts.append(start)
    return rest.end()


def _regex_allowed(kinds: list[int], texts: list[str]) -> bool:
    """Whether a "/" here starts a regular expression rather than dividing."""
    if not kinds:
        return True
    kind = kinds[-1]
    if kind == PUNCT:
        return texts[-1] not in (")", "]")
    if kind == NAME:
        return texts[-1] in _REGEX_AFTER
    return kind in (TPL_HEAD, TPL_MID, OTHER)


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
