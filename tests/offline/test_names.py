"""Hostile names: identifiers are validated and quoted, paths never break out of their literal."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offline import FeatureQuery, InvalidNameError, OfflineStore
from tests.offline.conftest import T0, TS, options

HOSTILE = [
    'a"; DROP TABLE x; --',
    "x'y",
    "1abc",
    "a b",
    "a-b",
    "é",
    "",
    "a\x00b",
    "../../etc",
    "date=2020-01-01",
]


def schema(key: str = "user_id", feature: str = "x") -> pa.Schema:
    return pa.schema(
        [
            (key, pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            (feature, pa.int64()),
        ]
    )


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_view_key_and_feature_names_are_refused(tmp_path, name) -> None:
    off = OfflineStore(tmp_path, options())
    with pytest.raises(InvalidNameError, match="name"):
        off.register_view(name, schema(), ["user_id"])
    with pytest.raises(InvalidNameError):
        off.register_view("v", schema(key=name), [name])
    with pytest.raises(InvalidNameError):
        off.register_view("v", schema(feature=name), ["user_id"])
    off.register_view("v", schema(), ["user_id"])
    ents = pa.table({"user_id": [1], "event_timestamp": pa.array([T0], TS)})
    with pytest.raises(InvalidNameError):
        off.get_historical(ents, [FeatureQuery("v", [name], ["user_id"])])
    assert [p.name for p in (tmp_path / "offline").iterdir()] == ["manifest.json"]
    off.close()


@pytest.mark.parametrize("reserved", ["_seq", "_row", "created", "__rh_eid"])
def test_reserved_feature_names_are_refused(tmp_path, reserved) -> None:
    off = OfflineStore(tmp_path, options())
    with pytest.raises(InvalidNameError, match="reserved"):
        off.register_view("v", schema(feature=reserved), ["user_id"])
    off.close()


def test_sql_keywords_are_fine_names_and_hostile_paths_stay_literal(tmp_path) -> None:
    # names that are SQL keywords must work, because every identifier is quoted
    root = tmp_path / "r'o\"o t [x] *?"
    decoy = tmp_path / "r'o\"o t x ab"  # what the glob pattern would match
    off = OfflineStore(root, options())
    decoy_store = OfflineStore(decoy, options())
    s = pa.schema(
        [
            ("select", pa.int64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
            ("from", pa.string()),
        ]
    )
    for store, value in ((off, "real"), (decoy_store, "decoy")):
        store.register_view("order", s, ["select"])
        store.append(
            "order",
            pa.table(
                {
                    "select": pa.array([1], pa.int64()),
                    "event_timestamp": pa.array([T0], TS),
                    "created_timestamp": pa.array([T0], TS),
                    "from": [value],
                }
            ),
            1,
        )
        store.flush()
    ents = pa.table({"select": [1], "event_timestamp": pa.array([T0], TS), "group": ["g"]})
    q = [FeatureQuery("order", ["from"], ["select"])]
    assert off.get_historical(ents, q).column("from").to_pylist() == ["real"]
    assert off.scan("order").read_all().column("from").to_pylist() == ["real"]
    out = tmp_path / "out'; DROP TABLE x; --.parquet"
    ent_path = tmp_path / "ents '[x]'.parquet"
    pq.write_table(ents, ent_path)
    res = off.export(ent_path, q, out)
    assert res.rows == 1
    assert pq.read_table(out).to_pylist() == [
        {
            "select": 1,
            "event_timestamp": pq.read_table(out).column(1)[0].as_py(),
            "group": "g",
            "from": "real",
        }
    ]
    off.close()
    decoy_store.close()


def test_a_root_duckdb_cannot_read_literally_is_refused_up_front(tmp_path) -> None:
    with pytest.raises(InvalidNameError, match="backslash"):
        OfflineStore(tmp_path / "a\\b [c]", options())
    OfflineStore(tmp_path / "a\\b c", options()).close()  # a backslash alone is fine
