"""The type checker: resolves every name of a syntax tree and infers the type of every node.

Types: INT (int64), FLOAT (float64), BOOL, STRING and NULL (the type of the literal `null`, which
fits anywhere). Features of type int32/int64 read as INT, float32/float64 as FLOAT; timestamps
and vectors cannot be used. Rules (README, "On-demand features"):
- `+ - *` of INTs is INT; with a FLOAT it is FLOAT; `/` is always FLOAT; unary `-` keeps the type;
- comparisons take two numbers, two BOOLs (`=`/`<>` only) or two STRINGs (`=`/`<>` only);
- AND, OR, NOT and CASE conditions take BOOLs; IS [NOT] NULL takes anything;
- CASE results, COALESCE, LEAST and GREATEST unify their arguments: all one type, or INT with
  FLOAT (-> FLOAT); LEAST/GREATEST take numbers; NULLIF(a, b) compares like `=` and has a's type;
  ABS keeps the type; LN and EXP give FLOAT.
Names: a bare name is a request field if one has that name, else the one source feature of that
name (ambiguous across views: refused, qualify it); `view.feature` / `view:feature` name a source
view's feature. Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from store.expressions.ast import Binary, Call, Case, IsNull, Literal, Name, Node, Unary
from store.expressions.errors import ExpressionError
from store.expressions.tokens import Token

INT, FLOAT, BOOL, STRING, NULL = "int", "float", "bool", "string", "null"
NUMERIC = frozenset({INT, FLOAT})
DTYPE_TYPES = {
    "int32": INT,
    "int64": INT,
    "float32": FLOAT,
    "float64": FLOAT,
    "bool": BOOL,
    "string": STRING,
}
# Declared dtype -> the inferred types it accepts (besides NULL, which fits every dtype).
DECLARED = {
    "int64": frozenset({INT}),
    "float64": frozenset({FLOAT, INT}),  # an INT result converts to float64
    "float32": frozenset({FLOAT, INT}),  # rounds to the nearest float32
    "bool": frozenset({BOOL}),
    "string": frozenset({STRING}),
}


@dataclass(frozen=True)
class Scope:
    """What names an expression may use: request fields and the features of source views."""

    request: Mapping[str, str]  # field -> dtype
    sources: Mapping[str, Mapping[str, str]]  # view -> feature -> dtype


@dataclass(frozen=True)
class Slot:
    """One input of a compiled expression: a request field (view None) or a view's feature."""

    view: str | None
    name: str
    dtype: str


@dataclass
class Typed:
    """The checker's result: the type of each node (by id) and the inputs, in slot order."""

    root: Node
    types: dict[int, str] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    slot_of: dict[int, int] = field(default_factory=dict)  # id(Name node) -> slot index

    def type_of(self, node: Node) -> str:
        return self.types[id(node)]


def check(root: Node, scope: Scope) -> Typed:
    """Type `root` in `scope`; ExpressionError naming the token of the first mistake."""
    typed = Typed(root)
    _Checker(scope, typed).visit(root)
    return typed


def accepts(dtype: str, inferred: str) -> bool:
    """Whether a feature declared `dtype` may hold an expression of type `inferred`."""
    return inferred == NULL or inferred in DECLARED.get(dtype, frozenset())


def unify(types: list[str], token: Token, what: str) -> str:
    """The common type of `types` (NULL fits any; INT with FLOAT is FLOAT)."""
    known = {t for t in types if t != NULL}
    if not known:
        return NULL
    if len(known) == 1:
        return known.pop()
    if known == NUMERIC:
        return FLOAT
    raise ExpressionError(f"{what} mix types {' and '.join(sorted(known))}", token.text, token.pos)


