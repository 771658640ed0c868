"""Identifier validation and SQL quoting: the only way a user string reaches DuckDB SQL.

Names are validated against `IDENTIFIER` and then still double-quoted; file paths travel as
bound parameters, or (COPY TO, which takes no parameter) as single-quoted literals with quotes
doubled. Pure functions, thread-safe.
"""

from __future__ import annotations

import re

from offline.errors import InvalidNameError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Columns the store adds to every row; on-disk format, do not change.
SEQ_COLUMN = "_seq"
ROW_COLUMN = "_row"
EVENT_TS = "event_timestamp"
CREATED_TS = "created_timestamp"
# Prefix of the columns a query adds for itself; refused in user tables.
INTERNAL_PREFIX = "__rh_"
RESERVED = {SEQ_COLUMN, ROW_COLUMN, EVENT_TS, CREATED_TS, "created"}


def check_identifier(name: object, what: str) -> str:
    """Return `name` if it is an identifier, else raise InvalidNameError naming `what`."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise InvalidNameError(
            f"invalid {what} name {name!r}: use letters, digits and '_' only, "
            "not starting with a digit"
        )
    return name


def check_column(name: object, what: str) -> str:
    """An identifier that is neither reserved nor internal (keys and features)."""
    check_identifier(name, what)
    assert isinstance(name, str)
    if name in RESERVED or name.startswith(INTERNAL_PREFIX):
        raise InvalidNameError(f"{what} name {name!r} is reserved: choose another name")
    return name


def quote_ident(name: str) -> str:
    """Double-quote an identifier for SQL (validated names never contain quotes; doubled anyway)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(text: str) -> str:
    """A single-quoted SQL string literal; refuses NUL, which no file path can hold."""
    if "\x00" in text:
        raise InvalidNameError(f"path {text!r} contains a NUL byte")
    return "'" + text.replace("'", "''") + "'"


_GLOB_CHARS = re.compile(r"([\[\]*?])")


def literal_path(path: str) -> str:
    """A file path as DuckDB's readers take it literally: glob characters bracket-escaped.

    DuckDB expands `*`, `?` and `[...]` in every path it reads, so a directory named `r[x]`
    would silently read `rx`. Escaped as `[[]`, `[*]`, ... the path matches only itself.
    A backslash next to glob characters cannot be escaped that way: refused.
    """
    if "\x00" in path:
        raise InvalidNameError(f"path {path!r} contains a NUL byte")
    if not _GLOB_CHARS.search(path):
        return path
    if "\\" in path:
        raise InvalidNameError(
            f"path {path!r} holds both a backslash and glob characters (*?[]), which DuckDB "
            "cannot read literally; rename the directory or file"
        )
    return _GLOB_CHARS.sub(r"[\1]", path)
