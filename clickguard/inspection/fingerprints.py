"""Appliance fingerprints: does the responding server look like a router, camera, DVR, NAS, …?

The facts live in YAML files under ``policies/fingerprints/`` (one file per device
class), each fingerprint a set of regular expressions over traits of one HTTP
response: the ``Server`` header, the ``WWW-Authenticate`` header (``realm``), the
page ``<title>``, the first 4 KiB of the body, or any other header. All traits a
fingerprint gives must match. Every fingerprint carries examples that it must
match, so a bad edit fails at load time, at its line (``file:line: field: message``,
every problem of every file at once, as `errors.InputError`).

This runs on every response through the proxy, and almost every response (nginx,
Apache, cloudflare, …) matches nothing. So the patterns of each trait are screened
together (`_Prefilter`): the value is lower-cased once, patterns that start with a
literal are looked up by the value's first bytes, and the rest are joined into one
alternation. A response that matches nothing costs about one search per trait
present, whatever the size of the database; only the patterns that pass the screen
are run one by one.

A ``device`` fingerprint names a device or its firmware; a ``software`` one names
embedded web-server software that also runs on ordinary hosts (lighttpd, Boa,
GoAhead, …), a weaker hint. A device match beats a software match; otherwise the
first fingerprint in load order wins.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal, NamedTuple, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clickguard.errors import InputError, Problem
from clickguard.policy.yamlfile import FieldProblems, Loc, describe, line_of, render, validate
from clickguard.shipped import FINGERPRINTS
from clickguard.vocab import DeviceClass as DeviceClass

type Strength = Literal["device", "software"]

# The fingerprint files shipped with clickguard; IT's own files load after them.
SHIPPED_FINGERPRINTS = FINGERPRINTS
BODY_LIMIT = 4096  # characters of body text the body trait (and the title search) looks at
EVIDENCE_LIMIT = 120  # characters of matched value kept as evidence


class ResponseTraits(NamedTuple):
    """The parts of one HTTP response that fingerprints look at."""

    server: str | None
    realm: str | None  # the WWW-Authenticate header value
    title: str | None  # <title> text, entities decoded, whitespace collapsed
    headers: Mapping[str, str]  # lower-case name -> value (comma-joined if repeated)
    body: str  # decoded text of the first part of the body ('' if none)


@dataclass(frozen=True, slots=True)
class DeviceMatch:
    """A fingerprint that matched a response, and the value that showed it."""

    name: str
    device_class: DeviceClass
    strength: Strength
    source: str
    trait: str  # "server" | "realm" | "title" | "body" | "header:<name>"
    evidence: str  # the matched value, at most EVIDENCE_LIMIT characters


_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def html_title(text: str) -> str | None:
    """The first <title> in the first 4096 characters of decoded HTML, unescaped and collapsed."""
    found = _TITLE.search(text, 0, BODY_LIMIT)
    if found is None:
        return None
    # str.split() also splits on the no-break spaces that &nbsp; becomes.
    return " ".join(html.unescape(found[1]).split())


def traits_from(headers: Iterable[tuple[str, str]], text: str) -> ResponseTraits:
    """The traits of a response from its headers and its decoded body text ('' if none)."""
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        joined.setdefault(name.lower(), []).append(value)
    flat = {name: ", ".join(values) for name, values in joined.items()}
    content_type = flat.get("content-type", "").lower()
    # An RSS or XML body has <title> elements too; only HTML (or an untyped body) has a page title.
    title = html_title(text) if not content_type or "html" in content_type else None
    return ResponseTraits(
        server=flat.get("server"),
        realm=flat.get("www-authenticate"),
        title=title,
        headers=MappingProxyType(flat),
        body=text[:BODY_LIMIT],
    )


# --- the YAML schema ------------------------------------------------------------------------

# Patterns of one trait are joined into one alternation, so a pattern must not depend on its
# own group numbers or names, nor set flags for the whole expression.
_UNCOMBINABLE = re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]|\(\?P[<=]")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _pattern(value: object) -> re.Pattern[str]:
    """A trait pattern: a case-insensitive Python regex that can join an alternation."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a regular expression (got {describe(value)})")
    if _UNCOMBINABLE.search(value):
        raise ValueError("backreferences and named groups are not allowed: the patterns of a trait "
                         "are combined into one search; use (…) or (?:…)")
    try:
        compiled = re.compile(value, re.IGNORECASE)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e.msg} at position {e.pos}") from None
    try:
        re.compile(f"x|(?:{value})")
    except re.error as e:
        raise ValueError(f"cannot be combined with other patterns: {e.msg} "
                         "(patterns are already case-insensitive; leave out inline flags)") from None
    if compiled.search("") is not None:
        raise ValueError("matches the empty text, so it would match every response")
    return compiled


