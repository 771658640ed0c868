"""The compiler: a typed syntax tree -> a Program, a vectorized evaluator over numpy arrays.

Every value is a pair (values, valid) of equal-length arrays (or length 1, broadcast): INT as
int64, FLOAT as float64, BOOL as bool, STRING as an object array of str; `valid` False marks SQL
null, and the values there are unspecified. A node's values always have its static type (INT
beside FLOAT is cast), so a row's result depends on that row alone: scalar.py's one-row
evaluator equals it. The tree is turned once into nested closures of whole-array numpy
operations: a few numpy calls per node whatever the row count. No user text is ever eval'ed.

Null semantics are SQL's: operators and functions give null on a null input, except AND/OR
(three-valued logic), IS [NOT] NULL, COALESCE, CASE, NULLIF's second argument and
LEAST/GREATEST (nulls ignored). `x / 0` is null; `ln(x)` is null unless x > 0; int64 overflow
wraps; float overflow gives +-inf. A Program is immutable; safe to evaluate from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from store.expressions.ast import Binary, Call, Case, IsNull, Literal, Name, Node, Unary
from store.expressions.quiet import quietly
from store.expressions.scalar import RowFn, compile_row
from store.expressions.types import BOOL, FLOAT, INT, NULL, STRING, Slot, Typed

Pair = tuple[np.ndarray, np.ndarray]
Fn = Callable[[Sequence[Pair]], Pair]

_TRUE, _FALSE = np.ones(1, dtype=bool), np.zeros(1, dtype=bool)
_TRUE.setflags(write=False)
_FALSE.setflags(write=False)
# An input's `valid` may be ALL_VALID (length 1, broadcast) when it has no null: cheaper to
# make than a mask of n Trues, and the evaluator skips the mask operations it would feed.
ALL_VALID = _TRUE
_NUMPY: dict[str, Any] = {
    INT: np.int64,
    FLOAT: np.float64,
    BOOL: np.bool_,
    STRING: object,
    NULL: np.bool_,
}
# numpy dtype of each declared output dtype
OUTPUT_DTYPES: dict[str, np.dtype[Any]] = {
    "int64": np.dtype(np.int64),
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "bool": np.dtype(bool),
    "string": np.dtype(object),
}
_COMPARE = {
    "=": np.equal,
    "<>": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}
_ARITH = {"+": np.add, "-": np.subtract, "*": np.multiply}


@dataclass(frozen=True)
class Program:
    """A compiled expression: `evaluate(inputs, n)` -> (values, valid) of n rows, and
    `evaluate_row(values)` -> the value of one row (store/expressions/scalar.py), equal to it.

    slots: the inputs, in the order `evaluate` takes them; each input is (values, valid) of n
    rows: values of the slot's type (int64, float64, bool, object for strings: `widen` a
    feature's int32/float32 first), valid a bool mask or ALL_VALID. Inputs are never written.
    dtype: the declared output dtype; values come out as OUTPUT_DTYPES[dtype].
    """

    slots: tuple[Slot, ...]
    type: str  # the inferred type
    dtype: str
    fn: Fn
    may_warn: bool  # float operations, whose overflow numpy would report as a warning
    row: RowFn  # the one-row evaluator of the same tree

    def evaluate_row(self, values: Sequence[Any]) -> Any:
        """One row: per slot a value of exactly its Python type (int, float, bool, str; not a
        numpy scalar) or None -> what `evaluate` gives for that row as a Python value, or None."""
        return self.row(values)

    def evaluate(self, inputs: Sequence[Pair], n: int) -> Pair:
        """(values, valid) of length n (values unspecified where not valid). They may be the
        input arrays themselves (an expression that is one name): the caller owns both."""
        # float overflow is a value (+-inf), not a warning
        values, valid = quietly(self._run, inputs) if self.may_warn else self._run(inputs)
        if len(values) != n:
            values = np.broadcast_to(values, (n,)).copy()
        if len(valid) != n:
            valid = np.broadcast_to(valid, (n,)).copy()
        elif not valid.flags.writeable:  # a constant of the program: never hand it out
            valid = valid.copy()
        if not values.flags.writeable:
            values = values.copy()
        return values, valid

    def _run(self, inputs: Sequence[Pair]) -> Pair:
        """The tree's (values, valid), values cast to the declared dtype (inf on overflow)."""
        values, valid = self.fn(inputs)
        out = OUTPUT_DTYPES[self.dtype]
        return (values if values.dtype == out else values.astype(out)), valid


def compile_program(typed: Typed, dtype: str) -> Program:
    """Compile a type-checked tree whose result is declared `dtype` (checked by the caller)."""
    fn, _ = _Compiler(typed).node(typed.root)
    may_warn, row = FLOAT in typed.types.values(), compile_row(typed, dtype)
    return Program(tuple(typed.slots), typed.type_of(typed.root), dtype, fn, may_warn, row)


def _const(value: object, t: str) -> tuple[Fn, bool]:
    values = np.array([value], dtype=_NUMPY[t])
    values.setflags(write=False)
    pair = (values, _TRUE)
    return (lambda env: pair), True


