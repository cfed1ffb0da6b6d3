"""Differential tests of the script reader against tree-sitter-javascript (a real JavaScript grammar).

A generated corpus (the grammar's corner cases, random programs from a small grammar, and
mutations of both) is parsed by tree-sitter; programs it parses without error are compared
with the reader: every regular expression, division, string, template literal and comment
the grammar's tree shows, the lexer shows the same; every navigation sink in the tree
(assignments to ``location`` and ``location.href``, ``location.assign/replace``,
``window.open``, string timers) `find_navigations` reports, or marks the page unread. `make
test` runs a bounded corpus; ``bench/differential_js.py`` runs the full one.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

import tree_sitter_javascript
from tree_sitter import Language, Node, Parser

from clickguard.inspection.navigation import Technique, find_navigations
from clickguard.inspection.navigation.script_lexer import NAME, PUNCT, REGEX, STR, TPL, TPL_HEAD, lex

_PARSER = Parser(Language(tree_sitter_javascript.language()))
_VALID_FLAGS = re.compile(rb"(?!.*(.).*\1)[dgimsuyv]*")  # other flags are an error: the script never runs
_LINE_TERMINATORS = [b"\n", b"\r", "\u2028".encode(), "\u2029".encode()]
_WINDOWS = {"window", "self", "top", "parent", "globalThis"}

# The grammar's corner cases, each a whole program.
CORNER_CASES = [
    "if (a) /re[/]x/g.test(s)",
    "while (a) /x/.exec(s); for (;;) /y/i.test(s)",
    "with (o) /z/.test(s)",
    "if (a) {} /re/.test(s)",
    "{}\n/re/.test(s)",
    "x = {} / 2",
    "x = {a: 1} / 2 / 3",
    "x = function () {} / 2",
    "function f() {}\n/re/.test(s)",
    "x = class {} / 2",
    "class C {}\n/re/.test(s)",
    "f(x) / 2",
    "a[0] / 2 / b",
    "a++ / 2",
    "a-- / 2 / c",
    "x = ++/re/.lastIndex",
    "x = 1 / 2 / 3",
    "x = .5 / 2",
    "x = 1_000 / 2",
    "return_ = a / b / c",
    "function g() { return /re/.test(s) }",
    "x = typeof /re/",
    "switch (a) { case /re/.test(s): break }",
    "delete /re/.x",
    "x = void /re/",
    "x = 'a' in /re/",
    "x = a instanceof /re/.constructor",
    "x = new /re/.constructor()",
    "function h() { throw /re/ }",
    "if (a) {} else /re/.test(s)",
    "do /re/.test(s); while (a)",
    "function* g() { yield /re/ }",
    "async function h() { await /re/ }",
    "x = `a${ {b: '}'}.b }c${ `d${ e }f` }g` / 2",
    "x = `${ '`' }` / 2",
    "x = `${ {} }`",
    "x = 1\n--> comment too\ny = 2",
    "--> at the start of the script",
    "x = 1\u2028y = /re/",
    "x = 1\u2029y = 2 / 3",
    "\\u006cocation.href = 'http://a.example/'",
    "x = a?.b / 2",
    "x = a ? .5 : 1",
    "class K { #p = 1; m() { return this.#p / 2 } }",
    "x = /[/]/g.test(s) / 2",
    "x = /a\\/b/.source",
    "x = /=/.test(s)",
    "x /= 2",
    "label: /re/.test(s)",
    "x = y ? /a/ : /b/",
    "x = [/a/, /b/]",
    "x = {a: /re/}",
    "x = (a) / 2",
    "if (a) (b) / 2",
    "for (const v of /a/g[Symbol.matchAll]) ;",
    "x = a.if / 2",
    "x = a.return / 2 / b",
    "x = 0x1F / 2",
    "x = 1e3 / 2",
    "x = this / 2",
    "x = '}' / 2",
    "x = \"\\\"\" / 2",
    "location = 'http://a.example/'",
    "window.location.href = 'http://a.example/' + x",
    "location.assign('http://a.example/')",
    "location.replace(u)",
    "window.open('http://a.example/')",
    "document.location = 'http://a.example/'",
    "setTimeout(\"location = 'http://a.example/'\", 10)",
    "if (a) /re/.test(s) ? location.href = 'http://a.example/' : 0",
    "x = `${ location.href = 'http://t.example/' }`",
]

_IDENTIFIERS = ["a", "b", "x", "s", "u", "obj", "of", "async", "get", "$", "_x"]
_BINARY = ["+", "-", "*", "/", "%", "<", ">", "==", "===", "&&", "||", "??", "**", "in", "instanceof",
           "&", "|", "^", "<<", ">>>"]
_REGEXES = ["/re/", "/a[/]b/g", "/\\//", "/=x/", "/[\\]/]+/i", "/(?:x)/u"]
_STRINGS = ["'s'", "\"d\\\"q\"", "'}'", "'{'", "'/'", "'`'", "'//'", "\"/*\""]
_NUMBERS = ["1", ".5", "1_000", "0x1F", "1e3", "2.", "0"]
_SINK_TARGETS = ["'http://sink.example/'", "u", "'http://' + x", "`http://t.example/${ x }`"]


@dataclass
class _Generator:
    """Random programs from a small grammar that covers the lexer's decisions."""

    rnd: random.Random
    depth: int = 0
    names: list[str] = field(default_factory=lambda: list(_IDENTIFIERS))

    def atom(self) -> str:
        rnd = self.rnd
        choice = rnd.randrange(14)
        if choice < 3:
            return rnd.choice(self.names)
        if choice == 3:
            return rnd.choice(_NUMBERS)
        if choice == 4:
            return rnd.choice(_STRINGS)
        if choice == 5:
            return rnd.choice(_REGEXES)
        if choice == 6:
            return self.template()
        if choice == 7:
            keys = [f"{rnd.choice('abc')}: {self.expr()}" for _ in range(rnd.randint(0, 2))]
            return "{" + ", ".join(keys) + "}"
        if choice == 8:
            return "[" + ", ".join(self.expr() for _ in range(rnd.randint(0, 2))) + "]"
        if choice == 9:
            return rnd.choice(["function () { " + self.block_body() + " }", "class { m() { } }",
                               "(x) => x", "() => { " + self.block_body() + " }"])
        if choice == 10:
            return "(" + self.expr() + ")"
        if choice == 11:
            return rnd.choice(["this", "null", "true"])
        return rnd.choice(self.names) + rnd.choice(["++", "--"])

    def template(self) -> str:
        rnd = self.rnd
        parts = ["`", rnd.choice(["", "t", "/", "'", "\\`"])]
        for _ in range(rnd.randint(0, 2)):
            parts += ["${ ", self.expr(), " }", rnd.choice(["", "u", "}", "{"])]
        return "".join(parts) + "`"

    def expr(self) -> str:
        rnd = self.rnd
        if self.depth > 3:
            return rnd.choice(self.names + _NUMBERS)
        self.depth += 1
        try:
            choice = rnd.randrange(10)
            if choice < 3:
                return self.atom()
            if choice < 5:
                return f"{self.atom()} {rnd.choice(_BINARY)} {self.atom()}"
            if choice == 5:
                return f"{self.atom()} ? {self.atom()} : {self.atom()}"
            if choice == 6:
                return f"{rnd.choice(['typeof', 'void', '!', '-', 'new', 'delete'])} {self.atom()}"
            if choice == 7:
                return f"{self.atom()}{rnd.choice(['.b', '?.b', '[0]', '(1)', '.if', '.return'])}"
            if choice == 8:
                return f"{rnd.choice(self.names)} {rnd.choice(['=', '/=', '+='])} {self.expr()}"
            return f"{self.atom()} / {self.atom()}"
        finally:
            self.depth -= 1

    def expression_statement(self) -> str:
        text = self.expr()
        if text.startswith(("{", "function", "class", "async", "let", "`")) and not text.startswith("`"):
            text = f"({text})"
        return text

    def block_body(self) -> str:
        return "; ".join(self.statement() for _ in range(self.rnd.randint(0, 2)))

    def statement(self) -> str:
        rnd = self.rnd
        if self.depth > 3:
            return self.expression_statement()
        self.depth += 1
        try:
            choice = rnd.randrange(16)
            if choice < 4:
                return self.expression_statement()
            if choice == 4:
                return f"if ({self.expr()}) {self.statement()}" + (
                    f"\nelse {self.statement()}" if rnd.random() < 0.3 else "")
            if choice == 5:
                return f"while ({self.expr()}) {self.statement()}"
            if choice == 6:
                return f"for (;;) {self.statement()}"
            if choice == 7:
                return "{ " + self.block_body() + " }"
            if choice == 8:
                return f"function f{rnd.randrange(9)}() {{ {self.block_body()}; return {self.expr()} }}"
            if choice == 9:
                return f"var v{rnd.randrange(9)} = {self.expr()}"
            if choice == 10:
                target = rnd.choice(["location", "location.href", "window.location", "window.location.href",
                                     "document.location", "top.location"])
                return f"{target} = {rnd.choice(_SINK_TARGETS)}"
            if choice == 11:
                call = rnd.choice(["location.assign", "location.replace", "window.open"])
                return f"{call}({rnd.choice(_SINK_TARGETS)})"
            if choice == 12:
                return rnd.choice(["\n<!-- c ' ` /\n", "\n--> c\n", "\n/* x\n */ --> c\n", "// c /\n",
                                   "\u2028", "/* ` */"]) + self.expression_statement()
            if choice == 13:
                return f"switch ({self.expr()}) {{ case {self.expr()}: {self.statement()}; default: }}"
            if choice == 14:
                return f"class C{rnd.randrange(9)} {{ #p = 1; m() {{ return this.#p / 2 }} }}"
            return f"do {self.statement()}; while ({self.expr()})"
        finally:
            self.depth -= 1

    def program(self) -> str:
        separators = [";\n", "; ", "\n"]
        return "".join(self.statement() + self.rnd.choice(separators) for _ in range(self.rnd.randint(1, 6)))


