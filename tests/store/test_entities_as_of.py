"""export_training(entities_as_of=...): the latest row of every entity at an instant, against a
brute-force oracle, through both join plans and in several chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import offline.entities_as_of
import offline.reads
from store.errors import ValidationError
from tests.store.conftest import HOUR, open_store

T0 = 1_767_225_600 * 10**9  # 2026-01-01 UTC
TS = pa.timestamp("ns", tz="UTC")
DEFS = {
    "entities": [
        {"name": "user", "join_keys": ["user_id"], "dtype": "int64"},
        {"name": "item", "join_keys": ["item_id"], "dtype": "string"},
    ],
    "feature_views": [
        {
            "name": "a",
            "entities": ["user"],
            "ttl": "3h",
            "features": [{"name": "x", "dtype": "int64"}, {"name": "s", "dtype": "string"}],
        },
        {"name": "b", "entities": ["user"], "features": [{"name": "y", "dtype": "float64"}]},
        {
            "name": "c",
            "entities": ["item"],
            "ttl": "2h",
            "features": [{"name": "z", "dtype": "int64"}],
        },
    ],
}


def _batch(rng: np.random.Generator, n: int, key: str, cols: dict) -> pa.Table:
    keys = rng.integers(0, 40, n)
    ets = T0 + rng.integers(0, 30, n) * HOUR // 2
    data = {
        key: pa.array([f"k{k}" for k in keys]) if key == "item_id" else pa.array(keys),
        "event_timestamp": pa.array(ets, TS),
        "created_timestamp": pa.array(ets + rng.integers(0, 3, n) * 10**9, TS),
    }
    for name, make in cols.items():
        data[name] = make(n)
    return pa.table(data)


def _oracle(rows: dict[str, list[dict]], views: dict, key: str, ts: int) -> list[dict]:
    """views: name -> (ttl ns, features). Latest by (event, created, arrival order)."""
    keys = {
        r[key]
        for v, (ttl, _) in views.items()
        for r in rows[v]
        if r["event_timestamp"] <= ts and (not ttl or r["event_timestamp"] >= ts - ttl)
    }
    out = []
    for k in sorted(keys):
        row = {key: k, "event_timestamp": ts}
        for v, (ttl, feats) in views.items():
            best = None
            for order, r in enumerate(rows[v]):
                if r[key] != k or r["event_timestamp"] > ts:
                    continue
                version = (r["event_timestamp"], r["created_timestamp"], order)
                if best is None or version > best[0]:
                    best = (version, r)
            fresh = best is not None and (not ttl or best[1]["event_timestamp"] >= ts - ttl)
            row |= {f: best[1][f] if fresh else None for f in feats}
        out.append(row)
    return out


def _rows(table: pa.Table) -> list[dict]:
    t = table.cast(
        pa.schema(
            [f.with_type(pa.int64()) if pa.types.is_timestamp(f.type) else f for f in table.schema]
        )
    )
    return t.to_pylist()


@pytest.mark.parametrize("plan", ["auto", "asof"])
def test_entities_as_of_matches_oracle(tmp_path, monkeypatch, plan) -> None:
    from offline import OfflineOptions
    from online import TreeOptions

    monkeypatch.setattr(offline.reads, "export_as_of", _small_chunks)
    fs = open_store(
        tmp_path / "root",
        tree_options=TreeOptions(background=False, t_wait_s=0.0),
        offline_options=OfflineOptions(background=False, join_plan=plan, row_group_rows=16),
    )
    fs.apply(DEFS)
    rng = np.random.default_rng(3)
    rows: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
    makers = {
        "a": (
            "user_id",
            {
                "x": lambda n: pa.array(rng.integers(0, 99, n)),
                "s": lambda n: pa.array([f"s{v}" for v in rng.integers(0, 9, n)]),
            },
        ),
        "b": ("user_id", {"y": lambda n: pa.array(rng.random(n))}),
        "c": ("item_id", {"z": lambda n: pa.array(rng.integers(0, 99, n))}),
    }
    for i in range(12):
        view = "abc"[i % 3]
        key, cols = makers[view]
        batch = _batch(rng, int(rng.integers(5, 40)), key, cols)
        fs.ingest(view, batch)
        rows[view] += _rows(batch)
        if i == 7:
            fs.flush()
    for ts in (T0 + 5 * HOUR, T0 + 9 * HOUR + 1, T0 - 1):
        out = tmp_path / "out.parquet"
        res = fs.export_training(
            features=["a:x", "a:s", "b:y"], out_path=out, entities_as_of=pd.Timestamp(ts, tz="UTC")
        )
        want = _oracle(rows, {"a": (3 * HOUR, ["x", "s"]), "b": (0, ["y"])}, "user_id", ts)
        got = _rows(pq.read_table(out))
        assert res["rows"] == len(want) and got == want, ts
        res = fs.export_training(None, ["c:z"], out, entities_as_of=pd.Timestamp(ts, tz="UTC"))
        assert _rows(pq.read_table(out)) == _oracle(rows, {"c": (2 * HOUR, ["z"])}, "item_id", ts)
    iso = fs.export_training(
        None, ["b:y"], tmp_path / "iso.parquet", entities_as_of="2026-01-01T05:00:00Z"
    )
    assert iso["entities_as_of"] == T0 + 5 * HOUR
    with pytest.raises(ValidationError, match="same join keys"):
        fs.export_training(
            None, ["a:x", "c:z"], tmp_path / "x.parquet", entities_as_of="2026-01-01"
        )
    with pytest.raises(ValidationError, match="either entities or entities_as_of"):
        fs.export_training(None, ["a:x"], tmp_path / "x.parquet")
    with pytest.raises(ValidationError, match="not a timestamp"):
        fs.export_training(None, ["a:x"], tmp_path / "x.parquet", entities_as_of="yesterday")
    fs.close()


_real = offline.entities_as_of.export_as_of


def _small_chunks(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    return _real(*args, **kwargs, chunk_rows=7)  # several chunks, each its own key range


def test_entities_as_of_over_http_and_cli(tmp_path) -> None:
    from typer.testing import CliRunner

    from app.cli import cli
    from tests.app.conftest import make_client

    root = tmp_path / "root"
    fs = open_store(root)
    fs.apply(DEFS)
    rng = np.random.default_rng(1)
    fs.ingest("b", _batch(rng, 30, "user_id", {"y": lambda n: pa.array(rng.random(n))}))
    want = fs.export_training(None, ["b:y"], tmp_path / "w.parquet", entities_as_of="2026-01-02")
    fs.close()
    with make_client(root) as client:
        r = client.post(
            "/v1/training-export",
            json={"features": ["b:y"], "entities_as_of": "2026-01-02T00:00:00Z"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == want["rows"]
        got = pq.read_table(r.json()["path"])
        assert got.equals(pq.read_table(tmp_path / "w.parquet"))
        bad = client.post(
            "/v1/training-export",
            json={"features": ["b:y"], "entities_as_of": "2026-01-02", "entities": {}},
        )
        assert bad.status_code == 422 and "instead of" in bad.text, bad.text
        bad = client.post(
            "/v1/training-export", json={"features": ["b:y"], "entities_as_of": "soon"}
        )
        assert 400 <= bad.status_code < 500, bad.text
    res = CliRunner().invoke(
        cli,
        [
            "export",
            "--root",
            str(root),
            "--features",
            "b:y",
            "--out",
            str(tmp_path / "c.parquet"),
            "--entities-as-of",
            "1767312000",
        ],
    )
    assert res.exit_code == 0, res.output
    assert pq.read_table(tmp_path / "c.parquet").equals(pq.read_table(tmp_path / "w.parquet"))


def _user_batch(keys: list[int], ets: list[int], **cols: list) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(keys, pa.int64()),
            "event_timestamp": pa.array(ets, TS),
            "created_timestamp": pa.array(ets, TS),
            **cols,
        }
    )


@pytest.mark.parametrize("flush", [False, True])
def test_entities_as_of_after_delete_and_forget_matches_export(tmp_path, flush) -> None:
    fs = open_store(tmp_path / "root")
    fs.apply(DEFS)
    keys = [1, 2, 3, 4, 5]
    fs.ingest("a", _user_batch(keys, [T0] * 5, x=keys, s=[f"s{k}" for k in keys]))
    fs.ingest("b", _user_batch(keys, [T0 + HOUR] * 5, y=[k / 10 for k in keys]))
    if flush:
        fs.flush()
    fs.delete("a", {"user_id": [3]})  # from view a only: b's features stay
    fs.forget("user", [5])  # from every view keyed by user: no row at all
    ts = T0 + 2 * HOUR
    res = fs.export_training(None, ["a:x", "b:y"], tmp_path / "o.parquet", entities_as_of=ts / 1e9)
    got = _rows(pq.read_table(res["path"]))
    assert [r["user_id"] for r in got] == [1, 2, 3, 4] and res["rows"] == 4
    assert got[2] == {"user_id": 3, "event_timestamp": ts, "x": None, "y": 0.3}
    # the same rows as a point-in-time export of those entities after the delete
    ents = pa.table(
        {"user_id": pa.array(keys, pa.int64()), "event_timestamp": pa.array([ts] * 5, TS)}
    )
    pit = _rows(
        pq.read_table(fs.export_training(ents, ["a:x", "b:y"], tmp_path / "p.parquet")["path"])
    )
    assert [r for r in pit if r["x"] is not None or r["y"] is not None] == got
    assert pit[4] == {"user_id": 5, "event_timestamp": ts, "x": None, "y": None}
    fs.close()


def test_entities_as_of_counts_rows_outside_retention(tmp_path) -> None:
    import time

    defs = {
        "entities": DEFS["entities"],
        "feature_views": [
            {
                "name": "r",
                "entities": ["user"],
                "retention": "3d",
                "features": [{"name": "x", "dtype": "int64"}],
            },
            DEFS["feature_views"][1],
        ],
    }
    fs = open_store(tmp_path / "root")
    fs.apply(defs)
    now = time.time_ns()
    day = 24 * HOUR
    fs.ingest("r", _user_batch([1, 2], [now - 6 * day, now - day], x=[10, 20]))
    fs.ingest("b", _user_batch([1, 2], [now - 6 * day, now - 6 * day], y=[0.1, 0.2]))
    out = tmp_path / "o.parquet"
    recent = fs.export_training(None, ["r:x", "b:y"], out, entities_as_of=now / 1e9)
    assert recent["outside_retention"] == {"r": 0} and recent["rows"] == 2
    assert pq.read_table(out).column("x").to_pylist() == [10, 20]
    old = fs.export_training(None, ["r:x", "b:y"], out, entities_as_of=(now - 5 * day) / 1e9)
    assert old["outside_retention"] == {"r": 2} and old["rows"] == 2
    assert pq.read_table(out).column("x").to_pylist() == [None, None]
    assert pq.read_table(out).column("y").to_pylist() == [0.1, 0.2]
    plain = fs.export_training(None, ["b:y"], out, entities_as_of=now / 1e9)
    assert "outside_retention" not in plain
    fs.close()