def _header_name(value: object) -> str:
    """An HTTP header name, lower-cased like ResponseTraits.headers."""
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise ValueError(f"must be an HTTP header name such as X-Powered-By (got {describe(value)})")
    return value.lower()


def _text(value: object) -> str:
    """Non-blank text without surrounding whitespace."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be non-empty text (got {describe(value)})")
    return value.strip()


type Pattern = Annotated[re.Pattern[str], PlainValidator(_pattern)]
type HeaderName = Annotated[str, PlainValidator(_header_name)]
type Text = Annotated[str, PlainValidator(_text)]


class _Model(BaseModel):
    """Base of the fingerprint models: unknown keys are errors, and loaded data never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HeaderMatch(_Model):
    """A pattern over one named response header."""

    name: HeaderName
    pattern: Pattern


class MatchSpec(_Model):
    """The traits a fingerprint looks at; every one given must match."""

    server: Pattern | None = None
    realm: Pattern | None = None
    title: Pattern | None = None
    body: Pattern | None = None
    header: HeaderMatch | None = None

    @model_validator(mode="after")
    def _some_trait(self) -> Self:
        """A fingerprint without traits would match everything."""
        if not self.checks():
            raise ValueError("give at least one of server, realm, title, body, header")
        return self

    def checks(self) -> tuple[_Check, ...]:
        """The traits as (key, pattern) pairs, in the order evidence is taken from."""
        out = [_Check(key, pattern) for key, pattern in
               (("server", self.server), ("realm", self.realm), ("title", self.title))
               if pattern is not None]
        if self.header is not None:
            out.append(_Check(f"header:{self.header.name}", self.header.pattern))
        if self.body is not None:
            out.append(_Check("body", self.body))
        return tuple(out)


class HeaderExample(_Model):
    """One response header of an example."""

    name: HeaderName
    value: str


class Example(_Model):
    """Trait values of a real response the fingerprint must match."""

    server: str | None = None
    realm: str | None = None
    title: str | None = None
    body: str | None = None
    header: HeaderExample | None = None

    @model_validator(mode="after")
    def _some_trait(self) -> Self:
        """An empty example shows nothing."""
        if all(v is None for v in (self.server, self.realm, self.title, self.body, self.header)):
            raise ValueError("give at least one of server, realm, title, body, header")
        return self

    def traits(self) -> ResponseTraits:
        """The example as the traits of a response."""
        headers = {} if self.header is None else {self.header.name: self.header.value}
        return ResponseTraits(self.server, self.realm, self.title, headers, self.body or "")


class Fingerprint(_Model):
    """One fingerprint: what it names, where the fact comes from, what it matches."""

    name: Text
    device_class: DeviceClass = Field(alias="class")
    strength: Strength
    source: Text
    match: MatchSpec
    examples: tuple[Example, ...]

    @field_validator("examples")
    @classmethod
    def _examples_match(cls, examples: tuple[Example, ...],
                        info: ValidationInfo) -> tuple[Example, ...]:
        """Every example is matched by this fingerprint, or the data is wrong."""
        if not examples:
            raise ValueError("list at least one example of a response this fingerprint matches")
        match = info.data.get("match")
        if not isinstance(match, MatchSpec):
            return examples  # the match itself is wrong; that problem is reported on its own
        found: list[tuple[Loc, str]] = []
        for i, example in enumerate(examples):
            traits = example.traits()
            for check in match.checks():
                value = _value(traits, check.key)
                if value is None:
                    found.append(((i,), f"not matched by this fingerprint: the example gives no {check.key}"))
                    break
                if check.pattern.search(value) is None:
                    found.append(((i,), "not matched by this fingerprint: "
                                  f"{check.key} {value!r} does not match {check.pattern.pattern!r}"))
                    break
        if found:
            raise FieldProblems(found)
        return examples