_NULL_PAIR = (_FALSE, _FALSE)
# zero of a divisor's type: an array operand keeps numpy off its slower Python-scalar path
_ZEROS = {INT: np.zeros(1, dtype=np.int64), FLOAT: np.zeros(1, dtype=np.float64)}


def _null(env: Sequence[Pair]) -> Pair:
    return _NULL_PAIR


def widen(values: np.ndarray) -> np.ndarray:
    """A feature's values as the evaluator takes them: int32 -> int64, float32 -> float64."""
    kind = values.dtype.kind
    if kind == "i" and values.dtype != np.int64:
        return values.astype(np.int64)
    if kind == "f" and values.dtype != np.float64:
        return values.astype(np.float64)
    return values


def _mask(valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """valid & mask, without the operation when valid is ALL_VALID."""
    return mask if valid is ALL_VALID else valid & mask


def _and_valid(va: np.ndarray, a_always: bool, vb: np.ndarray, b_always: bool) -> np.ndarray:
    if a_always or va is ALL_VALID:
        return vb
    return va if b_always or vb is ALL_VALID else va & vb


class _Compiler:
    """Each method returns (fn, always_valid): always_valid means valid is statically all True,
    which lets the parent skip a mask operation."""

    def __init__(self, typed: Typed) -> None:
        self.typed = typed

    def node(self, node: Node) -> tuple[Fn, bool]:
        if self.typed.type_of(node) == NULL:
            return _null, False  # a NULL-typed node is null whatever its inputs
        if isinstance(node, Literal):
            return _const(node.value, self.typed.type_of(node))
        if isinstance(node, Name):
            i = self.typed.slot_of[id(node)]
            return (lambda env: env[i]), False
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, IsNull):
            return self.is_null(node)
        if isinstance(node, Call):
            return self.call(node)
        return self.case(node)

    def unary(self, node: Unary) -> tuple[Fn, bool]:
        f, always = self.node(node.operand)
        if node.op == "+" or f is _null:  # an operator of null is null
            return f, always
        op = np.logical_not if node.op == "NOT" else np.negative

        def unary(env: Sequence[Pair]) -> Pair:
            a, va = f(env)
            return op(a), va

        return unary, always

    def operand(self, node: Node, other: Node) -> tuple[Fn, bool]:
        """An operand beside `other`: an int literal next to a float is compiled as a float
        (what numpy's promotion would make of it at every call, done once)."""
        types = self.typed
        if isinstance(node, Literal) and types.type_of(node) == INT:
            if types.type_of(other) == FLOAT:
                return _const(float(node.value), FLOAT)  # type: ignore[arg-type]
        return self.node(node)

    def typed_as(self, node: Node, t: str) -> tuple[Fn, bool]:
        """`node` with values of type `t` (an INT as float64 where `t` is FLOAT)."""
        if t != FLOAT or self.typed.type_of(node) != INT:
            return self.node(node)
        if isinstance(node, Literal):
            return _const(float(node.value), FLOAT)  # type: ignore[arg-type]
        f, always = self.node(node)
        if f is _null:
            return f, always

        def as_float(env: Sequence[Pair]) -> Pair:
            a, va = f(env)
            return a.astype(np.float64), va

        return as_float, always

    def binary(self, node: Binary) -> tuple[Fn, bool]:
        fa, aa = self.operand(node.left, node.right)
        fb, ab = self.operand(node.right, node.left)
        if node.op == "AND":
            return self.logical(fa, fb, np.logical_and, False), aa and ab
        if node.op == "OR":
            return self.logical(fa, fb, np.logical_or, True), aa and ab
        if fa is _null or fb is _null:  # an operator of null is null
            return _null, False
        if node.op == "/":
            zero = _ZEROS[self.typed.type_of(node.right)]
            return self.divide(fa, aa, fb, ab, zero), False
        op = _ARITH.get(node.op) or _COMPARE[node.op]

        def binary(env: Sequence[Pair]) -> Pair:
            a, va = fa(env)
            b, vb = fb(env)
            return op(a, b), _and_valid(va, aa, vb, ab)

        return binary, aa and ab

    @staticmethod
    def logical(fa: Fn, fb: Fn, op: Callable, decisive: bool) -> Fn:
        """AND (decisive False) / OR (decisive True) in three-valued logic: a valid decisive
        operand decides alone; otherwise null if either is null."""

        def logical(env: Sequence[Pair]) -> Pair:
            a, va = fa(env)
            b, vb = fb(env)
            if va is ALL_VALID:
                if vb is ALL_VALID:
                    return op(a, b), ALL_VALID
                valid = vb | a if decisive else vb | ~a
            elif vb is ALL_VALID:
                valid = va | b if decisive else va | ~b
            elif decisive:
                valid = (va & vb) | (va & a) | (vb & b)
            else:
                valid = (va & vb) | (va & ~a) | (vb & ~b)
            return op(a, b), valid

        return logical

    @staticmethod
    def divide(fa: Fn, aa: bool, fb: Fn, ab: bool, zero: np.ndarray) -> Fn:
        def divide(env: Sequence[Pair]) -> Pair:
            a, va = fa(env)
            b, vb = fb(env)
            # a row whose divisor is 0 is null: its value (inf or nan, no warning while the
            # program runs) is never read
            return a / b, _mask(_and_valid(va, aa, vb, ab), b != zero)

        return divide

    def is_null(self, node: IsNull) -> tuple[Fn, bool]:
        f, always = self.node(node.operand)
        if always:
            return _const(node.negated, BOOL)
        negated = node.negated

        def is_null(env: Sequence[Pair]) -> Pair:
            _, va = f(env)
            return (va.copy() if negated else ~va), _TRUE

        return is_null, True

    def call(self, node: Call) -> tuple[Fn, bool]:
        name, t = node.function, self.typed.type_of(node)
        if name == "NULLIF":  # compared in the common type; a's values (its own type) returned
            a, b = node.args
            args = [self.node(a), self.operand(b, a)]
        elif name in ("COALESCE", "LEAST", "GREATEST"):
            args = [self.typed_as(a, t) for a in node.args]
        else:
            args = [self.node(a) for a in node.args]
        if name == "COALESCE":
            return self.coalesce(args)
        if name in ("LEAST", "GREATEST"):
            return self.extreme(args, name == "LEAST")
        if name == "NULLIF":
            (fa, aa), (fb, ab) = args
            if fa is _null or fb is _null:
                return fa, aa

            def nullif(env: Sequence[Pair]) -> Pair:
                a, va = fa(env)
                b, vb = fb(env)
                # a NaN never equals: kept
                keep = a != b if ab or vb is ALL_VALID else ~vb | (a != b)
                return a, _mask(va, keep)

            return nullif, False
        ((f, always),) = args
        if f is _null:
            return _null, False
        if name == "LN":

            def ln(env: Sequence[Pair]) -> Pair:
                a, va = f(env)
                return np.log(a, dtype=np.float64), _mask(va, a > 0)

            return ln, False
        op = np.abs if name == "ABS" else np.exp

        def call(env: Sequence[Pair]) -> Pair:
            a, va = f(env)
            return op(a), va

        return call, always

    @staticmethod
    def coalesce(args: list[tuple[Fn, bool]]) -> tuple[Fn, bool]:
        for i, (_, always) in enumerate(args):
            if always:  # later arguments are never reached
                args = args[: i + 1]
                break
        args = [a for a in args if a[0] is not _null]  # a null argument never wins
        if not args:
            return _null, False
        if len(args) == 1:
            return args[0]
        fns = [f for f, _ in args]

        def coalesce(env: Sequence[Pair]) -> Pair:
            res, vres = fns[-1](env)
            for f in reversed(fns[:-1]):
                a, va = f(env)
                if va is ALL_VALID:
                    res, vres = a, va
                    continue
                res = np.where(va, a, res)
                vres = vres if vres is ALL_VALID else va | vres
            return res, vres

        return coalesce, args[-1][1]

    @staticmethod
    def extreme(args: list[tuple[Fn, bool]], least: bool) -> tuple[Fn, bool]:
        """LEAST / GREATEST: nulls ignored (null only if every argument is); NaN counts as
        greater than every number, as in PostgreSQL and DuckDB."""
        args = [a for a in args if a[0] is not _null]  # a null argument never wins
        if not args:
            return _null, False
        if len(args) == 1:
            return args[0]
        fns = [f for f, _ in args]
        better = np.less if least else np.greater

        def extreme(env: Sequence[Pair]) -> Pair:
            res, vres = fns[0](env)
            for f in fns[1:]:
                b, vb = f(env)
                if b.dtype.kind == "f" or res.dtype.kind == "f":
                    nan_b, nan_r = np.isnan(b), np.isnan(res)
                    wins = better(b, res) | ((nan_r & ~nan_b) if least else (nan_b & ~nan_r))
                else:
                    wins = better(b, res)
                if vres is ALL_VALID:
                    take = _mask(vb, wins)
                else:
                    take = _mask(vb, ~vres | wins)
                res = np.where(take, b, res)
                if vres is not ALL_VALID:
                    vres = ALL_VALID if vb is ALL_VALID else vres | vb
            return res, vres

        return extreme, any(a for _, a in args)

    def case(self, node: Case) -> tuple[Fn, bool]:
        t = self.typed.type_of(node)
        whens = [(self.node(c)[0], self.typed_as(r, t)[0]) for c, r in node.whens]
        default = self.typed_as(node.default, t)[0] if node.default is not None else _null

        def case(env: Sequence[Pair]) -> Pair:
            res, vres = default(env)
            for cond, result in reversed(whens):  # the first true condition wins
                c, vc = cond(env)
                taken = _mask(vc, c)
                r, vr = result(env)
                res = np.where(taken, r, res)
                if vr is not ALL_VALID or vres is not ALL_VALID:
                    vres = np.where(taken, vr, vres)
            return res, vres

        return case, False
