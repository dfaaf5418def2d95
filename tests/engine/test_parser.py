"""The condition parser against Falco's grammar: fixture files of accepted and rejected conditions,
plus positions, operator precedence and the nesting limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.engine import RuleSyntaxError, ast, parse_condition

DATA = Path(__file__).parent / "data"


def _cases(name: str) -> list[tuple[str, str]]:
    out = []
    for line in (DATA / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cond, _, expected = line.partition("  =>  ")
        out.append((cond.replace("⏎", "\n"), expected))
    return out


OK = _cases("parse_ok.txt")
ERR = _cases("parse_err.txt")


def test_fixture_sizes() -> None:
    assert len(OK) >= 100 and len(ERR) >= 50


@pytest.mark.parametrize(("cond", "expected"), OK, ids=[c for c, _ in OK])
def test_accepts(cond: str, expected: str) -> None:
    tree = parse_condition(cond)
    assert tree == parse_condition(expected)
    # The tree written back as text parses to the same tree (to_text quotes what needs it).
    assert parse_condition(ast.to_text(tree)) == tree


@pytest.mark.parametrize(("cond", "fragment"), ERR, ids=[c or "<empty>" for c, _ in ERR])
def test_rejects(cond: str, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_condition(cond)
    assert fragment in str(info.value)


def test_precedence_not_and_or() -> None:
    t = parse_condition("not a and b or c")
    assert isinstance(t, ast.Or)
    assert isinstance(t.items[0], ast.And)
    assert t.items[0].items[0] == ast.Not(ast.Ident("a"))
    assert t.items[1] == ast.Ident("c")


def test_check_nodes() -> None:
    t = parse_condition('proc.aname[2] in (a, "b c") and tolower(fd.name) startswith /etc')
    left, right = t.items
    assert left == ast.BinaryCheck(ast.FieldRef("proc.aname", "2"), "in", ast.ListValue(("a", "b c")))
    assert right == ast.BinaryCheck(ast.Transform("tolower", ast.FieldRef("fd.name")), "startswith",
                                    ast.Value("/etc"))


def test_dotted_bare_word_on_the_right_is_a_string() -> None:
    t = parse_condition("proc.name = proc.pname")
    assert t == ast.BinaryCheck(ast.FieldRef("proc.name"), "=", ast.Value("proc.pname"))


def test_val_is_a_field_reference() -> None:
    t = parse_condition("proc.name = val(proc.pname)")
    assert t.right == ast.Transform("val", ast.FieldRef("proc.pname"))


def test_error_positions_are_line_and_column() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_condition("proc.name = bash and\n  proc.pid <")
    assert info.value.pos.line == 2
    with pytest.raises(RuleSyntaxError) as info:
        parse_condition("proc.name in (a,) and b")
    assert (info.value.pos.line, info.value.pos.col) == (1, 17)


def test_node_positions() -> None:
    t = parse_condition("a and\n   proc.name = x")
    assert t.items[1].pos.line == 2 and t.items[1].pos.col == 4


def test_nesting_limit_like_falco() -> None:
    # Falco counts its parser's recursion: each parenthesised level costs 5 levels of 100.
    parse_condition("(" * 18 + "proc.name = x" + ")" * 18)
    with pytest.raises(RuleSyntaxError, match="max depth"):
        parse_condition("(" * 19 + "proc.name = x" + ")" * 19)
    with pytest.raises(RuleSyntaxError, match="max depth"):
        parse_condition("(" * 500 + "a" + ")" * 500)


def test_long_flat_conditions_have_no_depth_problem() -> None:
    tree = parse_condition(" or ".join(f"proc.name = p{i}" for i in range(2000)))
    assert isinstance(tree, ast.Or) and len(tree.items) == 2000
    assert tree.items[-1] == ast.BinaryCheck(ast.FieldRef("proc.name"), "=", ast.Value("p1999"))
