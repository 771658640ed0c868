"""The parser: tokens -> syntax tree, by precedence climbing (a Pratt parser).

Precedence, loosest first: OR; AND; NOT; comparisons (= <> != < <= > >= and IS [NOT] NULL, not
chained); + -; * /; unary - +. Keywords and function names are case-insensitive; names are
case-sensitive. Pure functions; safe from any thread.
"""

from __future__ import annotations

from store.expressions.ast import Binary, Call, Case, IsNull, Literal, Name, Node, Unary
from store.expressions.errors import ExpressionError
from store.expressions.tokens import END, IDENT, NUMBER, OP, STRING, Token, tokenize

KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "CASE", "WHEN", "THEN", "ELSE", "END", "IS", "NULL", "TRUE", "FALSE"}
)
FUNCTIONS = {  # name -> (min args, max args or None)
    "COALESCE": (1, None),
    "NULLIF": (2, 2),
    "ABS": (1, 1),
    "LN": (1, 1),
    "EXP": (1, 1),
    "LEAST": (1, None),
    "GREATEST": (1, None),
}
_COMPARISONS = frozenset({"=", "<>", "!=", "<", "<=", ">", ">="})
MAX_DEPTH = 64  # nesting deeper than this is refused (it would only exhaust the stack)


def parse(text: str) -> Node:
    """The syntax tree of `text`; ExpressionError naming the token where it is malformed."""
    return _Parser(tokenize(text)).parse()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_keyword(self, *words: str) -> bool:
        return self.tok.kind == IDENT and self.tok.upper in words

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == OP and self.tok.text in ops

    def expect_keyword(self, word: str) -> Token:
        if not self.at_keyword(word):
            raise self.error(f"expected {word}")
        return self.advance()

    def expect_op(self, op: str) -> Token:
        if not self.at_op(op):
            raise self.error(f"expected {op!r}")
        return self.advance()

    def error(self, message: str) -> ExpressionError:
        tok = self.tok
        if tok.kind == END:
            message = message + ", but the expression ends"
        return ExpressionError(message, tok.text, tok.pos)

    def parse(self) -> Node:
        if self.tok.kind == END:
            raise self.error("empty expression")
        node = self.expr()
        if self.tok.kind != END:
            raise self.error("unexpected token after a complete expression")
        return node

    # -------------------------------------------------------------------- precedence levels

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nests deeper than {MAX_DEPTH} levels")
        try:
            return self.disjunction()
        finally:
            self.depth -= 1

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.at_keyword("OR"):
            tok = self.advance()
            node = Binary("OR", node, self.conjunction(), tok)
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.at_keyword("AND"):
            tok = self.advance()
            node = Binary("AND", node, self.negation(), tok)
        return node

    def negation(self) -> Node:
        if self.at_keyword("NOT"):
            tok = self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"expression nests deeper than {MAX_DEPTH} levels")
            try:
                return Unary("NOT", self.negation(), tok)
            finally:
                self.depth -= 1
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        if self.at_op(*_COMPARISONS):
            tok = self.advance()
            op = "<>" if tok.text == "!=" else tok.text
            node = Binary(op, node, self.additive(), tok)
        elif self.at_keyword("IS"):
            tok = self.advance()
            negated = self.at_keyword("NOT")
            if negated:
                self.advance()
            self.expect_keyword("NULL")
            node = IsNull(node, negated, tok)
        if self.at_op(*_COMPARISONS) or self.at_keyword("IS"):
            raise self.error("comparisons do not chain; use AND")
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.at_op("+", "-"):
            tok = self.advance()
            node = Binary(tok.text, node, self.multiplicative(), tok)
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.at_op("*", "/"):
            tok = self.advance()
            node = Binary(tok.text, node, self.unary(), tok)
        return node

    def unary(self) -> Node:
        if self.at_op("-", "+"):
            tok = self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"expression nests deeper than {MAX_DEPTH} levels")
            try:
                return Unary(tok.text, self.unary(), tok)
            finally:
                self.depth -= 1
        return self.primary()

    # -------------------------------------------------------------------- primaries

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == NUMBER:
            self.advance()
            is_int = not any(c in tok.text for c in ".eE")
            value: int | float = int(tok.text) if is_int else float(tok.text)
            if is_int and value >= 2**63:
                raise ExpressionError("integer literal out of the int64 range", tok.text, tok.pos)
            return Literal(value, tok)
        if tok.kind == STRING:
            self.advance()
            return Literal(tok.text[1:-1].replace("''", "'"), tok)
        if self.at_op("("):
            self.advance()
            node = self.expr()
            self.expect_op(")")
            return node
        if tok.kind == IDENT:
            word = tok.upper
            if word in ("TRUE", "FALSE"):
                self.advance()
                return Literal(word == "TRUE", tok)
            if word == "NULL":
                self.advance()
                return Literal(None, tok)
            if word == "CASE":
                return self.case()
            if word in KEYWORDS:
                raise self.error(f"unexpected keyword {word}")
            self.advance()
            if self.at_op("("):
                return self.call(tok)
            if self.at_op(".", ":"):
                self.advance()
                if self.tok.kind != IDENT or self.tok.upper in KEYWORDS:
                    raise self.error("expected a feature name after the view name")
                return Name(tok.text, self.advance().text, tok)
            return Name(None, tok.text, tok)
        raise self.error("expected a value, a name, a function call or '('")

    def call(self, name: Token) -> Node:
        function = name.upper
        if function not in FUNCTIONS:
            raise ExpressionError(
                f"unknown function; use one of {', '.join(f.lower() for f in FUNCTIONS)}",
                name.text,
                name.pos,
            )
        self.expect_op("(")
        args: list[Node] = []
        if not self.at_op(")"):
            args.append(self.expr())
            while self.at_op(","):
                self.advance()
                args.append(self.expr())
        self.expect_op(")")
        low, high = FUNCTIONS[function]
        if len(args) < low or (high is not None and len(args) > high):
            want = (
                f"{low}" if low == high else f"at least {low}" if high is None else f"{low}-{high}"
            )
            raise ExpressionError(
                f"{function.lower()} takes {want} argument(s), got {len(args)}", name.text, name.pos
            )
        return Call(function, tuple(args), name)

    def case(self) -> Node:
        tok = self.advance()
        whens: list[tuple[Node, Node]] = []
        while self.at_keyword("WHEN"):
            self.advance()
            cond = self.expr()
            self.expect_keyword("THEN")
            whens.append((cond, self.expr()))
        if not whens:
            raise self.error("CASE needs at least one WHEN ... THEN ...")
        default = None
        if self.at_keyword("ELSE"):
            self.advance()
            default = self.expr()
        self.expect_keyword("END")
        return Case(tuple(whens), default, tok)
