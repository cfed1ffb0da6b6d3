"""Reading YAML with libyaml: the same node tree and lines as yaml's own parser, within the same bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clickguard.errors import PolicyError
from clickguard.policy import yamlfile
from clickguard.policy.model import parse_policy
from clickguard.policy.yamlfile import HINTS, MAX_DEPTH, Builder, NestedTooDeeply, compose, yaml_problem
from tests.harness import REPO

# Texts where libyaml and yaml's pure-Python parser could part: marks of empty values, line
# breaks of every kind, explicit keys, anchors, tags, block scalars, documents.
TRICKY = [
    "a: b\n",
    "a: b",
    "a:\n",
    "a:",
    "a: b\n?",
    "a: b\n? c\n",
    "a:\n  ? \n",
    "? [a, b]\n: c\n",
    "a: |\n  one\n  two\n",
    "a: |\n  one",
    "a: >-\n  folded\n  text\n\nb: 1\n",
    "a: 'quoted\n  over lines'\nb: \"x\\ty\"\n",
    "a: b\r\nc: d\r\n",
    "a: b\rc: d\r",
    "a: b\x85c: d\n",
    "a: b\u2028c: d\u2029e: f",
    "\ufeffa: b\n",
    "# comment\na: b # trailing\n",
    "a: &x [1, 2]\nb: *x\n",
    "a: &x {k: v}\nb: {<<: *x, j: w}\n",
    "a: !!str 1\nb: !!int '2'\nc: !!binary aGk=\nd: !local x\n",
    "a: ! 1\nb: ! ''\nc: ! '1'\nd: ! |\n  1\ne: ! ~\n",
    "a: !\nb: ! \nc: &x !\nd: [! , 1]\n? !\n: 1\n",
    "- !\n",
    "a: [b, {c: d}, [e]]\n",
    "a: {b: , c}\n",
    "- a\n- - b\n  - c\n-\n",
    "---\na: 1\n...\n",
    "--- |\n  text\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: 1\nb: 2\na: 3\n",
    "a: yes\nb: ~\nc: 1.5\nd: 2026-12-03\ne: 0x1f\n",
    "a:\n  - b: 1\n    c: 2\n  - d\n",
    "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n",
    "".join(f"k{n}: v\n" for n in range(300)),
]

# Texts both refuse, at the same line (libyaml words its syntax errors its own way).
BROKEN = [
    "a: [b\n",
    "a: b\n  c: d\n",
    "a:\n\tb: c\n",
    "a: 'open\n",
    "a: *missing\n",
    "a: &x 1\nb: &x 2\n",
    "a: 1\n---\nb: 2\n",
    "[a, b\n",
    "{a: b]\n",
    "a: b: c\n",
    "- a\nb: c\n",
    "a: [b]]\n",
    "ve: cn\nw0]",
    "a: b\n\x07\n",
    "a: b\nc: \udc80\n",
    "a:\n" + "- " * (MAX_DEPTH + 5) + "x\n",
    "a: " + "[" * 3000 + "\n",
    "a: " + "[" * 50 + "\n" + "[" * 2000 + "\n",
    "a: " + "{b: " * 2000,
    "a:\n" + "".join(" " * n + "- \n" for n in range(MAX_DEPTH + 5)),
    # Brackets one a line: yaml's scanner reads one ahead, and counts brackets, not collections.
    "a: " + "[\n" * (MAX_DEPTH + 5),
    "a:\n  b: " + "[\n" * (MAX_DEPTH + 5),
    "[\n" * (MAX_DEPTH + 5),
    "- " + "[\n" * (MAX_DEPTH + 5),
    "--- " + "[\n" * (MAX_DEPTH + 5),
    "a: " + "[ # c\n\n" * (MAX_DEPTH + 5),
    "a: " + "[\n" * (MAX_DEPTH - 1) + "{\n" + "[\n" * 5,
    "a: " + "[\n" * (MAX_DEPTH - 1) + "? [\n" * 5,
    "a: " + "[\n" * (MAX_DEPTH - 2) + "[a]: [\n" * 5,
    "a: &x 1\nb: " + "[\n" * (MAX_DEPTH - 1) + "*x\n",
    "a:\n  - {\n" + "{a: \n" * (MAX_DEPTH + 5),
    "a: " + "[" * MAX_DEPTH + "\n[",
]


def _shape(node: yaml.Node | None, seen: dict[int, int] | None = None) -> object:
    """A node tree as data: kinds, tags, values, styles and lines; a node met again as its number."""
    if node is None:
        return None
    seen = {} if seen is None else seen
    if id(node) in seen:
        return ("again", seen[id(node)])
    seen[id(node)] = len(seen)
    head = (type(node).__name__, node.tag, node.start_mark.line)
    if isinstance(node, yaml.ScalarNode):
        return (*head, node.value, node.style)
    if isinstance(node, yaml.SequenceNode):
        return (*head, [_shape(item, seen) for item in node.value])
    return (*head, [(_shape(key, seen), _shape(value, seen)) for key, value in node.value])


def _outcome(text: str, parser: type[object] | None) -> tuple[str, object]:
    """("tree", its shape) or ("refused", the line of the problem)."""
    try:
        return "tree", _shape(compose(text, parser).root)
    except yaml.YAMLError as e:
        return "refused", yaml_problem(e, text, "f.yaml").line


def _shipped_and_corpus() -> list[Path]:
    """The shipped policies and fingerprints, and the committed fuzz corpus of both YAML targets."""
    found = sorted((REPO / "policies").rglob("*.yaml"))
    for target in ("policy", "fingerprints"):
        found += sorted((REPO / "fuzz" / "corpus" / target).iterdir())
    return found


def test_this_python_reads_yaml_with_libyaml() -> None:
    assert yaml.__with_libyaml__ and yamlfile.WITH_LIBYAML  # else reading is some 40 times slower


@pytest.mark.parametrize("text", TRICKY)
def test_libyaml_composes_the_tree_yaml_composes(text: str) -> None:
    expected = _outcome(text, yamlfile._PureParser)
    assert expected[0] == "tree"
    assert _outcome(text, None) == expected


@pytest.mark.parametrize("path", _shipped_and_corpus(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_files_and_the_fuzz_corpus_read_the_same_with_libyaml(path: Path) -> None:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        pytest.skip("not UTF-8: refused before YAML")
    expected = _outcome(text, yamlfile._PureParser)
    found = _outcome(text, None)
    if expected[0] == found[0] == "tree":
        assert found == expected
    elif found[0] == "refused":
        # libyaml is stricter about the characters of a tag; anything else refused by one is by both.
        assert expected[0] == "refused" or "!" in text
        assert expected[0] != "refused" or found == expected


@pytest.mark.parametrize("text", BROKEN)
def test_libyaml_refuses_at_the_line_yaml_refuses(text: str) -> None:
    expected = _outcome(text, yamlfile._PureParser)
    assert expected[0] == "refused"
    assert _outcome(text, None) == expected


@pytest.mark.parametrize("text", [
    "a: b\n\x07\n",  # a control character
    "a: b\nc: \udc80\n",  # what surrogateescape makes of a byte that is not UTF-8
    "a: é\nb: \x00",
])
def test_a_character_yaml_does_not_allow_gets_yamls_own_error(text: str) -> None:
    with pytest.raises(yaml.reader.ReaderError) as raised:
        compose(text)
    with pytest.raises(yaml.reader.ReaderError) as pure:
        compose(text, yamlfile._PureParser)
    assert str(yaml_problem(raised.value, text, "f")) == str(yaml_problem(pure.value, text, "f"))
    assert "is not allowed" in str(yaml_problem(raised.value, text, "f"))


@pytest.mark.parametrize(("text", "line"), [
    # One line opening more collections than libyaml's own limit (1,000) within its read-ahead.
    ("a: " + "[" * 100_000, 1),
    ("a: " + "{b: " * 100_000, 1),
    ("a:\n  b: " + "[" * 1500 + "\n", 2),
    # Block nesting: refused at the first node too deep, whatever follows (here a syntax error).
    ("a:\n" + "- " * 100_000 + "x\n]", 2),
    ("a:\n" + "".join(" " * n + "- \n" for n in range(100)) + "]", MAX_DEPTH + 1),
    # Through an alias: the alias itself sits too deep.
    ("a: &x 1\nb: " + "[" * MAX_DEPTH + "*x" + "]" * MAX_DEPTH + "\n", 2),
])
def test_nesting_is_refused_at_the_first_level_too_deep(text: str, line: int) -> None:
    with pytest.raises(NestedTooDeeply) as raised:
        compose(text)
    problem = yaml_problem(raised.value, text, "f.yaml")
    assert (problem.line, problem.message) == (line, yamlfile._TOO_DEEP)


def test_where_libyaml_is_more_lenient_than_yaml_it_reads_the_same_values() -> None:
    # yaml's own scanner refuses a tab after a value; libyaml (and YAML 1.2) reads it as a space.
    text = "a: 1\t\nb: [x,\ty]\n"
    with pytest.raises(yaml.YAMLError):
        compose(text, yamlfile._PureParser)
    composed = compose(text)
    assert composed.root is not None
    assert Builder("f.yaml", aliases=False).build(composed.root, ()) == {"a": 1, "b": ["x", "y"]}


def test_an_alias_is_the_node_of_its_anchor_and_is_reported() -> None:
    plain = compose("a: [1, 2]\nb: c\n")
    aliased = compose("a: &x [1, 2]\nb: *x\n")
    assert not plain.aliases and aliased.aliases
    assert isinstance(aliased.root, yaml.MappingNode)
    (_, first), (_, second) = aliased.root.value
    assert first is second


def test_an_alias_inside_its_own_anchor_is_a_problem_not_a_loop() -> None:
    composed = compose("a: &x [1, *x]\n")
    builder = Builder("f.yaml", aliases=composed.aliases)
    assert composed.root is not None
    assert builder.build(composed.root, ()) == {"a": [1, None]}
    assert [str(p) for p in builder.problems] == ["f.yaml:1: a[1]: an alias refers to itself"]


def test_billion_laughs_stays_within_the_alias_budget() -> None:
    text = "x0: &a0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"x{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 10))
    composed = compose(text)
    assert composed.root is not None
    builder = Builder("f.yaml", alias_budget=1000, aliases=composed.aliases)
    builder.build(composed.root, ())
    assert [p.message for p in builder.problems if "aliases repeat too much" in p.message] != []
    assert len(builder.lines) < 2000  # stopped at the budget, not 10**9 values later


def test_without_aliases_every_scalar_is_read_as_yaml_reads_it() -> None:
    text = "a: yes\nb: ~\nc: 1.5\nd: 2026-12-03\ne: 0x1f\nf: '7'\ng: !!binary aGk=\nh: text\n"
    composed = compose(text)
    assert composed.root is not None and not composed.aliases
    assert Builder("f.yaml", aliases=False).build(composed.root, ()) == yaml.safe_load(text)



def test_the_first_unknown_keys_get_a_hint_and_the_rest_are_still_problems() -> None:
    text = "version: 1\n" + "".join(f"vershion{n}: 1\n" for n in range(HINTS + 5))
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, filename="p.yaml", base_dir=Path("."))
    messages = [p.message for p in raised.value.problems]
    assert len(messages) == HINTS + 5
    assert all(m.startswith("unknown key; did you mean 'version'? (allowed here: ") for m in messages[:HINTS])
    assert all(m.startswith("unknown key (allowed here: ") for m in messages[HINTS:])
