"""Tree passes: macro expansion (bounded, whatever the shape of the macros), and the kinds of
compile errors the loader acts on."""

from __future__ import annotations

import pytest

from sensor.engine import ast, parse_condition, passes
from sensor.engine.passes import MAX_DEPTH, MAX_NODES, CompileError, Macros, Problem


def chain(n: int, body: str) -> dict[str, ast.Node]:
    """m0 .. m{n-1}; `body` is m{i}'s condition with {prev} for m{i-1} and {i} for i."""
    out = {"m0": parse_condition("proc.name = a0")}
    for i in range(1, n):
        out[f"m{i}"] = parse_condition(body.format(prev=f"m{i - 1}", i=i))
    return out


def depth(node: ast.Node) -> int:
    return 1 + max((depth(c) for c in node.children()), default=0)


def test_a_long_chain_of_macros_expands_without_recursion() -> None:
    macros = Macros(chain(3000, "{prev} or proc.name = a{i}"))
    used: set[str] = set()
    tree = macros.expand(parse_condition("evt.type = execve and m2999"), used)
    assert len(used) == 3000
    # `or` chains are spliced as they expand: a flat tree, as fold would make it.
    assert isinstance(tree, ast.And) and isinstance(tree.items[1], ast.Or)
    assert len(tree.items[1].items) == 3000 and depth(tree) == 4


def test_a_chain_of_macros_that_only_rename() -> None:
    tree = Macros(chain(3000, "{prev}")).expand(parse_condition("m2999"))
    assert tree == parse_condition("proc.name = a0")


def test_nesting_past_the_limit_is_a_clear_error() -> None:
    macros = Macros(chain(3000, "not ({prev} and proc.name = a{i})"))
    with pytest.raises(CompileError) as info:
        macros.expand(parse_condition("m2999"))
    err = info.value
    assert err.kind is Problem.TOO_DEEP
    assert f"nests more than {MAX_DEPTH} levels deep" in err.message and "\n" not in err.message
    # The first macro past the limit is named; everything below it expanded fine.
    name = err.message.split("'")[1]
    assert depth(macros.expand(parse_condition(f"m{int(name[1:]) - 1}"))) <= MAX_DEPTH


def test_a_macro_used_twice_per_level_cannot_grow_without_bound() -> None:
    macros = Macros(chain(40, "({prev} or proc.name = x) and ({prev} or proc.name = y)"))
    with pytest.raises(CompileError) as info:
        macros.expand(parse_condition("m39"))
    assert info.value.kind is Problem.TOO_DEEP and str(MAX_NODES) in info.value.message


def test_loops_and_undefined_macros_have_their_kind() -> None:
    loop = {"a": parse_condition("b and proc.name = x"), "b": parse_condition("not a")}
    with pytest.raises(CompileError, match="references itself: a -> b -> a") as info:
        Macros(loop).expand(parse_condition("a"))
    assert info.value.kind is Problem.MACRO_LOOP
    with pytest.raises(CompileError, match="Undefined macro 'nope'") as info:
        Macros({"a": parse_condition("nope")}).expand(parse_condition("a"))
    assert info.value.kind is Problem.UNDEFINED_MACRO
    assert (info.value.pos.line, info.value.pos.col) == (1, 1)


def test_expansions_are_shared_between_rules() -> None:
    macros = Macros({"m": parse_condition("proc.name = a"), "n": parse_condition("m and fd.num > 1")})
    one = macros.expand(parse_condition("n"))
    two = macros.expand(parse_condition("evt.type = open and n"))
    assert isinstance(two, ast.And) and two.items[1] is one.items[0]   # type: ignore[attr-defined]
    assert passes.fold(two) == parse_condition("evt.type = open and proc.name = a and fd.num > 1")