class FingerprintFile(_Model):
    """A whole fingerprint file."""

    version: Literal[1]
    fingerprints: tuple[Fingerprint, ...]

    @field_validator("fingerprints")
    @classmethod
    def _not_empty(cls, fingerprints: tuple[Fingerprint, ...]) -> tuple[Fingerprint, ...]:
        """An empty file is almost always a mistake (all entries commented out, wrong key)."""
        if not fingerprints:
            raise ValueError("list at least one fingerprint")
        return fingerprints


# --- matching -------------------------------------------------------------------------------


class _Check(NamedTuple):
    """One trait of a fingerprint and the pattern its value must match."""

    key: str  # "server" | "realm" | "title" | "body" | "header:<name>"
    pattern: re.Pattern[str]


def _value(traits: ResponseTraits, key: str) -> str | None:
    """The value of one trait of a response, None if the response lacks it."""
    if key == "server":
        return traits.server
    if key == "realm":
        return traits.realm
    if key == "title":
        return traits.title
    if key == "body":
        return traits.body[:BODY_LIMIT] if traits.body else None
    return traits.headers.get(key.removeprefix("header:"))


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A validated fingerprint, ready to test."""

    name: str
    device_class: DeviceClass
    strength: Strength
    source: str
    checks: tuple[_Check, ...]

    def found(self, traits: ResponseTraits) -> DeviceMatch:
        """The match report, its evidence taken from the first trait (the matched span of a body)."""
        first = self.checks[0]
        value = _value(traits, first.key) or ""
        if first.key == "body" and (span := first.pattern.search(value)) is not None:
            value = span[0]
        return DeviceMatch(self.name, self.device_class, self.strength, self.source, first.key,
                           value[:EVIDENCE_LIMIT])


type _Search = Callable[[str], re.Match[str] | None]


class _Screened(NamedTuple):
    """A pattern without a literal prefix, and the literal any match of it contains, if known."""

    fingerprint: int  # its index, in load order
    search: _Search
    inner: bytes | None  # lower-cased ASCII every matching value contains


# Non-ASCII characters that re.IGNORECASE matches with an ASCII letter: İ ı ~ i, ſ ~ s, K (Kelvin) ~ k.
_FOLD_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")
_MAX_PROBES = 16  # literals a short trait value is probed for before one regex is cheaper
_HEAD = 3  # bytes of a literal prefix used to look it up; _required_literal finds 3 or more


def _combined(patterns: list[str]) -> _Search:
    """One case-insensitive search for any of the patterns."""
    anchored = [p[1:] for p in patterns if _anchored(p)]
    floating = [p for p in patterns if not _anchored(p)]
    # Anchored patterns share one ^ branch, tried once at the start instead of at every position.
    parts = ["^(?:" + "|".join(f"(?:{p})" for p in anchored) + ")"] if anchored else []
    parts += (f"(?:{p})" for p in floating)
    return re.compile("|".join(parts), re.IGNORECASE).search


class _Prefilter:
    """One trait's patterns, screened so that a value no pattern matches costs about one search.

    `re` scans case-insensitively about ten times slower than it finds plain text. So the
    value is lower-cased once (as UTF-8 bytes, which lower-cases ASCII letters only); the
    patterns anchored on a literal prefix are found by one dict lookup on the value's first
    bytes; unanchored patterns with a
    literal are screened by ``in`` (on the body always, on short values while few); all the
    others are joined into one regex. Only the patterns that pass are run. For ASCII
    literals this is exact, unless the value holds one of the few non-ASCII letters that
    match an ASCII one; then the patterns run as plain regexes.
    """

    __slots__ = ("_by_head", "_inner", "_others", "_rest", "_screened", "_search", "key")

    def __init__(self, key: str, checks: list[tuple[int, re.Pattern[str]]]) -> None:
        self.key = key
        by_prefix: dict[bytes, list[tuple[int, _Search]]] = {}
        floating: list[tuple[int, re.Pattern[str], bytes | None]] = []
        for index, pattern in checks:
            text = _required_literal(pattern.pattern)
            literal = text.encode("ascii") if text is not None else None
            if literal is not None and _anchored(pattern.pattern):
                by_prefix.setdefault(literal, []).append((index, pattern.search))
            else:
                floating.append((index, pattern, literal))
        # Probing a short value for many literals costs more than one regex over it (measured).
        probe = key == "body" or sum(lit is not None for _, _, lit in floating) <= _MAX_PROBES
        self._others = tuple(_Screened(index, pattern.search, literal if probe else None)
                             for index, pattern, literal in floating)
        self._inner = tuple(sorted({s.inner for s in self._others if s.inner is not None}))
        rest = [pattern.pattern for (_, pattern, _), s in zip(floating, self._others, strict=True)
                if s.inner is None]
        self._rest = _combined(rest) if rest else None
        # Prefixes by their first bytes: one dict lookup finds the few a value can start with.
        by_head: dict[bytes, list[tuple[bytes, tuple[tuple[int, _Search], ...]]]] = {}
        for prefix, entries in by_prefix.items():
            by_head.setdefault(prefix[:_HEAD], []).append((prefix, tuple(entries)))
        self._by_head = {head: tuple(group) for head, group in by_head.items()}
        self._screened = tuple((index, pattern.search) for index, pattern in checks)
        self._search = _combined([pattern.pattern for _, pattern in checks])

    def matching(self, value: str) -> list[int]:
        """Indexes of the fingerprints whose pattern on this trait matches the value."""
        if not value.isascii() and any(c in value for c in _FOLD_TO_ASCII):
            if self._search(value) is None:
                return []
            return [index for index, search in self._screened if search(value) is not None]
        lowered = value.encode("utf-8", "surrogatepass").lower()
        found: list[int] = []
        for prefix, entries in self._by_head.get(lowered[:_HEAD], ()):
            if lowered.startswith(prefix):
                found += (index for index, search in entries if search(value) is not None)
        if self._floating_hit(value, lowered):
            found += (s.fingerprint for s in self._others
                      if (s.inner is None or s.inner in lowered) and s.search(value) is not None)
        return found

    def _floating_hit(self, value: str, lowered: bytes) -> bool:
        """Whether any pattern without a literal prefix might match."""
        for literal in self._inner:  # a loop: any() over a generator costs several times more
            if literal in lowered:
                return True
        return self._rest is not None and self._rest(value) is not None


def _anchored(pattern: str) -> bool:
    """Whether every match of a pattern starts at the beginning of the value."""
    return pattern.startswith("^") and not _top_level_alternation(pattern)


_META = frozenset(".^$*+?{}[]\\|()")


def _top_level_alternation(pattern: str) -> bool:
    """Whether a pattern has a `|` outside any group or class (so a leading ^ covers one branch only)."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1
            i += pattern.startswith("^", i)
            i += pattern.startswith("]", i)  # a ] first in a class is a plain character
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _required_literal(pattern: str) -> str | None:
    """Lower-cased ASCII text at the start of every match of the pattern, if easy to see (3+ chars)."""
    if _top_level_alternation(pattern):
        return None
    i = 0
    while pattern.startswith(("^", "\\b", "\\A"), i):  # zero-width: the literal follows
        i += 1 if pattern[i] == "^" else 2
    chars: list[str] = []
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1].isascii() \
                and not pattern[i + 1].isalnum():
            chars.append(pattern[i + 1])
            i += 2
        elif c not in _META:
            chars.append(c)
            i += 1
        else:
            break
        if i < len(pattern) and pattern[i] in "*?{":
            chars.pop()  # the character just read is optional or counted
            break
        if i < len(pattern) and pattern[i] == "+":
            break
    literal = "".join(chars)
    return literal.lower() if len(literal) >= _HEAD and literal.isascii() else None


