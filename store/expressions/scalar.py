"""The one-row evaluator: a typed syntax tree -> a function of one row's Python values.

The vectorized Program (compiler.py) costs a numpy call or more per node, about a microsecond
each whatever the row count; one online entity pays that for a single row. `compile_row` turns
the same typed tree into nested closures over plain Python values (None is SQL null) with the
vectorized evaluator's semantics exactly, so a row gives the same value either way (bit for bit
for floats; tests/store/test_expressions.py checks it over random expressions and inputs):
- every node's value has its static type: INT a Python int wrapped to int64 (numpy's overflow),
  FLOAT a Python float (an IEEE double: + - * / and comparisons round as numpy's float64 ones),
  BOOL a bool, STRING a str; an INT operand beside a FLOAT is converted first, as numpy promotes;
- `/` converts both sides to float and is null where the divisor is 0 (or -0.0);
- LN and EXP call numpy's own ufuncs on the scalar (libm's differ in the last bit from numpy's
  vectorized ones), with floating point errors ignored as the Program does;
- the declared dtype's cast at the end: float64 of an INT is float(), float32 rounds through
  numpy's float32.
Row functions are immutable; safe to call from any thread.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from store.expressions.ast import Binary, Call, Case, IsNull, Literal, Name, Node, Unary
from store.expressions.quiet import quietly
from store.expressions.types import FLOAT, INT, NULL, Typed

RowFn = Callable[[Sequence[Any]], Any]  # the values of a program's slots -> a value or None

_MIN, _MAX = -(2**63), 2**63 - 1


def _wrap(v: int) -> int:
    """int64 two's complement wrap-around of an exact Python int (numpy's overflow)."""
    if _MIN <= v <= _MAX:
        return v
    return ((v - _MIN) & 0xFFFFFFFFFFFFFFFF) + _MIN


def _numpy_call(ufunc: Any, v: float) -> float:
    """float(ufunc(v)) with numpy's floating point errors ignored (overflow gives inf)."""
    return float(quietly(ufunc, v))


def _float32(v: float) -> float:
    return _numpy_call(np.float32, v)


def _int_to_float32(v: int) -> float:
    return float(np.float32(np.int64(v)))  # numpy's int64 -> float32 cast, rounded once


def _null(env: Sequence[Any]) -> None:
    return None


def compile_row(typed: Typed, dtype: str) -> RowFn:
    """The row function of a type-checked tree whose result is declared `dtype`: slot values
    (None for null) -> the value of the declared dtype, or None."""
    fn = _RowCompiler(typed).node(typed.root)
    t = typed.type_of(typed.root)
    if fn is _null or t == NULL:
        return _null
    if dtype == "float32":
        cast = _int_to_float32 if t == INT else _float32

        def to_float32(env: Sequence[Any]) -> Any:
            v = fn(env)
            return None if v is None else cast(v)

        return to_float32
    if dtype == "float64" and t == INT:

        def to_float(env: Sequence[Any]) -> Any:
            v = fn(env)
            return None if v is None else float(v)

        return to_float
    return fn


def _as_float(fn: RowFn) -> RowFn:
    """An INT-typed operand converted to float, as numpy promotes int64 beside float64."""
    if fn is _null:
        return fn

    def as_float(env: Sequence[Any]) -> Any:
        v = fn(env)
        return None if v is None else float(v)

    return as_float


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


