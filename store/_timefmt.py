"""RFC 3339 text of int64 nanosecond timestamps, many at once, in one numba kernel.

The serving path writes an event time per entity and view: one pass of this kernel over the
array, then one decode, instead of numpy's datetime_as_string value by value. The text is
exactly numpy's `datetime_as_string(..., unit=unit, timezone="UTC")` for every int64 but NaT
(tests/app/test_feast_json.py compares them); the caller maps NaT and 0 itself.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["UNITS", "format_utc"]

# unit -> (digits after the point, text width incl. the trailing Z)
UNITS = {"s": (0, 20), "ms": (3, 24), "us": (6, 27), "ns": (9, 30)}
_DAY_NS = 86_400 * 10**9


@numba.njit(cache=True, nogil=True)
def _format(ns: np.ndarray, digits: int, out: np.ndarray) -> None:
    """out[i] = ASCII "YYYY-MM-DDTHH:MM:SS[.f{digits}]Z" of ns[i] (years 1677..2262: 4 digits)."""
    for i in range(len(ns)):
        t = ns[i]
        days = t // _DAY_NS  # floor, also for times before 1970
        rem = t - days * _DAY_NS
        # civil date from days since 1970-01-01 (H. Hinnant's algorithm)
        z = days + 719468
        era = z // 146097
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        day = doy - (153 * mp + 2) // 5 + 1
        month = mp + 3 if mp < 10 else mp - 9
        year = yoe + era * 400 + (1 if month <= 2 else 0)
        sec = rem // 1_000_000_000
        frac = rem - sec * 1_000_000_000
        hh = sec // 3600
        mm = (sec // 60) % 60
        ss = sec % 60
        out[i, 0] = 48 + year // 1000
        out[i, 1] = 48 + (year // 100) % 10
        out[i, 2] = 48 + (year // 10) % 10
        out[i, 3] = 48 + year % 10
        out[i, 4] = 45  # -
        out[i, 5] = 48 + month // 10
        out[i, 6] = 48 + month % 10
        out[i, 7] = 45
        out[i, 8] = 48 + day // 10
        out[i, 9] = 48 + day % 10
        out[i, 10] = 84  # T
        out[i, 11] = 48 + hh // 10
        out[i, 12] = 48 + hh % 10
        out[i, 13] = 58  # :
        out[i, 14] = 48 + mm // 10
        out[i, 15] = 48 + mm % 10
        out[i, 16] = 58
        out[i, 17] = 48 + ss // 10
        out[i, 18] = 48 + ss % 10
        p = 19
        if digits:
            out[i, 19] = 46  # .
            f = frac // 10 ** (9 - digits)
            for k in range(digits, 0, -1):
                out[i, 19 + k] = 48 + f % 10
                f //= 10
            p = 20 + digits
        out[i, p] = 90  # Z


def format_utc(ns: np.ndarray, unit: str) -> list[str]:
    """The text of each int64 ns value in `unit` (s, ms, us or ns), as a list of str."""
    digits, width = UNITS[unit]
    ns = np.ascontiguousarray(ns, dtype=np.int64)
    out = np.empty((len(ns), width), dtype=np.uint8)
    _format(ns, digits, out)
    text = out.tobytes().decode("ascii")  # one decode, then str slices: cheaper than per value
    return [text[i : i + width] for i in range(0, len(text), width)]
