"""Durations of the definitions (`ttl: 7d`): `<int><unit>` with unit s, m, h or d.

`0`, `"0"`, None or absent mean "no limit" and parse to 0. Pure functions.
"""

from __future__ import annotations

import re

from store.errors import DefinitionError

_UNIT_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_duration(value: object, where: str = "duration") -> int:
    """Nanoseconds of `value` (`30m`, `2h`, `7d`, `45s`, a bare integer = seconds; 0 = none)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise DefinitionError(f"{where}: expected a duration such as 30m, 2h or 7d, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise DefinitionError(f"{where}: duration must not be negative, got {value}")
        return value * 10**9
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(m.group(1)) * _UNIT_NS[m.group(2) or "s"]
    raise DefinitionError(f"{where}: expected a duration such as 30m, 2h or 7d, got {value!r}")


def format_duration(ns: int) -> str:
    """The shortest `<int><unit>` spelling of `ns` (inverse of parse_duration); 0 -> "0"."""
    if ns == 0:
        return "0"
    for unit in ("d", "h", "m", "s"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    raise DefinitionError(f"duration of {ns} ns is not a whole number of seconds")
