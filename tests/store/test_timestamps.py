"""store/timestamps.py: the one ISO 8601 / epoch-seconds parser, against pandas as the oracle."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from store.dtypes import TIMESTAMP
from store.timestamps import from_epoch_seconds, parse_iso8601, to_utc

TEXTS = ["2025-01-30T12:00:00Z", "2025-01-30T12:00:00.123456789+02:00", "2025-01-30 12:00", None]


@pytest.mark.parametrize(
    "values", [TEXTS, pa.array(TEXTS), pa.chunked_array([TEXTS[:2], TEXTS[2:]])]
)
def test_iso8601_text_parses_to_utc_ns_with_naive_as_utc(values) -> None:
    out = parse_iso8601(values)
    assert out.type == TIMESTAMP
    expected = [
        pd.Timestamp("2025-01-30T12:00:00", tz="UTC"),
        pd.Timestamp("2025-01-30T10:00:00.123456789", tz="UTC"),
        pd.Timestamp("2025-01-30T12:00", tz="UTC"),
    ]
    assert out.to_pandas().tolist()[:3] == expected
    assert out.null_count == 1 and not out[3].is_valid


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["2025-13-01T00:00:00Z"], "expected ISO 8601 text such as"),
        (["yesterday"], "expected ISO 8601 text such as"),
        (["2025-01-01", 17], "row 1: 17 is not ISO 8601 text"),
        (["3000-01-01T00:00:00Z"], "expected ISO 8601 text such as"),
    ],
)
def test_what_is_not_iso8601_is_a_value_error_naming_it(values, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_iso8601(values)


def test_epoch_seconds_keep_their_fraction() -> None:
    out = from_epoch_seconds(pa.array([1_738_238_403, 0]))
    assert out.type == TIMESTAMP
    assert out.cast(pa.int64()).to_pylist() == [1_738_238_403 * 10**9, 0]
    frac = from_epoch_seconds(pa.array([1_738_238_403.25]))
    assert frac.cast(pa.int64()).to_pylist() == [1_738_238_403_250_000_000]
    with pytest.raises(pa.ArrowInvalid):
        from_epoch_seconds(pa.array([10**12]))  # year 33658: outside the ns range


def test_arrow_timestamps_keep_their_instant_and_naive_means_utc() -> None:
    naive = pa.array([dt.datetime(2025, 1, 30, 12)])
    aware = pa.array([pd.Timestamp("2025-01-30T14:00", tz="Europe/Berlin")])
    assert to_utc(naive).to_pylist() == [pd.Timestamp("2025-01-30T12:00", tz="UTC")]
    assert to_utc(aware).to_pylist() == [pd.Timestamp("2025-01-30T13:00", tz="UTC")]
    assert to_utc(naive).type == TIMESTAMP
