"""The flow language: ``(a | b | c); d; a + b + c + d``.

Grammar, loosest first::

    flow  := step (';' step)*        steps run in sequence: each waits for all of the one before
    step  := group ('|' group)*      groups run in parallel
    group := term ('+' term)*        two or more terms: a reduction of their results
    term  := NAME | '(' flow ')'

A name's first use runs that task; a later use refers to what it produced
(its result, in a reduction) and runs nothing again. A reduction is a node of
its own, computed by the boss from its operands' results.

This module is pure: it turns text into a :class:`Plan` and knows nothing of
files or tasks beyond their names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shoal.exceptions import BadInput

__all__ = ["FlowError", "Node", "Plan", "parse", "plan"]

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z0-9_.-]+)|(?P<op>[|;+()]))")


class FlowError(BadInput):
    """A flow that does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, column: int, text: str) -> None:
        self.column = column
        self.text = text
        super().__init__(f"column {column}: {message}")

    def pointer(self) -> str:
        """The flow with a caret under the column."""
        return f"{self.text}\n{' ' * (self.column - 1)}^"


# -- syntax --------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    name: str
    column: int


@dataclass(frozen=True)
class Seq:
    steps: tuple[Expr, ...]


@dataclass(frozen=True)
class Par:
    groups: tuple[Expr, ...]


@dataclass(frozen=True)
class Sum:
    terms: tuple[Expr, ...]
    column: int


Expr = Name | Seq | Par | Sum


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
                raise FlowError(f"unexpected {text[col - 1]!r}", col, text)
            kind = "name" if m.group("name") else "op"
            value = m.group(kind)
            self.tokens.append((kind, value, m.start(kind) + 1))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def end_column(self) -> int:
        return len(self.text.rstrip()) + 1

    def expect_term(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise FlowError(
                "a task name or '(' is missing at the end", self.end_column(), self.text
            )
        if tok[0] == "op" and tok[1] not in "(":
            raise FlowError(f"a task name or '(' is missing before {tok[1]!r}", tok[2], self.text)
        return tok

    def flow(self) -> Expr:
        steps = [self.step()]
        while (tok := self.peek()) is not None and tok[1] == ";":
            self.i += 1
            steps.append(self.step())
        return steps[0] if len(steps) == 1 else Seq(tuple(steps))

    def step(self) -> Expr:
        groups = [self.group()]
        while (tok := self.peek()) is not None and tok[1] == "|":
            self.i += 1
            groups.append(self.group())
        return groups[0] if len(groups) == 1 else Par(tuple(groups))

    def group(self) -> Expr:
        first_col = self.expect_term()[2]
        terms = [self.term()]
        while (tok := self.peek()) is not None and tok[1] == "+":
            self.i += 1
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else Sum(tuple(terms), first_col)

    def term(self) -> Expr:
        kind, value, col = self.expect_term()
        self.i += 1
        if kind == "name":
            return Name(value, col)
        inner = self.flow()
        tok = self.peek()
        if tok is None or tok[1] != ")":
            where = tok[2] if tok is not None else self.end_column()
            raise FlowError(f"')' is missing to close the '(' at column {col}", where, self.text)
        self.i += 1
        return inner


def parse(text: str) -> Expr:
    """The syntax tree of a flow; :class:`FlowError` with a column otherwise."""
    parser = _Parser(text)
    if not parser.tokens:
        raise FlowError("the flow is empty", 1, text)
    expr = parser.flow()
    tok = parser.peek()
    if tok is not None:
        what = "')' without a matching '('" if tok[1] == ")" else f"unexpected {tok[1]!r}"
        raise FlowError(what, tok[2], text)
    return expr


# -- meaning ---------------------------------------------------------------


@dataclass
class Node:
    """One node of the DAG a flow makes: a task of the file, or a reduction."""

    name: str
    after: list[str] = field(default_factory=list)
    operands: list[str] = field(default_factory=list)  # a reduction's, in order

    @property
    def is_reduction(self) -> bool:
        return bool(self.operands)


@dataclass
class Plan:
    """The nodes in the order they were first used, and the flow's last node."""

    nodes: list[Node]
    final: str | None


def plan(text: str, known: set[str] | None = None) -> Plan:
    """The DAG of a flow over the given task names (None: any name)."""
    expr = parse(text)
    nodes: dict[str, Node] = {}
    reductions = 0

    def use(name: Name, before: set[str]) -> set[str]:
        if known is not None and name.name not in known:
            raise FlowError(f"no task named '{name.name}'", name.column, text)
        if name.name in nodes:
            # Already run: as a step it is done at once, so what follows
            # still waits for everything before it.
            return before | {name.name}
        nodes[name.name] = Node(name.name, sorted(before))
        return {name.name}

    def walk(e: Expr, before: set[str]) -> set[str]:
        nonlocal reductions
        if isinstance(e, Name):
            return use(e, before)
        if isinstance(e, Seq):
            done = before
            for step in e.steps:
                done = walk(step, done)
            return done
        if isinstance(e, Par):
            out: set[str] = set()
            for g in e.groups:
                out |= walk(g, before)
            return out
        operands = []
        for t in e.terms:
            if not isinstance(t, Name):
                raise FlowError(
                    "a reduction adds named tasks: write a + b, not (a | b) + c", e.column, text
                )
            use(t, before)
            operands.append(t.name)
        reductions += 1
        name = "sum-" + str(reductions)
        while name in nodes or (known is not None and name in known):
            reductions += 1
            name = "sum-" + str(reductions)
        nodes[name] = Node(name, sorted(before | set(operands)), operands)
        return {name}

    ends = walk(expr, set())
    final = next(iter(ends)) if len(ends) == 1 else None
    return Plan(list(nodes.values()), final)
