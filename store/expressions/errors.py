"""ExpressionError: a refused expression, with the offending token and its position.

A DefinitionError, so `apply` refuses it like any other malformed definition; the on-demand view
parser prefixes the message with the view and feature it belongs to.
"""

from __future__ import annotations

from store.errors import DefinitionError


class ExpressionError(DefinitionError):
    """Bad syntax, an unknown name or a type mismatch in an expression.

    `token` is the offending token's text ("" at the end of the text), `position` its 0-based
    character offset in the expression.
    """

    def __init__(self, message: str, token: str, position: int) -> None:
        where = (
            "at the end of the expression" if token == "" else f"{token!r} at position {position}"
        )
        super().__init__(f"{message} ({where})")
        self.reason = message
        self.token = token
        self.position = position
