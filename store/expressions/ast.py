"""The syntax tree of an expression: immutable nodes, each with the token that starts it.

Built by store/expressions/parser.py, typed by types.py, compiled by compiler.py. Frozen; safe
from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.expressions.tokens import Token


@dataclass(frozen=True)
class Literal:
    value: int | float | bool | str | None
    token: Token


@dataclass(frozen=True)
class Name:
    """A request field or source feature: `name`, or `view.name` / `view:name`."""

    view: str | None
    name: str
    token: Token  # the first token of the name

    @property
    def text(self) -> str:
        return self.name if self.view is None else f"{self.view}.{self.name}"


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+" or "NOT"
    operand: Node
    token: Token


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / = <> < <= > >= AND OR ("!=" is read as "<>")
    left: Node
    right: Node
    token: Token  # the operator


@dataclass(frozen=True)
class IsNull:
    operand: Node
    negated: bool  # IS NOT NULL
    token: Token  # IS


@dataclass(frozen=True)
class Call:
    function: str  # upper case
    args: tuple[Node, ...]
    token: Token  # the function name


@dataclass(frozen=True)
class Case:
    whens: tuple[tuple[Node, Node], ...]  # (condition, result)
    default: Node | None  # ELSE; None: null
    token: Token  # CASE


Node = Literal | Name | Unary | Binary | IsNull | Call | Case