class FingerprintDB:
    """Loaded fingerprints, matched against response traits at the cost of one search per trait."""

    def __init__(self, fingerprints: Iterable[_Loaded]) -> None:
        self._fingerprints = tuple(fingerprints)
        by_trait: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        for index, fingerprint in enumerate(self._fingerprints):
            for check in fingerprint.checks:
                by_trait.setdefault(check.key, []).append((index, check.pattern))
        self._prefilters = tuple(_Prefilter(key, checks) for key, checks in by_trait.items())

    @classmethod
    def load(cls, paths: Iterable[Path]) -> FingerprintDB:
        """Fingerprints from files and directories (their *.yaml, sorted); InputError lists every problem."""
        problems: list[Problem] = []
        loaded: list[_Loaded] = []
        first_seen: dict[str, str] = {}  # name -> "file:line" where it was first defined
        for path in _expand(paths, problems):
            text = _read(path, problems)
            if text is None:
                continue
            parsed = validate(text, str(path), FingerprintFile, what="fingerprint file",
                              example="version, fingerprints")
            file_problems = [_our_words(p) for p in parsed.problems]
            file_problems += _duplicates(parsed.data, parsed.lines, str(path), first_seen)
            file_problems.sort(key=lambda p: p.line or 0)
            problems += file_problems
            if parsed.model is not None:
                loaded += (_Loaded(f.name, f.device_class, f.strength, f.source, f.match.checks())
                           for f in parsed.model.fingerprints)
        if problems:
            raise InputError(problems)
        return cls(loaded)

    @classmethod
    def default(cls) -> FingerprintDB:
        """The fingerprints shipped in policies/fingerprints, loaded once."""
        return _default_db()

    def match(self, traits: ResponseTraits) -> DeviceMatch | None:
        """The best fingerprint for a response: the first device match, else the first software one."""
        best: _Loaded | None = None
        for fingerprint in self._matched(traits):
            if fingerprint.strength == "device":
                best = fingerprint
                break
            best = best or fingerprint
        return best.found(traits) if best is not None else None

    def matches(self, traits: ResponseTraits) -> list[DeviceMatch]:
        """Every fingerprint that matches a response, best first (devices, then load order)."""
        found = self._matched(traits)
        found.sort(key=lambda f: f.strength != "device")  # stable: load order within each strength
        return [f.found(traits) for f in found]

    def _matched(self, traits: ResponseTraits) -> list[_Loaded]:
        """The fingerprints all of whose traits match, in load order."""
        matched: dict[int, int] = {}  # fingerprint index -> how many of its traits matched
        for prefilter in self._prefilters:
            value = _value(traits, prefilter.key)
            if value:
                for index in prefilter.matching(value):
                    matched[index] = matched.get(index, 0) + 1
        return [self._fingerprints[index] for index in sorted(matched)
                if matched[index] == len(self._fingerprints[index].checks)]

    def names(self) -> list[str]:
        """The names of the loaded fingerprints, in load order."""
        return [fingerprint.name for fingerprint in self._fingerprints]

    def without(self, names: Iterable[str]) -> FingerprintDB:
        """The same database without the named fingerprints (to measure what the rest still recognises)."""
        left_out = frozenset(names)
        return FingerprintDB(f for f in self._fingerprints if f.name not in left_out)

    def __len__(self) -> int:
        """How many fingerprints are loaded."""
        return len(self._fingerprints)

    def count_by_class(self) -> dict[DeviceClass, int]:
        """How many fingerprints name each device class (every class, zero included)."""
        counts = dict.fromkeys(DeviceClass, 0)
        for fingerprint in self._fingerprints:
            counts[fingerprint.device_class] += 1
        return counts


