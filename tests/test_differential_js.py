"""Differential tests of the script reader against tree-sitter-javascript (a real JavaScript grammar).

A generated corpus (the grammar's corner cases, random programs from a small grammar, and
mutations of both) is parsed by tree-sitter, whose tree is the oracle, and checked by V8
(``node``, compiling each program as a classic script), which decides what is JavaScript:
tree-sitter is error-tolerant and accepts programs no browser runs. Programs both accept are
compared with the reader: every regular expression, division, string, template literal and
comment the grammar's tree shows, the lexer shows the same; every navigation sink in the tree
(assignments to ``location`` and ``location.href``, ``location.assign/replace``,
``window.open``, string timers) `find_navigations` reports, or marks the page unread. Each
program not compared says why (`Report.skipped`). `make test` runs a bounded corpus;
``bench/differential_js.py`` runs the full one.
"""

from __future__ import annotations

import atexit
import json
import random
import re
import shutil
import subprocess
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

import tree_sitter_javascript
from tree_sitter import Language, Node, Parser, Tree

from clickguard.inspection.navigation import Technique, find_navigations
from clickguard.inspection.navigation.script_lexer import NAME, PUNCT, REGEX, STR, TPL, TPL_HEAD, lex

_PARSER = Parser(Language(tree_sitter_javascript.language()))

# One long-lived node process compiles each program as a classic script (sloppy mode, HTML-like
# comments allowed: what a browser's <script> gets) and answers 1 when V8 accepts it, 0 when not.
_NODE_CHECKER = """
const vm = require('vm');
const lines = require('readline').createInterface({input: process.stdin});
lines.on('line', (line) => {
  let ok = '1';
  try { new vm.Script(JSON.parse(line)); } catch (e) { ok = '0'; }
  process.stdout.write(ok + '\\n');
});
"""


class NodeSyntax:
    """V8 (node) as the validity oracle: tree-sitter is error-tolerant, accepting what no browser runs."""

    def __init__(self) -> None:
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise RuntimeError("the JavaScript differential needs node (apt-get install nodejs)")
        self.process = subprocess.Popen([node, "-e", _NODE_CHECKER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, encoding="utf-8")
        atexit.register(self.close)

    def valid(self, program: str) -> bool:
        """Whether V8 compiles the program as a classic script."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(program) + "\n")  # ASCII: line breaks and lone surrogates escaped
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if answer not in ("0\n", "1\n"):
            raise RuntimeError(f"the node syntax checker stopped (answered {answer!r})")
        return answer == "1\n"

    def close(self) -> None:
        """End the node process."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=10)


_NODE: list[NodeSyntax] = []


def node_accepts(program: str) -> bool:
    """Whether V8 accepts the program (one node process per test process, started on first use)."""
    if not _NODE:
        _NODE.append(NodeSyntax())
    return _NODE[0].valid(program)
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
    # yield and await: operators in generators and async functions, names elsewhere in a classic script,
    # arrow functions' bodies included (`_names_as_names` tells tree-sitter)
    "var await = 4; x = await / 2 / 1",
    "var yield = 4; x = yield / 2 / 1",
    "function g() { yield/ /re/g }",
    "function* g() { function h() { x = yield / 2 / 1 } }",
    "async function f() { (() => await / 2 / 1) }",
    "function* g() { (() => { yield / 2 / 1 }) }",
    "async function f() { g = x => x\n await /re/ }",
    "async function f() { g = x => (await / 2) }",
    "function* g() { yield /re/g }",
    "async function h() { await /re/g }",
    "g = async () => await /re/",
    "g = async x => f(await /re/, 1)",
    "g = async x => { await /re/ }",
    "g = async () => 1, x = await / 2 / 1",
    "o = { async m() { await /re/ }, *n() { yield /re/ } }",
    "class C { async *[k]() { yield /re/; await /re/ } static async s() { await /re/ } }",
    "async function g() { function h() { x = await / 2 / 1 } }",
    "x = {await: 1}.await / 2",
    "async function g() { for await (const x of /re/) ; }",
    "x = function* () { yield /re/ }",
    # automatic semicolon insertion does not happen before "/": the line goes on as a division
    "a = b\n/ 1 / 2",
    "a = b\n/re/g.exec(x)",
    "x = function () {}\n/ 1 / 2",
    "f = () => /re/.test(s)",
    "f = () => ({}) / 1",
    "x = `t`\nasync function f() { return 1 }\n/re/g.exec(s)",
    "! class { m() { } }\nasync function f() { }\n/re/g.exec(s)",
    "x = y => y\n/ 2 / 1",
]