_MUTATION_PIECES = ["/", "(", ")", "{", "}", "[", "]", "'", "`", "${", "\n", ";", "<!--", "-->", "++", "?",
                    ":",
                    "if (a)", "return ", "typeof ", "=", ".", "/re/", "\u2028", "\\u0061"]


def mutate(program: str, rnd: random.Random) -> str:
    """A program with a few pieces inserted or removed (most mutants do not parse and are skipped)."""
    chars = program
    for _ in range(rnd.randint(1, 3)):
        at = rnd.randint(0, len(chars))
        if rnd.random() < 0.7:
            chars = chars[:at] + rnd.choice(_MUTATION_PIECES) + chars[at:]
        else:
            chars = chars[:at] + chars[at + rnd.randint(1, 4):]
    return chars


def corpus(count: int, seed: int = 0) -> Iterator[str]:
    """count programs: the corner cases, generated programs, and mutations of both."""
    rnd = random.Random(seed)
    yield from CORNER_CASES[:count]
    made = len(CORNER_CASES)
    while made < count:
        program = _Generator(rnd).program()
        if rnd.random() < 0.4:
            program = mutate(rnd.choice(CORNER_CASES) if rnd.random() < 0.5 else program, rnd)
        yield program
        made += 1


@dataclass
class Report:
    """What one program showed: parsed or not, and the disagreements found."""

    parsed: bool
    disagreements: list[str]