@functools.cache
def _default_db() -> FingerprintDB:
    """The shipped database; loaded on first use, then shared."""
    return FingerprintDB.load([SHIPPED_FINGERPRINTS])


def _expand(paths: Iterable[Path], problems: list[Problem]) -> list[Path]:
    """Files to load: files as given, directories as their *.yaml files in name order."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.yaml") if p.is_file())
            if not found:
                problems.append(Problem(str(path), None, "", "no fingerprint files (*.yaml) here"))
            out += found
        else:
            out.append(path)
    return out


def _read(path: Path, problems: list[Problem]) -> str | None:
    """A file's text, or None with the problem that stopped reading it."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        problems.append(Problem(str(path), None, "", f"cannot read the file: {e.strerror or e}"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(Problem(str(path), raw.count(b"\n", 0, e.start) + 1, "", "not UTF-8 text"))
        return None


def _our_words(problem: Problem) -> Problem:
    """A problem worded with the YAML key `class`, not the Python field name behind it."""
    # yamlfile lists allowed keys by field name; `class` is a Python keyword, hence the alias.
    return problem._replace(message=problem.message.replace("device_class", "class"))


def _duplicates(data: object, lines: Mapping[Loc, int], filename: str,
                first_seen: dict[str, str]) -> list[Problem]:
    """Names defined twice, in this file or an earlier one; read from the plain data, valid or not."""
    items = data.get("fingerprints") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    out: list[Problem] = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip():
            continue
        loc: Loc = ("fingerprints", i, "name")
        line = line_of(loc, lines)
        key = name.strip()
        if key in first_seen:
            out.append(Problem(filename, line, render(loc),
                               f"duplicate fingerprint name {key!r} (first at {first_seen[key]})"))
        else:
            first_seen[key] = f"{filename}:{line}"
    return out