_IDENTIFIERS = ["a", "b", "x", "s", "u", "obj", "of", "async", "get", "$", "_x", "await", "yield"]
_BINARY = ["+", "-", "*", "/", "%", "<", ">", "==", "===", "&&", "||", "??", "**", "in", "instanceof",
           "&", "|", "^", "<<", ">>>"]
_REGEXES = ["/re/", "/a[/]b/g", "/\\//", "/=x/", "/[\\]/]+/i", "/(?:x)/u"]
_STRINGS = ["'s'", "\"d\\\"q\"", "'}'", "'{'", "'/'", "'`'", "'//'", "\"/*\""]
_NUMBERS = ["1", ".5", "1_000", "0x1F", "1e3", "2.", "0"]
_SINK_TARGETS = ["'http://sink.example/'", "u", "'http://' + x", "`http://t.example/${ x }`"]


@dataclass
class _Generator:
    """Random programs from a small grammar that covers the lexer's decisions.

    Mostly valid JavaScript (V8 decides): arrows, numbers and updates are parenthesized where
    an operator or a member would follow them, declarations stand only where a statement list
    allows them, and class names are not declared twice.
    """

    rnd: random.Random
    depth: int = 0
    names: list[str] = field(default_factory=lambda: list(_IDENTIFIERS))
    classes: int = 0

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
                               "((x) => x)", "(() => { " + self.block_body() + " })"])
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
                operator = rnd.choice(['typeof', 'void', '!', '-', 'new', 'delete'])
                return f"{operator} {self.member_base() if operator == 'new' else self.atom()}"
            if choice == 7:
                return f"{self.member_base()}{rnd.choice(['.b', '?.b', '[0]', '(1)', '.if', '.return'])}"
            if choice == 8:
                return f"{rnd.choice(self.names)} {rnd.choice(['=', '/=', '+='])} {self.expr()}"
            return f"{self.atom()} / {self.atom()}"
        finally:
            self.depth -= 1

    def member_base(self) -> str:
        """An atom that a member access, a call or `new` may follow."""
        text = self.atom()
        if text[0].isdigit() or text[0] == "." or text.endswith(("++", "--")):
            return f"({text})"
        return text

    def expression_statement(self) -> str:
        text = self.expr()
        if text.startswith(("{", "function", "class", "async", "let", "`")) and not text.startswith("`"):
            text = f"({text})"
        return text

    def block_body(self) -> str:
        return "; ".join(self.statement() for _ in range(self.rnd.randint(0, 2)))

    def statement(self, declarations: bool = True) -> str:
        """One statement; a function or class declaration only where a statement list is."""
        rnd = self.rnd
        if self.depth > 3:
            return self.expression_statement()
        self.depth += 1
        try:
            choice = rnd.randrange(16)
            if choice < 4 or (not declarations and choice in (8, 14)):
                return self.expression_statement()
            if choice == 4:
                return f"if ({self.expr()}) {self.statement(False)}" + (
                    f"\nelse {self.statement(False)}" if rnd.random() < 0.3 else "")
            if choice == 5:
                return f"while ({self.expr()}) {self.statement(False)}"
            if choice == 6:
                return f"for (;;) {self.statement(False)}"
            if choice == 7:
                return "{ " + self.block_body() + " }"
            if choice == 8:
                kind = rnd.choice(["function", "function", "function*", "async function"])
                return f"{kind} f{rnd.randrange(9)}() {{ {self.block_body()}; return {self.expr()} }}"
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
                self.classes += 1
                return f"class C{self.classes} {{ #p = 1; m() {{ return this.#p / 2 }} }}"
            return f"do {self.statement(False)}\nwhile ({self.expr()})"
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
    """What one program showed: compared or not (and why not), and the disagreements found."""

    parsed: bool  # valid for V8 and read by tree-sitter as a browser reads it, so compared
    disagreements: list[str]
    skipped: str = ""  # why it was not compared


# Why a program is not compared. Only the last is a program browsers run: tree-sitter reads its
# HTML-like comments (Annex B) otherwise, even once they are written as "//" comments (see
# `_grammar_tree`), so its tree is no oracle there (tests/test_script_reader.py pins the reader's
# reading of those comments instead).
SKIP_MARKUP = "holds <script or </script (the HTML parser would end the script there)"
SKIP_GRAMMAR = "tree-sitter finds a syntax error"
SKIP_V8 = "tree-sitter accepts, V8 rejects (not JavaScript)"
SKIP_HTML_COMMENT = "V8 accepts, tree-sitter reads an HTML-like comment, '/*' or yield/await otherwise"


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
        if b"\\" in code:
            return False
        inner = _grammar_tree(code.decode())  # the code the timer runs: a sink when it is valid and holds one
        return inner is not None and any(_sink(child, code) for child in _nodes(inner.root_node)) \
            and node_accepts(code.decode())
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