class _Checker:
    def __init__(self, scope: Scope, typed: Typed) -> None:
        self.scope = scope
        self.typed = typed
        self.slot_index: dict[tuple[str | None, str], int] = {}

    def visit(self, node: Node) -> str:
        t = self._visit(node)
        self.typed.types[id(node)] = t
        return t

    def _visit(self, node: Node) -> str:
        if isinstance(node, Literal):
            v = node.value
            if v is None:
                return NULL
            if isinstance(v, bool):
                return BOOL
            if isinstance(v, int):
                return INT
            return FLOAT if isinstance(v, float) else STRING
        if isinstance(node, Name):
            return self.name(node)
        if isinstance(node, Unary):
            t = self.visit(node.operand)
            if node.op == "NOT":
                self.expect(t, {BOOL}, node.token, "NOT takes a bool")
                return BOOL
            self.expect(t, NUMERIC, node.token, f"unary {node.op} takes a number")
            return INT if t == NULL else t
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, IsNull):
            self.visit(node.operand)
            return BOOL
        if isinstance(node, Call):
            return self.call(node)
        return self.case(node)

    def expect(self, t: str, allowed: set[str] | frozenset[str], token: Token, what: str) -> None:
        if t != NULL and t not in allowed:
            raise ExpressionError(f"{what}, got {t}", token.text, token.pos)

    def name(self, node: Name) -> str:
        scope = self.scope
        tok = node.token
        if node.view is None and node.name in scope.request:
            key: tuple[str | None, str] = (None, node.name)
            dtype = scope.request[node.name]
        elif node.view is None:
            owners = [v for v, feats in scope.sources.items() if node.name in feats]
            if not owners:
                raise ExpressionError(
                    "unknown name: not a request field nor a feature of the sources "
                    f"{sorted(scope.sources)}",
                    tok.text,
                    tok.pos,
                )
            if len(owners) > 1:
                raise ExpressionError(
                    f"ambiguous name: a feature of {sorted(owners)}; qualify it as view.feature",
                    tok.text,
                    tok.pos,
                )
            key = (owners[0], node.name)
            dtype = scope.sources[owners[0]][node.name]
        else:
            feats = scope.sources.get(node.view)
            if feats is None:
                raise ExpressionError(
                    f"unknown view {node.view!r}: not one of the sources {sorted(scope.sources)}",
                    tok.text,
                    tok.pos,
                )
            if node.name not in feats:
                raise ExpressionError(
                    f"unknown name: view {node.view!r} has no feature {node.name!r}",
                    tok.text,
                    tok.pos,
                )
            key = (node.view, node.name)
            dtype = feats[node.name]
        t = DTYPE_TYPES.get(dtype)
        if t is None:
            raise ExpressionError(
                f"{node.text} has type {dtype}, which expressions cannot use", tok.text, tok.pos
            )
        index = self.slot_index.get(key)
        if index is None:
            index = self.slot_index[key] = len(self.typed.slots)
            self.typed.slots.append(Slot(key[0], key[1], dtype))
        self.typed.slot_of[id(node)] = index
        return t

    def binary(self, node: Binary) -> str:
        lt, rt = self.visit(node.left), self.visit(node.right)
        op, tok = node.op, node.token
        if op in ("AND", "OR"):
            self.expect(lt, {BOOL}, tok, f"{op} takes bools on the left")
            self.expect(rt, {BOOL}, tok, f"{op} takes bools on the right")
            return BOOL
        if op in ("+", "-", "*", "/"):
            self.expect(lt, NUMERIC, tok, f"{op} takes numbers on the left")
            self.expect(rt, NUMERIC, tok, f"{op} takes numbers on the right")
            if op == "/" or FLOAT in (lt, rt):
                return FLOAT
            return INT
        self.comparable(lt, rt, op, tok)
        return BOOL

    def comparable(self, lt: str, rt: str, op: str, tok: Token) -> None:
        t = unify([lt, rt], tok, f"{op} compares values that")
        if t in (BOOL, STRING) and op not in ("=", "<>"):
            raise ExpressionError(f"{t}s compare only with = and <>", tok.text, tok.pos)

    def call(self, node: Call) -> str:
        types = [self.visit(a) for a in node.args]
        f, tok = node.function, node.token
        if f == "COALESCE":
            return unify(types, tok, "coalesce arguments")
        if f in ("LEAST", "GREATEST"):
            t = unify(types, tok, f"{f.lower()} arguments")
            self.expect(t, NUMERIC, tok, f"{f.lower()} takes numbers")
            return t
        if f == "NULLIF":
            self.comparable(types[0], types[1], "nullif", tok)
            return types[0] if types[0] != NULL else unify(types, tok, "nullif arguments")
        self.expect(types[0], NUMERIC, tok, f"{f.lower()} takes a number")
        if f == "ABS":
            return INT if types[0] == NULL else types[0]
        return FLOAT  # LN, EXP

    def case(self, node: Case) -> str:
        results = []
        for cond, result in node.whens:
            ct = self.visit(cond)
            self.expect(ct, {BOOL}, cond.token, "CASE WHEN conditions must be bools")
            results.append(self.visit(result))
        if node.default is not None:
            results.append(self.visit(node.default))
        return unify(results, node.token, "CASE results")
