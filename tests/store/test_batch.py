"""Batch validation and conversion: pyarrow, pandas and dict input; errors name view, column, row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from store.batch import convert_batch, store_schema
from store.definitions import Definitions
from store.errors import ValidationError

DEFS = Definitions.from_dict(
    {
        "entities": [
            {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
            {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
        ],
        "feature_views": [
            {
                "name": "v",
                "entities": ["user", "item"],
                "features": [
                    {"name": "f32", "dtype": "float32"},
                    {"name": "i32", "dtype": "int32"},
                    {"name": "flag", "dtype": "bool"},
                    {"name": "txt", "dtype": "string"},
                    {"name": "when", "dtype": "timestamp"},
                    {"name": "emb", "dtype": "float32[3]"},
                ],
            }
        ],
    }
)
VIEW = DEFS.feature_views["v"]
T0 = 1_738_238_400_000_000_000  # 2025-01-30T12:00:00Z


def _dict_batch() -> dict:
    return {
        "user_id": ["1001", 1002, 1003],
        "item_id": ["a", "b", "c"],
        "event_timestamp": [
            "2025-01-30T12:00:00",
            "2025-01-30T12:00:00Z",
            "2025-01-30T13:00:00+01:00",
        ],
        "f32": [0.5, "NaN", None],
        "i32": [1, None, 3],
        "flag": [True, False, None],
        "txt": ["x", None, "z"],
        "when": [T0 // 10**9, None, "2025-01-30T12:00:00Z"],  # a number is epoch seconds
        "emb": [[1, 2, 3], None, [0.5, 0.25, 0.125]],
    }


def test_dict_of_json_values_converts_to_the_store_schema() -> None:
    table, missing_created = convert_batch(VIEW, _dict_batch())
    assert missing_created.tolist() == [True] * 3
    assert table.schema == store_schema(VIEW)
    assert table.column("user_id").to_pylist() == [1001, 1002, 1003]
    ts = table.column("event_timestamp").cast(pa.int64()).to_pylist()
    assert ts == [T0, T0, T0]  # naive = UTC; +01:00 converted
    f32 = table.column("f32").to_pylist()
    assert f32[0] == 0.5 and np.isnan(f32[1]) and f32[2] is None
    assert table.column("emb").to_pylist()[1] is None
    assert table.column("when").cast(pa.int64()).to_pylist() == [T0, None, T0]


@pytest.mark.parametrize(
    ("given", "ns"),
    [
        ([1_740_816_000], [1_740_816_000 * 10**9]),  # Feast's UnixTimestamp: whole seconds
        ([1_740_816_000.25, -0.5], [1_740_816_000_250_000_000, -500_000_000]),
        (pa.array([1_740_816_000], pa.int32()), [1_740_816_000 * 10**9]),
        (pa.array([0.000000001, None]), [1, None]),
    ],
)
def test_numbers_in_timestamp_columns_are_epoch_seconds(given: object, ns: list) -> None:
    d = _dict_batch()
    n = len(given)
    d = {k: v[:n] for k, v in d.items()}
    d["when"] = given
    table, _ = convert_batch(VIEW, d)
    assert table.column("when").cast(pa.int64()).to_pylist() == ns


@pytest.mark.parametrize("value", [10**12, float("nan"), float("inf"), 1e19])
def test_epoch_seconds_out_of_the_ns_range_are_refused_naming_the_row(value: float) -> None:
    d = _dict_batch()
    d["when"] = [0, value, 0]
    with pytest.raises(ValidationError) as e:
        convert_batch(VIEW, d)
    assert (e.value.column, e.value.row) == ("when", 1) and "'when', row 1" in str(e.value)


def test_pandas_and_arrow_inputs_agree_with_dict_input() -> None:
    d = _dict_batch()
    d["f32"] = [0.5, None, None]  # pandas reads NaN as missing, so compare without NaN
    ref, _ = convert_batch(VIEW, d)
    df = ref.to_pandas()
    df["event_timestamp"] = df["event_timestamp"].dt.tz_localize(None)  # naive = UTC
    from_pandas, _ = convert_batch(VIEW, df)
    assert from_pandas.equals(ref)
    from_arrow, _ = convert_batch(VIEW, ref.to_batches()[0])
    assert from_arrow.equals(ref)


def test_created_column_is_taken_from_the_data() -> None:
    d = _dict_batch()
    d["created"] = [dt.datetime(2025, 1, 30, 12, tzinfo=dt.UTC)] * 3
    table, missing_created = convert_batch(VIEW, d)
    assert missing_created is None
    assert table.column("created_timestamp").cast(pa.int64()).to_pylist() == [T0] * 3
    d["created"] = [None, "2025-01-30T12:00:00Z", None]  # null created = not given (Feast)
    table, missing_created = convert_batch(VIEW, d)
    assert missing_created.tolist() == [True, False, True]
    assert table.column("created_timestamp").cast(pa.int64()).to_pylist() == [0, T0, 0]


@pytest.mark.parametrize(
    ("column", "value", "row", "message"),
    [
        ("user_id", "abc", 1, "cannot convert"),
        ("user_id", None, 1, "must not be null"),
        ("user_id", 1.5, 1, "cannot convert"),
        ("item_id", 7, 1, "cannot convert"),
        ("event_timestamp", None, 1, "must not be null"),
        ("event_timestamp", "yesterday", 1, "cannot convert"),
        ("i32", 2**40, 1, "cannot convert"),
        ("user_id", 2**63, 1, "cannot convert"),  # beyond int64: pyarrow cannot even hold it
        ("event_timestamp", 2**64, 1, "Unix epoch seconds"),
        ("flag", "yes", 1, "cannot convert"),
        ("emb", [1.0, 2.0], 1, "cannot convert"),
    ],
)
def test_bad_values_are_refused_naming_view_column_and_row(column, value, row, message) -> None:
    d = _dict_batch()
    d[column] = list(d[column])
    d[column][row] = value
    with pytest.raises(ValidationError, match=message) as err:
        convert_batch(VIEW, d)
    assert (err.value.view, err.value.column, err.value.row) == ("v", column, row)
    assert f"view 'v', column {column!r}, row {row}" in str(err.value)


def test_unknown_missing_and_ragged_columns_are_refused() -> None:
    d = _dict_batch()
    d["bogus"] = [1, 2, 3]
    with pytest.raises(ValidationError, match="unknown column.*bogus") as err:
        convert_batch(VIEW, d)
    assert err.value.column == "bogus"
    d = _dict_batch()
    del d["txt"]
    with pytest.raises(ValidationError, match="missing column.*txt"):
        convert_batch(VIEW, d)
    d = _dict_batch()
    d["txt"] = ["x"]
    with pytest.raises(ValidationError, match="unequal lengths"):
        convert_batch(VIEW, d)
    with pytest.raises(ValidationError, match="expected a pyarrow Table"):
        convert_batch(VIEW, [1, 2, 3])


def test_arrow_types_that_fit_are_cast_and_others_refused() -> None:
    d = _dict_batch()
    d["f32"] = [0.5, None, 1.0]  # Table.equals treats NaN as unequal to itself
    ref, _ = convert_batch(VIEW, d)
    wide = ref.set_column(
        ref.schema.get_field_index("i32"), "i32", pa.array([1, None, 3], pa.int64())
    )
    wide = wide.set_column(
        wide.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array([T0 // 1000] * 3, pa.timestamp("us")),
    )
    out, _ = convert_batch(VIEW, wide)
    assert out.equals(ref)
    bad = ref.set_column(ref.schema.get_field_index("txt"), "txt", pa.array([1, 2, 3]))
    with pytest.raises(ValidationError, match="column 'txt'.*expected strings"):
        convert_batch(VIEW, bad)
    df = pd.DataFrame(
        {"user_id": [1], "item_id": ["a"], "event_timestamp": [pd.Timestamp(T0, tz="UTC")]}
    )
    with pytest.raises(ValidationError, match="missing column"):
        convert_batch(VIEW, df)


@pytest.mark.parametrize("text", ["2025-01-01T00:00:00+99:00", "2025-13-01", "yesterday"])
def test_a_bad_timestamp_text_says_what_to_send_not_how_to_call_pandas(text: str) -> None:
    d = _dict_batch()
    d["event_timestamp"][1] = text
    with pytest.raises(ValidationError) as e:
        convert_batch(VIEW, d)
    message = str(e.value)
    assert (e.value.column, e.value.row) == ("event_timestamp", 1)
    assert text in message and "ISO 8601 text such as" in message
    assert "format=" not in message and "\n" not in message
