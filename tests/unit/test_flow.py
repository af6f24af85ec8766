"""The flow language: grammar, meaning, errors with columns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.spec.flow import FlowError, Name, Par, Seq, Sum, parse, plan


def closure(p: object) -> dict[str, set[str]]:
    """For each node of a plan, every node that must finish before it."""
    after = {n.name: set(n.after) for n in p.nodes}  # type: ignore[attr-defined]
    out: dict[str, set[str]] = {}

    def reach(name: str) -> set[str]:
        if name not in out:
            out[name] = set()
            for d in after[name]:
                out[name] |= {d} | reach(d)
        return out[name]

    for name in after:
        reach(name)
    return out


def test_precedence_bar_binds_tighter_than_semicolon_and_plus_tightest() -> None:
    assert parse("a | b ; c") == Seq((Par((Name("a", 1), Name("b", 5))), Name("c", 9)))
    assert parse("a + b | c") == Par((Sum((Name("a", 1), Name("b", 5)), 1), Name("c", 9)))
    assert parse("a | (b ; c)") == Par((Name("a", 1), Seq((Name("b", 6), Name("c", 10)))))


def test_cloudmesh_example() -> None:
    p = plan("(a | b | c); d; a + b + c + d")
    nodes = {n.name: n for n in p.nodes}
    assert nodes["a"].after == nodes["b"].after == nodes["c"].after == []
    assert nodes["d"].after == ["a", "b", "c"]
    assert nodes["sum-1"].operands == ["a", "b", "c", "d"]
    assert p.final == "sum-1"


def test_a_name_used_again_refers_to_what_it_did() -> None:
    p = plan("a; b; a; c")
    assert [n.name for n in p.nodes] == ["a", "b", "c"]  # a runs once
    assert closure(p)["c"] == {"a", "b"}


def test_nesting() -> None:
    p = plan("(a; (b | c)); (d | e + f)")
    c = closure(p)
    assert c["b"] == c["c"] == {"a"}
    assert c["d"] == {"a", "b", "c"} and c["sum-1"] >= {"e", "f", "a", "b", "c"}


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("(a | b; c", 10, "')' is missing"),
        ("a | b)", 6, "without a matching '('"),
        ("a ; ; b", 5, "missing before ';'"),
        ("a |", 4, "missing at the end"),
        ("a b", 3, "unexpected 'b'"),
        ("a & b", 3, "unexpected '&'"),
        ("", 1, "empty"),
        ("a + (b | c)", 1, "a reduction adds named tasks"),
    ],
)
def test_errors_point_at_the_column(text: str, column: int, words: str) -> None:
    with pytest.raises(FlowError) as info:
        parse(text) if "reduction" not in words else plan(text)
    assert info.value.column == column
    assert words in str(info.value)
    assert info.value.pointer().splitlines()[1] == " " * (column - 1) + "^"


def test_unknown_names_are_named() -> None:
    with pytest.raises(FlowError, match="no task named 'zz'") as info:
        plan("a; zz", known={"a"})
    assert info.value.column == 4


# -- generated expressions against a simple reference reading ---------------

names = st.sampled_from(list("abcdef"))


def exprs() -> st.SearchStrategy[str]:
    leaf = names
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + " | ".join(xs) + ")"),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + " ; ".join(xs) + ")"),
            st.lists(names, min_size=2, max_size=3).map(lambda xs: "(" + " + ".join(xs) + ")"),
        ),
        max_leaves=8,
    )


def reference(text: str) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """Read the flow the plain way: what must be complete before each first use."""
    tree = parse(text)
    preds: dict[str, set[str]] = {}
    operands: dict[str, list[str]] = {}
    count = 0

    def run(e: object, done: frozenset[str]) -> frozenset[str]:
        nonlocal count
        if isinstance(e, Name):
            if e.name not in preds:
                preds[e.name] = set(done)
            # Whatever waits for a task waits for all it waited for.
            return done | {e.name} | preds[e.name]
        if isinstance(e, Seq):
            for step in e.steps:
                done = run(step, done)
            return done
        if isinstance(e, Par):
            out = done
            for g in e.groups:
                out = out | run(g, done)
            return out
        assert isinstance(e, Sum)
        after = done
        for t in e.terms:
            after = after | run(t, done)
        count += 1
        name = f"sum-{count}"
        preds[name] = set(after) | {p for t in e.terms for p in preds[t.name]}  # type: ignore[attr-defined]
        operands[name] = [t.name for t in e.terms]  # type: ignore[attr-defined]
        return after | {name}

    run(tree, frozenset())
    return preds, operands


@settings(max_examples=300, deadline=None)
@given(exprs())
def test_generated_flows_give_the_reference_dag(text: str) -> None:
    p = plan(text)
    want, operands = reference(text)
    got = closure(p)
    assert {n: sorted(v) for n, v in got.items()} == {n: sorted(v) for n, v in want.items()}
    assert {n.name: n.operands for n in p.nodes if n.is_reduction} == operands
    # The plan's order runs every node after all it waits for.
    seen: set[str] = set()
    for n in p.nodes:
        assert set(n.after) <= seen
        seen.add(n.name)