class _RowCompiler:
    def __init__(self, typed: Typed) -> None:
        self.typed = typed

    def node(self, node: Node) -> RowFn:
        if self.typed.type_of(node) == NULL:
            return _null
        if isinstance(node, Literal):
            value = node.value
            return lambda env: value
        if isinstance(node, Name):
            return itemgetter(self.typed.slot_of[id(node)])
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, IsNull):
            return self.is_null(node)
        if isinstance(node, Call):
            return self.call(node)
        return self.case(node)

    def typed_as(self, node: Node, t: str) -> RowFn:
        """`node` as type `t`: an INT node where `t` is FLOAT is converted."""
        if t != FLOAT or self.typed.type_of(node) != INT:
            return self.node(node)
        if isinstance(node, Literal):
            value = float(node.value)  # type: ignore[arg-type]
            return lambda env: value
        return _as_float(self.node(node))

    def common(self, a: Node, b: Node) -> tuple[RowFn, RowFn]:
        """Two operands in their common type (FLOAT if either is)."""
        t = FLOAT if FLOAT in (self.typed.type_of(a), self.typed.type_of(b)) else INT
        return self.typed_as(a, t), self.typed_as(b, t)

    def unary(self, node: Unary) -> RowFn:
        f = self.node(node.operand)
        if node.op == "+" or f is _null:
            return f
        if node.op == "NOT":
            return lambda env: None if (a := f(env)) is None else not a
        if self.typed.type_of(node.operand) == INT:
            return lambda env: None if (a := f(env)) is None else _wrap(-a)
        return lambda env: None if (a := f(env)) is None else -a

    def binary(self, node: Binary) -> RowFn:
        op = node.op
        if op in ("AND", "OR"):
            return self.logical(self.node(node.left), self.node(node.right), op == "OR")
        fa, fb = self.common(node.left, node.right)
        if fa is _null or fb is _null:
            return _null
        if op == "/":  # always FLOAT: INT operands converted, as numpy's true division does
            fa, fb = self.typed_as(node.left, FLOAT), self.typed_as(node.right, FLOAT)

            def divide(env: Sequence[Any]) -> Any:
                a = fa(env)
                if a is None:
                    return None
                b = fb(env)
                return None if b is None or b == 0 else a / b

            return divide
        if op in _COMPARE:
            cmp = _COMPARE[op]

            def compare(env: Sequence[Any]) -> Any:
                a = fa(env)
                if a is None:
                    return None
                b = fb(env)
                return None if b is None else cmp(a, b)

            return compare
        arith_op = _ARITH[op]
        if self.typed.type_of(node) == INT:

            def int_arith(env: Sequence[Any]) -> Any:
                a = fa(env)
                if a is None:
                    return None
                b = fb(env)
                return None if b is None else _wrap(arith_op(a, b))

            return int_arith

        def arith(env: Sequence[Any]) -> Any:
            a = fa(env)
            if a is None:
                return None
            b = fb(env)
            return None if b is None else arith_op(a, b)

        return arith

    @staticmethod
    def logical(fa: RowFn, fb: RowFn, is_or: bool) -> RowFn:
        """Three-valued AND / OR: a decisive operand (False for AND, True for OR) decides."""

        def logical(env: Sequence[Any]) -> Any:
            a = fa(env)
            if a is is_or:
                return a
            b = fb(env)
            if b is is_or:
                return b
            return None if a is None or b is None else a

        return logical

    def is_null(self, node: IsNull) -> RowFn:
        f = self.node(node.operand)
        if node.negated:
            return lambda env: f(env) is not None
        return lambda env: f(env) is None

    def call(self, node: Call) -> RowFn:
        name, t = node.function, self.typed.type_of(node)
        if name == "NULLIF":
            return self.nullif(node)
        if name == "COALESCE":
            fns = [f for f in (self.typed_as(a, t) for a in node.args) if f is not _null]
            return self.coalesce(fns)
        if name in ("LEAST", "GREATEST"):
            fns = [f for f in (self.typed_as(a, t) for a in node.args) if f is not _null]
            return self.extreme(fns, name == "LEAST", t == FLOAT)
        (arg,) = node.args
        f = self.node(arg)
        if f is _null:
            return _null
        if name == "LN":

            def ln(env: Sequence[Any]) -> Any:
                a = f(env)
                return None if a is None or not a > 0 else _numpy_call(np.log, float(a))

            return ln
        if name == "EXP":
            return lambda env: None if (a := f(env)) is None else _numpy_call(np.exp, float(a))
        if t == INT:  # ABS
            return lambda env: None if (a := f(env)) is None else _wrap(abs(a))
        return lambda env: None if (a := f(env)) is None else abs(a)

    def nullif(self, node: Call) -> RowFn:
        a, b = node.args
        fa = self.node(a)
        if fa is _null:
            return _null
        types = (self.typed.type_of(a), self.typed.type_of(b))
        convert = types[0] == INT and FLOAT in types  # compared as floats, a's own value returned
        cb = self.typed_as(b, FLOAT if FLOAT in types else types[1])
        if cb is _null:
            return fa

        def nullif(env: Sequence[Any]) -> Any:
            v = fa(env)
            if v is None:
                return None
            w = cb(env)
            if w is None:
                return v
            return v if (float(v) if convert else v) != w else None

        return nullif

    @staticmethod
    def coalesce(fns: list[RowFn]) -> RowFn:
        if not fns:
            return _null
        if len(fns) == 1:
            return fns[0]

        def coalesce(env: Sequence[Any]) -> Any:
            for f in fns:
                v = f(env)
                if v is not None:
                    return v
            return None

        return coalesce

    @staticmethod
    def extreme(fns: list[RowFn], least: bool, floats: bool) -> RowFn:
        """LEAST / GREATEST: nulls ignored; NaN ranks above every number."""
        if not fns:
            return _null
        if len(fns) == 1:
            return fns[0]

        def extreme(env: Sequence[Any]) -> Any:
            res = None
            for f in fns:
                b = f(env)
                if b is None:
                    continue
                if res is None:
                    res = b
                elif least:
                    if b < res or (floats and res != res and b == b):
                        res = b
                elif b > res or (floats and b != b and res == res):
                    res = b
            return res

        return extreme

    def case(self, node: Case) -> RowFn:
        t = self.typed.type_of(node)
        whens = [(self.node(c), self.typed_as(r, t)) for c, r in node.whens]
        default = self.typed_as(node.default, t) if node.default is not None else _null

        def case(env: Sequence[Any]) -> Any:
            for cond, result in whens:
                if cond(env) is True:
                    return result(env)
            return default(env)

        return case