class _NotComparable(Exception):
    """tree-sitter's tree is no oracle for this program: it reads an HTML-like comment otherwise."""


_JS_SPACES = frozenset("\t\v\f \xa0\ufeff\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                       "\u200a\u202f\u205f\u3000")
_LINE_BREAKS = "\n\r\u2028\u2029"
_SPACE_CLASS = "".join(sorted(_JS_SPACES))
# What may stand before "-->" on its line for it to begin a comment (Annex B): white space and
# comments, the first of which may have begun on an earlier line. `_grammar_tree` checks against
# the tree that these are comments indeed.
_BEFORE_CLOSE_COMMENT = re.compile(rf"(?:.*?\*/)?(?:[{_SPACE_CLASS}]++|/\*(?:(?!\*/).)*+\*/)*+")


def _html_comments_as_line_comments(program: str) -> tuple[str, list[tuple[int, int, int]]]:
    """The program with "<!--", and "-->" where only white space and comments precede it on its line, as "//".

    Browsers read both as the start of a comment to the line's end (Annex B); tree-sitter reads
    them otherwise, and reads "//" as browsers do. Each marker keeps its length, so offsets stay.
    Where the markers stood (offset, length, where the white space and comments before it begin)
    is returned too: `_grammar_tree` checks that each is a comment's start or lies whole inside
    a string, template or comment, which is when the two programs lex alike.
    """
    chars = list(program)
    markers = []
    at = program.find("<!--")
    while at >= 0:
        chars[at:at + 2] = "//"
        markers.append((at, 4, at))
        at = program.find("<!--", at + 1)
    at = program.find("-->")
    while at >= 0:
        line = max(program.rfind(end, 0, at) for end in _LINE_BREAKS)
        if _BEFORE_CLOSE_COMMENT.fullmatch(program, line + 1, at):
            chars[at:at + 2] = "//"
            markers.append((at, 3, line + 1))
        at = program.find("-->", at + 1)
    return "".join(chars), markers


def _byte_offsets(program: str) -> list[int]:
    """Character offsets (the lexer's) as byte offsets (the tree's)."""
    byte_at = [0] * (len(program) + 1)
    for i, char in enumerate(program):
        byte_at[i + 1] = byte_at[i] + len(char.encode("utf-8", "surrogatepass"))
    return byte_at


_YIELD_AWAIT = re.compile(r"(?<![\w$\\])(?:yield|await)(?![\w$\\])")
_FUNCTIONS = frozenset({"function_declaration", "function_expression", "function", "generator_function",
                        "generator_function_declaration", "arrow_function", "method_definition",
                        "class_static_block"})
_LITERAL_PARTS = frozenset({"string_fragment", "string", "template_string", "comment", "html_comment",
                            "regex_pattern", "regex_flags", "regex", "escape_sequence"})


def _operator_here(node: Node, word: str) -> bool:
    """Whether `yield`/`await` at node is an operator: inside the body of a generator / async function.

    The body of an arrow function makes them names (`yield` always, `await` unless the arrow
    is async), as the standard's grammar parameters say ([~Yield], [~Await]) and V8 does.
    """
    child = node
    parent = node.parent
    while parent is not None:
        if parent.type in _FUNCTIONS and child == parent.child_by_field_name("body"):
            marks = {c.type for c in parent.children if not c.is_named}
            if word == "await":
                return "async" in marks
            return "generator" in parent.type or (parent.type == "method_definition" and "*" in marks)
        child, parent = parent, parent.parent
    return False


def _names_as_names(program: str, tree: Tree) -> str:
    """The program with each `yield`/`await` that is a name where it stands written `yiel_`/`awai_`.

    tree-sitter reads both as operators everywhere; a classic script's grammar makes them names
    outside generators and async functions. Where they are is read from the tree's functions;
    `_grammar_tree` checks that the rewritten program has the same functions.
    """
    byte = _byte_offsets(program)
    chars = list(program)
    for match in _YIELD_AWAIT.finditer(program):
        at = byte[match.start()]
        node = tree.root_node.descendant_for_byte_range(at, at + 5)
        if node is None or node.type in _LITERAL_PARTS or _operator_here(node, match.group()):
            continue
        chars[match.start() + 4] = "_"
    return "".join(chars)


def _functions(tree: Tree) -> list[tuple[str, int, int]]:
    """The functions of a tree: type and span."""
    return [(node.type, node.start_byte, node.end_byte) for node in _nodes(tree.root_node)
            if node.type in _FUNCTIONS]


def _grammar_tree(program: str) -> Tree | None:
    """tree-sitter's tree of the program, read as browsers read it; None on a syntax error.

    Two rewritings first, each keeping every offset: HTML-like comments written as "//"
    comments, and `yield`/`await` written as other names where they are names (where the
    functions are is read from the tree, or, when it does not parse, from the tree with every
    `yield`/`await` written as a name). Raises
    `_NotComparable` where the first may have changed the program: a marker that is neither
    a comment's start nor whole inside a string, template or comment (in a regular expression,
    or forming "*/" or "///"), a comment where the program has none, or a "-->" left as it
    was that follows a "*/" on its line; and where the second changed its functions.
    """
    rewritten, markers = _html_comments_as_line_comments(program)
    original = program.encode("utf-8", "surrogatepass")
    tree = _PARSER.parse(rewritten.encode("utf-8", "surrogatepass"))
    if _YIELD_AWAIT.search(rewritten):
        structure = tree  # where the functions are; with every yield/await a name when it does not parse
        if tree.root_node.has_error:
            all_names = _YIELD_AWAIT.sub(lambda m: m.group()[:4] + "_", rewritten)
            structure = _PARSER.parse(all_names.encode("utf-8", "surrogatepass"))
            if structure.root_node.has_error:
                return None
        tree = _PARSER.parse(_names_as_names(rewritten, structure).encode("utf-8", "surrogatepass"))
        if not tree.root_node.has_error and _functions(tree) != _functions(structure):
            raise _NotComparable(program)
    if tree.root_node.has_error:
        return None
    byte = _byte_offsets(program)
    marker_bytes = {byte[at]: length for at, length, _ in markers}
    starts: set[int] = set()
    holders: list[tuple[int, int]] = []  # strings, templates and comments
    for node in _nodes(tree.root_node):
        if node.type in ("comment", "html_comment"):
            opener = node.start_byte in marker_bytes or original.startswith((b"//", b"/*"), node.start_byte)
            if not opener:
                raise _NotComparable(program)  # a comment the browser does not see
            starts.add(node.start_byte)
            holders.append((node.start_byte, node.end_byte))
        elif node.type in ("string", "template_string"):
            holders.append((node.start_byte, node.end_byte))
        elif node.type == "regex" and original.startswith(b"/*", node.start_byte):
            raise _NotComparable(program)  # "/*" always begins a comment
    for at, length in marker_bytes.items():
        if at not in starts and not any(low < at and at + length <= high for low, high in holders):
            raise _NotComparable(program)
    comments = [(low, high) for low, high in holders if low in starts]
    for at, _, line_start in markers:  # what stands before a "-->" on its line must be comments
        for k in range(line_start, at):
            if program[k] not in _JS_SPACES and not any(low <= byte[k] < high for low, high in comments):
                raise _NotComparable(program)
    for line in re.split("[\n\r\u2028\u2029]", rewritten):
        if "*/" in line.partition("-->")[0] and "-->" in line:
            raise _NotComparable(program)  # `/* */ -->` at a line's start: tree-sitter may not see a comment
    return tree


def compare(program: str) -> Report:
    """The grammar's tree against the lexer's tokens and the reader's navigations."""
    if "<script" in program.lower() or "</script" in program.lower():
        return Report(False, [], SKIP_MARKUP)
    try:
        tree = _grammar_tree(program)
        if tree is None:
            return Report(False, [], SKIP_GRAMMAR)
        if not node_accepts(program):
            return Report(False, [], SKIP_V8)
        return _compare(program, tree)
    except _NotComparable:
        return Report(False, [], SKIP_HTML_COMMENT)


def _compare(program: str, tree: Tree) -> Report:
    """The tree of a valid program against the lexer's tokens and the reader's navigations."""
    data = program.encode("utf-8", "surrogatepass")
    byte_at = _byte_offsets(program)
    want: dict[str, set[int]] = {"regex": set(), "division": set(), "string": set(), "template": set()}
    comments: list[tuple[int, int]] = []
    sinks: list[Node] = []
    for node in _nodes(tree.root_node):
        kind = node.type
        if kind == "regex":
            want["regex"].add(node.start_byte)
        elif kind in ("/", "/=") and not node.is_named and node.parent is not None \
                and node.parent.type in ("binary_expression", "augmented_assignment_expression"):
            want["division"].add(node.start_byte)
        elif kind == "string" or kind == "template_string":
            want["string" if kind == "string" else "template"].add(node.start_byte)
        elif kind in ("comment", "html_comment"):
            comments.append((node.start_byte, node.end_byte))
        if _sink(node, data):
            sinks.append(node)
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
