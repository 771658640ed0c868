"""Durations of the definitions (`ttl: 7d`): `<int><unit>` with unit s, m, h or d.

`0`, `"0"`, None or absent mean "no limit" and parse to 0. Pure functions.
"""

from __future__ import annotations

import re

from store.errors import DefinitionError

_UNIT_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION = re.compile(r"\s*([0-9]+)\s*([smhd]?)\s*")
MAX_NS = 2**63 - 1  # durations are compared with int64 ns timestamps (online and offline)


def parse_duration(value: object, where: str = "duration") -> int:
    """Nanoseconds of `value` (`30m`, `2h`, `7d`, `45s`, a bare integer = seconds; 0 = none).

    At most MAX_NS: longer durations, negative ones and anything else raise DefinitionError."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise DefinitionError(f"{where}: expected a duration such as 30m, 2h or 7d, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise DefinitionError(f"{where}: duration must not be negative")
        return _bounded(value * 10**9, where)
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m:
            digits = m.group(1).lstrip("0") or "0"
            if len(digits) > 20:  # int() refuses very long digit strings; this is too long anyway
                return _bounded(MAX_NS + 1, where)
            return _bounded(int(digits) * _UNIT_NS[m.group(2) or "s"], where)
    raise DefinitionError(
        f"{where}: expected a duration such as 30m, 2h or 7d, got {repr(value)[:80]}"
    )


def _bounded(ns: int, where: str) -> int:
    if ns > MAX_NS:
        raise DefinitionError(
            f"{where}: duration is too long; at most {MAX_NS // _UNIT_NS['d']}d (int64 nanoseconds)"
        )
    return ns


def format_duration(ns: int) -> str:
    """The shortest `<int><unit>` spelling of `ns` (inverse of parse_duration); 0 -> "0"."""
    if ns == 0:
        return "0"
    for unit in ("d", "h", "m", "s"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    raise DefinitionError(f"duration of {ns} ns is not a whole number of seconds")
