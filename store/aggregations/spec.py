"""Aggregation definitions: the `events`, `aggregations` and `hop` fields of a feature view.

`parse_aggregations` validates them and generates the aggregate features, named
`<column>_<function>_<window>` with the window text as written (`amount_sum_1h`). It knows nothing
of FeatureView (store/definitions.py calls it), so it returns plain (name, dtype) pairs.
Frozen dataclasses and pure functions; safe from any thread.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from store.duration import parse_duration
from store.errors import DefinitionError, short_repr

FUNCTIONS = ("count", "sum", "mean", "min", "max", "stddev", "last")
NUMERIC = frozenset({"int32", "int64", "float32", "float64"})
EVENT_DTYPES = ("int32", "int64", "float32", "float64", "bool", "string", "timestamp")
# which column dtypes each function accepts
_ACCEPTS = {
    "count": frozenset(EVENT_DTYPES),
    "last": frozenset(EVENT_DTYPES),
    "sum": NUMERIC,
    "mean": NUMERIC,
    "stddev": NUMERIC,
    "min": frozenset(EVENT_DTYPES),
    "max": frozenset(EVENT_DTYPES),
}
_WINDOW = re.compile(r"([1-9][0-9]*)([smhd])")  # fullmatch; the text becomes part of a name
AGGREGATION_FIELDS = frozenset({"events", "aggregations", "hop"})


@dataclass(frozen=True)
class Aggregation:
    """One generated aggregate feature: `function` of `column` over `window` (text as written)."""

    column: str
    function: str
    window: str  # as written: "1h", "7d"
    window_ns: int
    name: str  # <column>_<function>_<window>
    dtype: str  # result dtype
    column_dtype: str


def result_dtype(function: str, column_dtype: str) -> str:
    """count -> int64; sum, mean, stddev -> float64; min, max, last -> the column's dtype."""
    if function == "count":
        return "int64"
    if function in ("sum", "mean", "stddev"):
        return "float64"
    return column_dtype


def parse_aggregations(
    where: str, events: Sequence[tuple[str, str]], raw: object, hop: object
) -> tuple[tuple[Aggregation, ...], int]:
    """The aggregate features of `raw` (the `aggregations` list) over the event columns `events`
    ((name, dtype) pairs, already validated), and the hop in ns (0: exact sliding windows).

    Raises DefinitionError naming the view (`where`), the field and the offending token."""
    columns = dict(events)
    for name, dtype in events:
        if dtype not in EVENT_DTYPES:
            raise DefinitionError(
                f"{where}: event column {name!r} has dtype {dtype!r}; aggregation views take "
                f"{', '.join(EVENT_DTYPES)}"
            )
    if not isinstance(raw, list) or not raw:
        raise DefinitionError(f"{where}: aggregations must be a non-empty list")
    out: list[Aggregation] = []
    for i, item in enumerate(raw):
        label = f"{where} aggregation #{i}"
        if not isinstance(item, dict):
            raise DefinitionError(f"{label}: expected a mapping, got {short_repr(item)}")
        for key in ("column", "function", "windows"):
            if key not in item:
                raise DefinitionError(f"{label}: missing field {key!r}")
        unknown = set(item) - {"column", "function", "windows"}
        if unknown:
            raise DefinitionError(f"{label}: unknown field(s) {sorted(unknown, key=str)}")
        column, function, windows = item["column"], item["function"], item["windows"]
        if not isinstance(column, str) or column not in columns:
            raise DefinitionError(
                f"{label}: column {short_repr(column)} is not an event column; "
                f"events: {sorted(columns)}"
            )
        if function not in FUNCTIONS:
            raise DefinitionError(
                f"{label}: unknown function {short_repr(function)}; use one of {', '.join(FUNCTIONS)}"
            )
        dtype = columns[column]
        if dtype not in _ACCEPTS[function]:
            raise DefinitionError(
                f"{label}: function {function!r} does not apply to column {column!r} of dtype "
                f"{dtype}; it takes {', '.join(sorted(_ACCEPTS[function]))}"
            )
        if isinstance(windows, str):
            windows = [windows]
        if not isinstance(windows, list) or not windows:
            raise DefinitionError(f"{label}: windows must be a non-empty list such as [1h, 7d]")
        for w in windows:
            if not isinstance(w, str) or not _WINDOW.fullmatch(w):
                raise DefinitionError(
                    f"{label}: window {short_repr(w)} must be <positive int><s|m|h|d>, e.g. 30m, 7d"
                )
            ns = parse_duration(w, f"{label} window {w!r}")
            out.append(
                Aggregation(
                    column, function, w, ns, f"{column}_{function}_{w}",
                    result_dtype(function, dtype), dtype,
                )
            )  # fmt: skip
    names = [a.name for a in out]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise DefinitionError(f"{where}: aggregate feature {n!r} is defined twice")
        seen.add(n)
    clash = seen & set(columns)
    if clash:
        raise DefinitionError(
            f"{where}: aggregate feature name(s) {sorted(clash)} repeat an event column name"
        )
    hop_ns = parse_duration(hop, f"{where} hop") if hop not in (None, 0, "0") else 0
    if hop_ns and any(a.window_ns < hop_ns for a in out):
        short = min(out, key=lambda a: a.window_ns)
        raise DefinitionError(
            f"{where}: hop {hop!r} is longer than window {short.window!r} of {short.name!r}"
        )
    return tuple(out), hop_ns


def aggregations_to_dict(aggs: Sequence[Aggregation]) -> list[dict[str, object]]:
    """The `aggregations` list in the YAML shape: consecutive windows of one (column, function) in one
    entry; inverse of parse_aggregations."""
    out: list[dict[str, object]] = []
    windows: list[str] = []
    for a in aggs:
        if out and (out[-1]["column"], out[-1]["function"]) == (a.column, a.function):
            windows.append(a.window)
            continue
        windows = [a.window]
        out.append({"column": a.column, "function": a.function, "windows": windows})
    return out