def _nodes(node: Node) -> Iterator[Node]:
    """Every node of the tree, iteratively (deep programs would exhaust recursion)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _location_expression(node: Node | None, text: bytes) -> bool:
    """`location`, `window.location`, `document.location`, `top.location`..."""
    if node is None:
        return False
    if node.type == "identifier":
        return text[node.start_byte:node.end_byte] == b"location"
    if node.type == "member_expression":
        obj, prop = node.child_by_field_name("object"), node.child_by_field_name("property")
        if prop is None or obj is None or text[prop.start_byte:prop.end_byte] != b"location":
            return False
        name = text[obj.start_byte:obj.end_byte].decode()
        return obj.type == "identifier" and name in _WINDOWS | {"document"}
    return False


def _property(member: Node, text: bytes) -> bytes:
    """The property name of a member expression, as written."""
    prop = member.child_by_field_name("property")
    return b"" if prop is None else text[prop.start_byte:prop.end_byte]


def _sink(node: Node, text: bytes) -> bool:
    """Whether a node of the tree is a navigation sink."""
    if node.type == "assignment_expression":
        left = node.child_by_field_name("left")
        if _location_expression(left, text):
            return True
        return left is not None and left.type == "member_expression" and _location_expression(
            left.child_by_field_name("object"), text) and _property(left, text) == b"href"
    if node.type != "call_expression":
        return False
    callee = node.child_by_field_name("function")
    if callee is None:
        return False
    callee_name = text[callee.start_byte:callee.end_byte]
    if callee.type == "identifier" and callee_name in (b"setTimeout", b"setInterval"):
        args = node.child_by_field_name("arguments")
        first = args.named_children[0] if args is not None and args.named_children else None
        if first is None or first.type != "string" or len(first.named_children) != 1:
            return False
        code = text[first.start_byte + 1:first.end_byte - 1]
        inner = _PARSER.parse(code)  # the code the timer runs: a sink when it is valid and holds one
        return b"\\" not in code and not inner.root_node.has_error and any(
            _sink(child, code) for child in _nodes(inner.root_node))
    if callee.type != "member_expression":
        return False
    obj, prop = callee.child_by_field_name("object"), callee.child_by_field_name("property")
    if obj is None or prop is None:
        return False
    name = text[prop.start_byte:prop.end_byte]
    args = node.child_by_field_name("arguments")
    if args is None or not args.named_children:
        return False  # location.replace() throws, window.open() opens a blank window: no navigation
    if name in (b"assign", b"replace"):
        return _location_expression(obj, text)
    return name == b"open" and obj.type == "identifier" and text[obj.start_byte:obj.end_byte] == b"window"


def compare(program: str) -> Report:
    """The grammar's tree against the lexer's tokens and the reader's navigations."""
    data = program.encode("utf-8", "surrogatepass")
    tree = _PARSER.parse(data)
    if tree.root_node.has_error or "</script" in program.lower() or "<script" in program.lower():
        return Report(False, [])
    # Character offsets (the lexer's) as byte offsets (the tree's).
    byte_at = [0] * (len(program) + 1)
    for i, char in enumerate(program):
        byte_at[i + 1] = byte_at[i] + len(char.encode("utf-8", "surrogatepass"))
    want: dict[str, set[int]] = {"regex": set(), "division": set(), "string": set(), "template": set()}
    comments: list[tuple[int, int]] = []
    literals: list[tuple[int, int]] = []
    sinks: list[Node] = []
    for node in _nodes(tree.root_node):
        kind = node.type
        if kind == "regex":
            want["regex"].add(node.start_byte)
            body = data[node.start_byte:node.end_byte]
            flags = body[body.rfind(b"/") + 1:]
            if any(end in body for end in _LINE_TERMINATORS) or not _VALID_FLAGS.fullmatch(flags) \
                    or body.startswith(b"/*"):  # "/*" always begins a comment
                return Report(False, [])  # tree-sitter allows what browsers reject: a line break in a regex
        elif kind in ("/", "/=") and not node.is_named and node.parent is not None \
                and node.parent.type in ("binary_expression", "augmented_assignment_expression"):
            want["division"].add(node.start_byte)
        elif kind == "string":
            want["string"].add(node.start_byte)
            literal = data[node.start_byte:node.end_byte]
            if (b"\n" in literal or b"\r" in literal) and b"\\" not in data:
                return Report(False, [])  # tree-sitter allows what browsers reject: a line break in a string
        elif kind == "template_string":
            want["template"].add(node.start_byte)
        elif kind in ("comment", "html_comment"):
            comments.append((node.start_byte, node.end_byte))
        elif kind in ("string", "template_string", "regex"):
            literals.append((node.start_byte, node.end_byte))
        if _sink(node, data):
            sinks.append(node)
    if _html_comment_unseen(data, comments + literals) or _close_comment_misplaced(data, comments):
        return Report(False, [])  # tree-sitter's HTML-like comments differ from the browsers' (Annex B)
    tokens = lex(program)
    got: dict[str, set[int]] = {key: set() for key in want}
    for token_kind, text, start in zip(tokens.kinds, tokens.texts, tokens.starts, strict=True):
        at = byte_at[start]
        if token_kind == REGEX:
            got["regex"].add(at)
        elif token_kind == PUNCT and text in ("/", "/="):
            got["division"].add(at)
        elif token_kind == STR:
            got["string"].add(at)
        elif token_kind in (TPL, TPL_HEAD):
            got["template"].add(at)
    disagreements = [f"{key} at bytes {sorted(want[key] ^ got[key])[:5]}"
                     for key in want if want[key] != got[key]]
    token_bytes = sorted(byte_at[start] for start in tokens.starts)
    for low, high in comments:
        k = bisect_left(token_bytes, low)
        if k < len(token_bytes) and token_bytes[k] < high:
            disagreements.append(f"a token inside the comment at bytes {low}-{high}")
    if sinks:
        disagreements += _missed_sinks(program, data, sinks)
    return Report(True, disagreements)


