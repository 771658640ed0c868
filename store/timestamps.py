"""Timestamps as users give them -> Arrow timestamp[ns, UTC], and back to RFC 3339 text: the
one parser (and formatter) of the project.

Text is ISO 8601 / RFC 3339 (naive means UTC); a number is Unix epoch seconds (Feast's
UnixTimestamp and JSON APIs); an Arrow timestamp or date keeps its instant (naive means UTC).
Every layer that reads timestamps from users (batches, entity tables, CLI files, HTTP bodies)
calls these functions; `format_utc` (a numba kernel in store/_timefmt.py) writes them back.
Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from store._timefmt import format_utc
from store.dtypes import TIMESTAMP

__all__ = ["format_utc", "from_epoch_seconds", "parse_iso8601", "to_utc"]


def parse_iso8601(values: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    """ISO 8601 text -> timestamp[ns, UTC]; naive text means UTC, null stays null.

    values: an Arrow string array, or a Python sequence of str or None.
    Raises ValueError naming what could not be parsed (a value that is not text, not ISO 8601,
    or outside 1677-09-21..2262-04-11), ending with an example of the expected text.
    """
    if isinstance(values, pa.Array | pa.ChunkedArray):
        items = values.to_pylist()
    else:
        items = list(values)
        for i, v in enumerate(items):
            if v is not None and not isinstance(v, str):
                raise ValueError(f"row {i}: {v!r} is not ISO 8601 text{_EXAMPLE}")
    try:
        parsed = pd.to_datetime(pd.Series(items, dtype=object), utc=True, format="ISO8601")
    except (ValueError, OverflowError, TypeError) as e:  # pandas' parse errors are ValueErrors
        # keep pandas' first sentence, not its advice on calling pandas
        what = str(e).split(". You might want to try")[0].split("\n")[0]
        raise ValueError(f"{what}{_EXAMPLE}") from None
    try:
        return pa.array(parsed, from_pandas=True).cast(TIMESTAMP)
    except pa.ArrowInvalid as e:
        raise ValueError(f"{e}{_EXAMPLE}") from None


_EXAMPLE = "; expected ISO 8601 text such as 2025-01-30T12:00:00Z (naive means UTC)"


def from_epoch_seconds(arr: pa.Array) -> pa.Array:
    """Numbers as Unix epoch seconds -> timestamp[ns, UTC]; a fraction keeps its sub-second
    part. Raises ArrowInvalid when out of the ns range."""
    if pa.types.is_integer(arr.type):
        return arr.cast(pa.int64()).cast(pa.timestamp("s", tz="UTC")).cast(TIMESTAMP)
    x = arr.cast(pa.float64())
    whole = pc.floor(x)
    # whole seconds and the fraction apart: float64 holds ~1e-7 s at today's epoch, but only
    # ~256 ns once multiplied out to ns
    ns = pc.add_checked(
        whole.cast(pa.int64()).cast(pa.timestamp("s", tz="UTC")).cast(TIMESTAMP).cast(pa.int64()),
        pc.round(pc.multiply(pc.subtract(x, whole), 1e9)).cast(pa.int64()),
    )
    return ns.cast(TIMESTAMP)


def to_utc(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """An Arrow timestamp or date array -> timestamp[ns, UTC]; a naive timestamp means UTC.
    Raises ArrowInvalid when a value is out of the ns range."""
    return arr.cast(TIMESTAMP)
