"""The tokenizer of the expression language: text -> a list of Tokens ending with an END token.

Tokens: numbers (`12`, `1.5`, `2e-3`, `.5`), strings in single quotes (`'it''s'`), identifiers
(letters, digits, `_`; keywords and function names are matched case-insensitively by the parser),
and the operators `+ - * / ( ) , . : = <> != < <= > >=`. Pure functions; safe from any thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.expressions.errors import ExpressionError

# The kinds of token.
NUMBER, STRING, IDENT, OP, END = "number", "string", "ident", "op", "end"
MAX_EXPRESSION_CHARS = 4096  # longer text is refused: a definition, not a program

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<string>'(?:[^']|'')*')
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><>|!=|<=|>=|[-+*/(),.:=<>])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str  # the source text (a string token keeps its quotes)
    pos: int  # 0-based character offset in the expression

    @property
    def upper(self) -> str:
        return self.text.upper()


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, then an END token; ExpressionError at the first character that
    starts no token (an unterminated string names its opening quote)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"expression has {len(text)} characters; at most {MAX_EXPRESSION_CHARS}", text[:20], 0
        )
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == "'":
                raise ExpressionError("unterminated string literal", ch, pos)
            raise ExpressionError("unexpected character", ch, pos)
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token(END, "", len(text)))
    return out