def _html_comment_unseen(data: bytes, covered: list[tuple[int, int]]) -> bool:
    """Whether a "<!--" or "-->" of the program is in none of the tree's comments, strings or regexes."""
    for marker in (b"<!--", b"-->"):
        at = data.find(marker)
        while at >= 0:
            if not any(low <= at < high for low, high in covered):
                return True
            at = data.find(marker, at + 1)
    return False


def _close_comment_misplaced(data: bytes, comments: list[tuple[int, int]]) -> bool:
    """Whether the tree has a "-->" comment that is not at a line's start (browsers read an operator)."""
    for low, high in comments:
        if data.startswith(b"-->", low) and data[high:].lstrip().startswith(b"/"):
            return True  # tree-sitter ends the statement at "-->"; browsers go on: `a\n-->\n/b/g` divides
        if data.startswith(b"-->", low):
            line = max(data.rfind(terminator, 0, low) for terminator in _LINE_TERMINATORS)
            if data[line + 1:low].strip() if line >= 0 else data[:low].strip():
                return True
    return False


def _missed_sinks(program: str, data: bytes, sinks: list[Node]) -> list[str]:
    """The sinks of the tree that the reader neither reports nor covers by marking the page unread."""
    page = f"<meta charset=utf-8><script>{program}</script>".encode()
    found = find_navigations(status=200, headers=(), body=page,
                             base_url="http://page.example/", content_type="text/html")
    if any(n.technique is Technique.UNREAD for n in found):
        return []
    raws = [n.raw for n in found]
    missed = []
    for node in sinks:
        source = data[node.start_byte:node.end_byte].decode("utf-8", "surrogatepass")
        head = " ".join(source.split())[:24]
        if not any(" ".join(raw.split()).startswith(head) or head in " ".join(raw.split()) for raw in raws):
            missed.append(f"sink not reported: {source[:60]!r}")
    return missed


def test_corner_cases_agree_with_the_grammar() -> None:
    for program in CORNER_CASES:
        report = compare(program)
        assert report.parsed, program
        assert report.disagreements == [], (program, report.disagreements)


def test_a_generated_corpus_agrees_with_the_grammar() -> None:
    parsed = 0
    for program in corpus(1500, seed=10):
        report = compare(program)
        parsed += report.parsed
        assert report.disagreements == [], (program, report.disagreements)
    assert parsed >= 500  # the corpus is mostly valid JavaScript, so the comparison means something


def test_names_are_indexed_once() -> None:
    tokens = lex("go(); x.go; \\u0067o(); 'go'; go")
    assert tokens.name_sites("go") == [0, 6, 8, 14]
    assert tokens.name_sites("absent") == []
    assert all(tokens.kinds[k] == NAME for k in tokens.name_sites("go"))
