"""YAML files IT writes (policies, fingerprint data), validated by pydantic with line numbers.

The YAML is parsed by libyaml (in C) and composed here, from its events, into
yaml's node tree that keeps line numbers (refusing nesting deeper than MAX_DEPTH
before reading past it), turned into plain data (catching the duplicate keys
that YAML would silently collapse, holding what aliases repeat to ALIAS_BUDGET),
validated by a pydantic model, and each pydantic error's location is mapped back
to the node it came from, so every problem reads ``file:line: field: message``
(`errors.Problem`) and all of them are reported at once. The tree and its lines
are those of yaml's pure-Python parser (kept as `_PureParser`, for a PyYAML
built without libyaml, and compared in tests/test_yamlfile.py); only the wording
of a syntax error is libyaml's.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple

import yaml
import yaml.composer
import yaml.parser
import yaml.reader
import yaml.resolver
import yaml.scanner
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from clickguard.errors import Problem

type Loc = tuple[str | int, ...]  # a place in the data: ("feeds", 0, "format")

MAX_DEPTH = 64  # lists and mappings inside each other; the shipped files nest 5 deep
# What aliases may add to the data: each value an alias repeats costs 1 + its depth (the
# location kept for its line). Enough for a list of 100 addresses repeated in 250 groups.
ALIAS_BUDGET = 100_000
# Unknown keys of a file told the closest allowed one ("did you mean"; the others still listed
# with the keys allowed): difflib takes 75-180 µs a key, as long as reading some 200 bytes, so a
# text of unknown keys would cost some 20 ms a KiB with a hint for each.
HINTS = 3
_STR = "tag:yaml.org,2002:str"
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"  # its own limit, 1,000, far past ours
_TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} lists and mappings inside each other)"


class NestedTooDeeply(yaml.MarkedYAMLError):
    """The text nests lists and mappings deeper than MAX_DEPTH; read no further."""


class _PureParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """yaml's pure-Python parser, for where PyYAML was built without libyaml (and to compare with).

    Its scanner rechecks every open ``[`` or ``{`` of a line at each token (time quadratic
    in the depth), so it refuses a collection opened inside MAX_DEPTH others; about 40 times
    slower than libyaml.
    """

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        """Refuse a ``[`` or ``{`` opened inside MAX_DEPTH others."""
        if self.flow_level >= MAX_DEPTH:
            raise NestedTooDeeply(problem=_TOO_DEEP, problem_mark=self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def dispose(self) -> None:
        """Nothing to free (libyaml's parser frees its buffers here)."""


_PARSER: type[Any]
try:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]
    _PARSER, WITH_LIBYAML = CParser, True
except ImportError:  # PyYAML built without libyaml
    _PARSER, WITH_LIBYAML = _PureParser, False

# An event of libyaml's (or yaml's) parser: typed loosely, its kinds told apart with isinstance.
type _Event = Any


class _Composer:
    """yaml's node tree from libyaml's events, refusing nesting deeper than MAX_DEPTH as it reads.

    libyaml (`yaml.cyaml.CParser`) scans and parses in C without recursing, and hands out
    one event at a time, each read only when asked for (its scanner looks ahead at most a
    line, or 1024 characters, for a key). The tree is composed here, in Python, as
    `yaml.composer.Composer` does (same nodes, tags and lines, same errors), refusing the
    first node inside MAX_DEPTH others before anything is read past it: libyaml's own
    composer recurses in C once a level and is never used. Aliases stay references to
    their anchor's node (as in yaml): `Builder` bounds what repeating them costs.
    """

    def __init__(self, text: str, parser: type[Any] | None = None) -> None:
        self._parser: Any = (parser or _PARSER)(text)
        self._resolver = yaml.resolver.Resolver()
        self._anchors: dict[str, yaml.Node] = {}
        self._text = text
        self._last_line = _last_line(text)
        self._blocks = 0  # block (indented) collections open
        self._plain_tags: dict[str, str] = {}  # the tag the resolver gave each plain scalar's text
        self.aliases = False  # whether the text holds an alias (one node reached twice)

    def mark(self, mark: Any) -> Any:
        """A mark of libyaml's as yaml's own parser places it.

        libyaml ends a text that lacks a final line break on a line of its own, one past
        the last, where it marks the empty values, and errors, found at the end.
        """
        if mark is None or mark.line <= self._last_line:
            return mark
        return yaml.Mark(mark.name, mark.index, self._last_line, mark.column, None, None)  # type: ignore[arg-type]

    def single_node(self) -> yaml.Node | None:
        """The root node of the text's one document (None if it has none), as `yaml.compose` gives."""
        parser = self._parser
        try:
            parser.get_event()  # stream start
            if isinstance(parser.peek_event(), yaml.StreamEndEvent):
                return None
            parser.get_event()  # document start
            document = self._node(parser.get_event(), 0)
            parser.get_event()  # document end
            if not isinstance(parser.peek_event(), yaml.StreamEndEvent):
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream", document.start_mark,
                    "but found another document", parser.get_event().start_mark)
            return document
        finally:
            parser.dispose()

    def _node(self, event: _Event, depth: int) -> yaml.Node:
        """The node that starts with event, inside depth others, read to its end."""
        if depth >= MAX_DEPTH:
            raise NestedTooDeeply(problem=_TOO_DEEP, problem_mark=self._too_deep_at(event))
        anchor = event.anchor
        if anchor is None and event.__class__ is yaml.ScalarEvent:  # most nodes: the short way
            return self._scalar(event)
        start = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self.aliases = True
            if anchor not in self._anchors:
                raise yaml.composer.ComposerError(None, None, f"found undefined alias {anchor!r}", start)
            return self._anchors[anchor]
        if anchor is not None and anchor in self._anchors:
            first: Any = self._anchors[anchor].start_mark
            raise yaml.composer.ComposerError(f"found duplicate anchor {anchor!r}; first occurrence", first,
                                              "second occurrence", start)
        if isinstance(event, yaml.ScalarEvent):
            node: yaml.Node = self._scalar(event)
            if anchor is not None:
                self._anchors[anchor] = node
            return node
        block = not event.flow_style
        if isinstance(event, yaml.SequenceStartEvent):
            sequence = yaml.SequenceNode(self._tag(event, yaml.SequenceNode, None), [], start, None,
                                         flow_style=event.flow_style)
            node = sequence
        else:
            mapping = yaml.MappingNode(self._tag(event, yaml.MappingNode, None), [], start, None,
                                       flow_style=event.flow_style)
            node = mapping
        if anchor is not None:
            self._anchors[anchor] = node  # before its content: an alias inside refers to it
        self._blocks += block
        if isinstance(event, yaml.SequenceStartEvent):
            self._items(sequence, depth + 1)
        else:
            self._pairs(mapping, depth + 1)
        self._blocks -= block
        return node

    def _scalar(self, event: _Event) -> yaml.ScalarNode:
        """A scalar's node; a plain one's tag as yaml's resolver gives it, remembered per text."""
        value, tag = event.value, event.tag
        if tag is None:
            tag = self._plain_tags.get(value) if event.implicit[0] else None
            if tag is None:
                tag = self._tag(event, yaml.ScalarNode, value)
                if event.implicit[0]:
                    self._plain_tags[value] = tag
        elif tag == "!":
            # An empty value tagged only "!": libyaml calls it not plain, yaml plain (so null).
            empty = value == "" and not event.style
            tag = self._resolver.resolve(yaml.ScalarNode, value,  # type: ignore[no-untyped-call]
                                         (True, False) if empty else event.implicit)
        start, end = event.start_mark, event.end_mark
        if end.line > self._last_line:
            start, end = self.mark(start), self.mark(end)
        return yaml.ScalarNode(tag, value, start, end, style=event.style or None)  # libyaml's plain is ""

    def _tag(self, event: _Event, kind: type[yaml.Node], value: str | None) -> str:
        """The node's tag: its own, else the one yaml's resolver gives its kind and text."""
        if event.tag is None or event.tag == "!":
            tag: str = self._resolver.resolve(kind, value, event.implicit)  # type: ignore[no-untyped-call]
            return tag
        return str(event.tag)

    def _too_deep_at(self, event: _Event) -> Any:
        """Where yaml's own parser refuses the node of event, one too deep.

        Its scanner counts open brackets and reads a token ahead: under a block root, the
        ``[`` or ``{`` right after the last bracket allowed is refused first (on its own line
        maybe). Elsewhere the node too deep is the one refused.
        """
        if self._blocks != 1 or not getattr(event, "flow_style", False):
            return event.start_mark
        try:
            after = self._parser.peek_event()
        except yaml.YAMLError:
            return event.start_mark
        if getattr(after, "flow_style", False) and self._text[after.start_mark.index] in "[{":
            return after.start_mark
        return event.start_mark

    def _items(self, node: yaml.SequenceNode, depth: int) -> None:
        """A sequence's items, up to its end."""
        get = self._parser.get_event
        event = get()
        while not isinstance(event, yaml.SequenceEndEvent):
            node.value.append(self._node(event, depth))
            event = get()
        node.end_mark = event.end_mark

    def _pairs(self, node: yaml.MappingNode, depth: int) -> None:
        """A mapping's keys and values, up to its end."""
        get = self._parser.get_event
        event = get()
        while not isinstance(event, yaml.MappingEndEvent):
            key = self._node(event, depth)
            node.value.append((key, self._node(get(), depth)))
            event = get()
        node.end_mark = event.end_mark


def _last_line(text: str) -> int:
    """The line (from 0) the text ends on: how many line breaks it holds, as YAML counts them."""
    return (text.count("\n") + text.count("\r") - text.count("\r\n") + text.count("\x85")
            + text.count("\u2028") + text.count("\u2029"))


class Composed(NamedTuple):
    """A YAML text's node tree."""

    root: yaml.Node | None  # None for a text without a document
    aliases: bool  # whether a node is reached twice (through an alias)


def compose(text: str, parser: type[Any] | None = None) -> Composed:
    """The node tree of a YAML text, nested at most MAX_DEPTH deep, or a YAMLError.

    Characters yaml does not allow are refused first, as yaml's own reader does (same
    error, same position): libyaml would report them without the character.
    """
    if found := yaml.reader.Reader.NON_PRINTABLE.search(text):
        raise yaml.reader.ReaderError("<unicode string>", found.start(), ord(found.group()), "unicode",
                                      "special characters are not allowed")
    composer = _Composer(text, parser)
    try:
        return Composed(composer.single_node(), composer.aliases)
    except yaml.MarkedYAMLError as e:
        e.problem_mark, e.context_mark = composer.mark(e.problem_mark), composer.mark(e.context_mark)
        # libyaml's scanner reads ahead up to a line (1024 characters) for a key: a line that
        # opens its limit of 1,000 collections is refused there, before the composer's turn.
        if e.problem == _LIBYAML_TOO_DEEP:
            raise NestedTooDeeply(problem=_TOO_DEEP, problem_mark=e.problem_mark) from e
        raise


class FieldProblems(ValueError):
    """Problems a cross-field check found, each at a location below the model that raised it."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def describe(value: object) -> str:
    """A value as IT wrote it, for the "(got …)" part of a message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)




def render(loc: Loc) -> str:
    """A location as IT reads it: feeds[0].format."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Builder:
    """Turns a composed YAML node tree into plain data, noting each location's line.

    An alias builds its anchor's node again wherever it appears, so aliases of aliases
    could nest the data deeper than the text (the recursion here has the same limit) or
    repeat it exponentially ("billion laughs"): the data is held to MAX_DEPTH levels and
    what aliases repeat to ``alias_budget`` (see ALIAS_BUDGET), each limit reported once,
    at the line of the node that broke it. Without aliases the text bounds the work, and
    nothing is tracked (``aliases=False``, what `compose` reports): each node is built once,
    no deeper than the composer allowed.
    """

    def __init__(self, filename: str, alias_budget: int = ALIAS_BUDGET, *, aliases: bool = True) -> None:
        self.filename = filename
        self._aliases = aliases
        self.lines: dict[Loc, int] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        self._open: set[int] = set()  # nodes being built, to stop on recursive aliases
        self._built: set[int] = set()  # nodes built once: building one again is an alias's repeat
        self._alias_budget = alias_budget
        self._alias_left = alias_budget
        self._refused: set[str] = set()  # limits already reported, each reported once

    def _problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        """Record a problem at a node."""
        line = node.start_mark.line + 1
        self.problems.append(Problem(self.filename, line, render(loc), message))

    def _over_limit(self, node: yaml.Node, loc: Loc) -> bool:
        """Whether building this node would break a limit (reported once, at the first such node)."""
        if len(loc) >= MAX_DEPTH:  # only aliases get here: the loader refused deeper text
            message = f"{_TOO_DEEP}, through aliases"
        elif id(node) not in self._built:
            self._built.add(id(node))
            return False
        else:
            self._alias_left -= 1 + len(loc)
            if self._alias_left >= 0:
                return False
            message = (f"aliases repeat too much (values they repeat, each counted 1 + its depth, "
                       f"over {self._alias_budget})")
        if message not in self._refused:
            self._refused.add(message)
            self._problem(node, loc, message)
        return True

    def build(self, node: yaml.Node, loc: Loc) -> object:
        """Plain data for one node."""
        if not self._aliases:
            return self._value(node, loc)
        if self._over_limit(node, loc):
            return None
        if id(node) in self._open:
            self._problem(node, loc, "an alias refers to itself")
            return None
        self._open.add(id(node))
        try:
            return self._value(node, loc)
        finally:
            self._open.discard(id(node))

    def _value(self, node: yaml.Node, loc: Loc) -> object:
        """Plain data for one node, once the limits allowed it."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:  # most values: what yaml's constructor would return, without its bookkeeping
                return node.value
            try:
                return self._constructor.construct_object(node)
            except yaml.MarkedYAMLError as e:
                self._problem(node, loc, f"cannot read this value: {e.problem}")
                return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        out: list[object] = []
        lines = self.lines
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            out.append(self.build(item, (*loc, i)))
        return out

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, object]:
        """A mapping with text keys; duplicate keys are problems, not silently collapsed."""
        out: dict[str, object] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._problem(key_node, (*loc, "<<"),
                              "YAML merge keys are not supported; write the keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, loc, "a key must be plain text")
                continue
            # The raw text, not YAML 1.1's reading of it: a key `yes` must not become True.
            key = key_node.value
            if key in first_line:
                self._problem(key_node, (*loc, key),
                              f"duplicate key (first at line {first_line[key]}); "
                              "YAML would silently keep only the last one")
            first_line.setdefault(key, line)
            self.lines[(*loc, key)] = line
            out[key] = self.build(value_node, (*loc, key))
        return out


def _allowed_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys of the model at a location, for "unknown key" messages."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model class inside an annotation such as tuple[FeedConfig, ...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _choices(expected: str) -> list[str]:
    """pydantic's "'a', 'b' or 'c'" as ['a', 'b', 'c']."""
    return [choice.strip().strip("'") for choice in re.split(r",| or ", expected) if choice.strip()]


def _message(error: ErrorDetails, loc: Loc, root: type[BaseModel], *, hint_left: bool = True) -> str:
    """A pydantic error in plain English; an unknown key gets a "did you mean" while hint_left."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = f"(got {describe(error.get('input'))})"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if hint_left else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{hint} (allowed here: {', '.join(allowed)})"
    if kind in ("literal_error", "enum"):
        choices = _choices(str(ctx.get("expected", "")))
        one = f"be {choices[0]}" if len(choices) == 1 else f"be one of {', '.join(choices)}"
        return f"must {one} {got}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    plain = {
        "int_type": "must be a whole number", "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number", "bool_type": "must be true or false",
        "bool_parsing": "must be true or false", "string_type": "must be text",
        "float_type": "must be a number", "float_parsing": "must be a number",
        "list_type": "must be a list", "tuple_type": "must be a list", "set_type": "must be a list",
        "frozen_set_type": "must be a list", "dict_type": "must be a mapping of keys to values",
        "model_type": "must be a mapping of keys to values",
        "model_attributes_type": "must be a mapping of keys to values",
        "path_type": "must be a file path",
    }
    if kind in plain:
        return f"{plain[kind]} {got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')} {got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')} {got}"
    return f"{error['msg']} {got}"


def line_of(loc: Loc, lines: Mapping[Loc, int]) -> int:
    """The line of a location, or of its nearest enclosing one (a missing key: its mapping)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _problems_from(error: ValidationError, filename: str, lines: Mapping[Loc, int],
                   root: type[BaseModel]) -> list[Problem]:
    """Every pydantic error as a Problem at its line and field (the first HINTS unknown keys with a hint)."""
    out: list[Problem] = []
    hints = 0
    for e in error.errors():
        # pydantic appends "[key]" to the location of a bad mapping key; the key's line is right.
        loc: Loc = tuple(part for part in e["loc"] if part != "[key]")
        cause = (e.get("ctx") or {}).get("error")
        hints += e["type"] == "extra_forbidden"
        placed = (cause.problems if isinstance(cause, FieldProblems)
                  else [((), _message(e, loc, root, hint_left=hints <= HINTS))])
        for sub, message in placed:
            where = (*loc, *sub)
            out.append(Problem(filename, line_of(where, lines), render(where), message))
    return out


def yaml_problem(e: yaml.YAMLError, text: str, filename: str) -> Problem:
    """A YAML syntax error at its line."""
    if isinstance(e, NestedTooDeeply) and e.problem_mark is not None:
        return Problem(filename, e.problem_mark.line + 1, "", _TOO_DEEP)
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = ""
        if e.context and e.context_mark is not None and e.context_mark is not mark:
            where = f" ({e.context} at line {e.context_mark.line + 1})"
        return Problem(filename, mark.line + 1 if mark else None, "",
                       f"not valid YAML: {e.problem}{where}")
    if isinstance(e, yaml.reader.ReaderError):
        return Problem(filename, text.count("\n", 0, e.position) + 1, "",
                       f"not valid YAML: character {e.character!r} is not allowed")
    return Problem(filename, None, "", f"not valid YAML: {e}")


class Validated[M: BaseModel](NamedTuple):
    """What one pass over a YAML text found."""

    model: M | None  # None when there is any problem
    problems: list[Problem]
    data: object  # plain data built from the YAML, None if it did not parse
    lines: dict[Loc, int]  # data location -> line of its key (or list item) in the file


def validate[M: BaseModel](text: str, filename: str, model: type[M], *,
                           context: dict[str, Any] | None = None,
                           what: str = "file", example: str = "",
                           if_empty: str = "") -> Validated[M]:
    """Parse a YAML mapping and validate it as ``model``, collecting every problem, not the first.

    ``what`` and ``example`` word the messages for an empty file or one that is not a mapping
    ("a policy must be a mapping of keys (version, feeds, actions, …)"); ``if_empty`` is
    advice added to the message for an empty file.
    """
    try:
        root, aliases = compose(text)
    except yaml.YAMLError as e:
        return Validated(None, [yaml_problem(e, text, filename)], None, {})
    if root is None:
        advice = f"; {if_empty}" if if_empty else ""
        return Validated(None, [Problem(filename, 1, "", f"empty {what}{advice}")], None, {})
    if not isinstance(root, yaml.MappingNode):
        got = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        keys = f" ({example})" if example else ""
        message = f"a {what} must be a mapping of keys{keys}, got {got}"
        return Validated(None, [Problem(filename, root.start_mark.line + 1, "", message)], None, {})
    builder = Builder(filename, aliases=aliases)
    builder.lines[()] = root.start_mark.line + 1
    data = builder.build(root, ())
    problems = builder.problems
    validated: M | None = None
    try:
        validated = model.model_validate(data, context=context)
    except ValidationError as e:
        problems.extend(_problems_from(e, filename, builder.lines, model))
    if problems:
        validated = None
    problems.sort(key=lambda p: p.line or 0)
    return Validated(validated, problems, data, builder.lines)
