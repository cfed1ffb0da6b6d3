"""YAML files IT writes (policies, fingerprint data), validated by pydantic with line numbers.

The YAML is composed into a node tree that keeps line numbers, turned into
plain data here (catching the duplicate keys that YAML would silently
collapse), validated by a pydantic model, and each pydantic error's location is
mapped back to the node it came from, so every problem reads
``file:line: field: message`` (`errors.Problem`) and all of them are reported
at once.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from clickguard.errors import Problem

type Loc = tuple[str | int, ...]  # a place in the data: ("feeds", 0, "format")

MAX_DEPTH = 64  # lists and mappings inside each other; the shipped files nest 5 deep
# What aliases may add to the data: each value an alias repeats costs 1 + its depth (the
# location kept for its line). Enough for a list of 100 addresses repeated in 250 groups.
ALIAS_BUDGET = 100_000
_TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} lists and mappings inside each other)"


class NestedTooDeeply(yaml.MarkedYAMLError):
    """The text nests lists and mappings deeper than MAX_DEPTH; read no further."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing nesting deeper than MAX_DEPTH as it reads.

    yaml's composer recurses once a level (RecursionError some 330 levels down), and its
    scanner rechecks every open ``[`` or ``{`` of a line at each token (time quadratic in
    the depth). Both stop at the first collection too deep, before either cost grows, so
    reading stays linear in the text whatever it nests.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  # nodes being composed, the one in hand included

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        """Refuse a ``[`` or ``{`` opened inside MAX_DEPTH others."""
        if self.flow_level >= MAX_DEPTH:
            raise NestedTooDeeply(problem=_TOO_DEEP, problem_mark=self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Refuse a node inside MAX_DEPTH others (block nesting, which the scanner lets by)."""
        if self._depth >= MAX_DEPTH:
            self.check_event()  # makes the node's first event current, for its line
            raise NestedTooDeeply(problem=_TOO_DEEP, problem_mark=self.current_event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


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
    at the line of the node that broke it. Without aliases the text bounds the work.
    """

    def __init__(self, filename: str, alias_budget: int = ALIAS_BUDGET) -> None:
        self.filename = filename
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
        if self._over_limit(node, loc):
            return None
        if id(node) in self._open:
            self._problem(node, loc, "an alias refers to itself")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            if isinstance(node, yaml.SequenceNode):
                out: list[object] = []
                for i, item in enumerate(node.value):
                    self.lines[(*loc, i)] = item.start_mark.line + 1
                    out.append(self.build(item, (*loc, i)))
                return out
            try:
                return self._constructor.construct_object(node)
            except yaml.MarkedYAMLError as e:
                self._problem(node, loc, f"cannot read this value: {e.problem}")
                return None
        finally:
            self._open.discard(id(node))

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


def _message(error: ErrorDetails, loc: Loc, root: type[BaseModel]) -> str:
    """A pydantic error in plain English."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = f"(got {describe(error.get('input'))})"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
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
    """Every pydantic error as a Problem at its line and field."""
    out: list[Problem] = []
    for e in error.errors():
        # pydantic appends "[key]" to the location of a bad mapping key; the key's line is right.
        loc: Loc = tuple(part for part in e["loc"] if part != "[key]")
        cause = (e.get("ctx") or {}).get("error")
        placed = cause.problems if isinstance(cause, FieldProblems) else [((), _message(e, loc, root))]
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
        root = yaml.compose(text, Loader=_BoundedLoader)
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
    builder = Builder(filename)
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
