"""A brute-force, row-at-a-time Python evaluator of expression syntax trees: the oracle the
vectorized compiler is tested against. None is SQL null."""

from __future__ import annotations

import math
from typing import Any

from store.expressions.ast import Binary, Call, Case, IsNull, Literal, Name, Node, Unary
from store.expressions.types import FLOAT, Typed


def wrap(v: int) -> int:
    return ((v + 2**63) % 2**64) - 2**63


def evaluate(typed: Typed, node: Node, row: dict[tuple[str | None, str], Any]) -> Any:
    def ev(n: Node) -> Any:
        return evaluate(typed, n, row)

    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        slot = typed.slots[typed.slot_of[id(node)]]
        return row[(slot.view, slot.name)]
    if isinstance(node, Unary):
        a = ev(node.operand)
        if a is None:
            return None
        if node.op == "NOT":
            return not a
        if node.op == "-":
            return wrap(-a) if isinstance(a, int) and not isinstance(a, bool) else -a
        return a
    if isinstance(node, IsNull):
        a = ev(node.operand)
        return (a is not None) if node.negated else (a is None)
    if isinstance(node, Binary):
        return _binary(typed, node, ev(node.left), ev(node.right))
    if isinstance(node, Call):
        return _call(typed, node, [ev(a) for a in node.args])
    assert isinstance(node, Case)
    for cond, result in node.whens:
        if ev(cond) is True:
            return ev(result)
    return None if node.default is None else ev(node.default)


def _num(typed: Typed, node: Binary, a: Any, b: Any) -> tuple[Any, Any]:
    if FLOAT in (typed.type_of(node.left), typed.type_of(node.right)):
        return float(a), float(b)
    return a, b


def _binary(typed: Typed, node: Binary, a: Any, b: Any) -> Any:
    op = node.op
    if op == "AND":
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if op == "OR":
        if a is True or b is True:
            return True
        return None if a is None or b is None else False
    if a is None or b is None:
        return None
    if op == "/":
        if b == 0:
            return None
        return float(a) / float(b)
    if op in ("+", "-", "*"):
        a, b = _num(typed, node, a, b)
        r = a + b if op == "+" else a - b if op == "-" else a * b
        return wrap(r) if isinstance(r, int) else r
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        a, b = _num(typed, node, a, b)
    return {
        "=": a == b,
        "<>": a != b,
        "<": a < b if op == "<" else None,
        "<=": a <= b if op == "<=" else None,
        ">": a > b if op == ">" else None,
        ">=": a >= b if op == ">=" else None,
    }[op]


def _key(v: float, least: bool) -> tuple[int, float]:
    """Order with NaN greater than every number."""
    return (1, 0.0) if isinstance(v, float) and math.isnan(v) else (0, v)


def _call(typed: Typed, node: Call, args: list[Any]) -> Any:
    f = node.function
    is_float = typed.type_of(node) == FLOAT
    if f == "COALESCE":
        for a in args:
            if a is not None:
                return float(a) if is_float else a
        return None
    if f in ("LEAST", "GREATEST"):
        vals = [float(a) if is_float else a for a in args if a is not None]
        if not vals:
            return None
        pick = min if f == "LEAST" else max
        return pick(vals, key=lambda v: _key(v, f == "LEAST"))
    if f == "NULLIF":
        a, b = args
        if a is None:
            return None
        if b is not None:
            fa, fb = (
                (float(a), float(b)) if isinstance(b, float) or isinstance(a, float) else (a, b)
            )
            if fa == fb:
                return None
        return a
    (a,) = args
    if a is None:
        return None
    if f == "ABS":
        return wrap(abs(a)) if isinstance(a, int) else abs(a)
    if f == "LN":
        return math.log(a) if a > 0 else None
    try:
        return math.exp(a)
    except OverflowError:
        return math.inf
