"""Deletes and forgets through the cluster, against a single root fed the same batches.

- In process: a tablet fed by `ingest_at` and `delete_at` ends equal to a root fed by `ingest`
  and `delete`/`forget` (reads, sticky late events, audit 0 with 0 deleted rows, and again
  after a reopen that replays the log); `delete_at` is idempotent at or below the position and
  refuses bad keys with nothing written; delete records are cut to the record limit and merged.
- Real processes (Tansu broker, nodes a (0-1), b (2-3), a2 (replica of 0-1), the router), views
  keyed by user, by item, composite by the full key, composite `partition_by: user` and
  `replicate: all`: `DELETE /v1/entities/{view}` and `POST /v1/forget/{entity}` answer as
  `rickhouse serve` (same errors, same counts, plus `position`), reads through the router right
  after the answer equal the single root's, late events of deleted entities are dropped on both,
  a later event starts a new history, every tablet of every replica audits 0 with 0 rows of the
  forgotten entities, replicas hold the same deletes, and with a replica down the other one
  answers the delete without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest

from app.feast_json import feast_json
from cluster.broker import TestBroker
from cluster.deletes import decode_records, delete_slices, forget_targets
from store import Definitions, FeatureStore, ValidationError
from store.external import delete_at
from tests.cluster._nodes import DEFS, T0, TS, NodeProcess, batch, write_config
from tests.cluster._router import RouterProcess

P = 4
NODES = [("a", "0-1"), ("b", "2-3"), ("a2", "0-1")]
USERS_GONE = [3, 4, 5, 77]
ITEMS_GONE = ["i7", "i8"]
DEFS_X: dict[str, Any] = {
    "entities": DEFS["entities"],
    "feature_views": [
        *DEFS["feature_views"],
        {  # composite, routed by its full key: a forget of a user reaches every partition
            "name": "user_item",
            "entities": ["user", "item"],
            "features": [{"name": "n", "dtype": "int64"}],
        },
        {  # composite, beside its user
            "name": "user_item_pb",
            "entities": ["user", "item"],
            "partition_by": "user",
            "features": [{"name": "n", "dtype": "int64"}],
        },
        {  # every partition holds it all: a delete reaches every partition, counted once
            "name": "user_tier",
            "entities": ["user"],
            "replicate": "all",
            "features": [{"name": "tier", "dtype": "int64"}],
        },
    ],
}


def _pairs(i: int) -> pa.Table:
    users = [u % 90 for u in range(i * 7, i * 7 + 60)]
    items = [f"i{(u * 3 + i) % 12}" for u in range(60)]
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "item_id": items,
            "event_timestamp": pa.array([T0 + (i + k % 5) * 10**9 for k in range(60)], TS),
            "created_timestamp": pa.array([T0 + (i + 1) * 10**9] * 60, TS),
            "n": pa.array([i * 100 + k for k in range(60)], pa.int64()),
        }
    )


def _batches(n: int) -> list[tuple[str, pa.Table]]:
    out = []
    for i in range(n):
        out.append(batch(i, rows=80))
        out.append(("user_item", _pairs(i)))
        out.append(("user_item_pb", _pairs(i + 100)))
        if i % 2 == 0:
            users = list(range(i, 100, 3))
            tiers = pa.table(
                {
                    "user_id": pa.array(users, pa.int64()),
                    "event_timestamp": pa.array([T0 + i * 10**9] * len(users), TS),
                    "created_timestamp": pa.array([T0 + (i + 1) * 10**9] * len(users), TS),
                    "tier": pa.array([u % 4 + i for u in users], pa.int64()),
                }
            )
            out.append(("user_tier", tiers))
    return out


def _late(user: int) -> tuple[str, pa.Table]:
    """A late event of `user`: event time before any delete, created after the last batch."""
    return "user_stats", pa.table(
        {
            "user_id": pa.array([user], pa.int64()),
            "event_timestamp": pa.array([T0 + 60 * 10**9], TS),
            "created_timestamp": pa.array([T0 + 10**12], TS),
            "x": pa.array([123456], pa.int64()),
            "s": ["late"],
        }
    )


def _future(user: int, time_ns: int) -> tuple[str, pa.Table]:
    """An event of `user` after the delete: a new history."""
    return "user_stats", pa.table(
        {
            "user_id": pa.array([user], pa.int64()),
            "event_timestamp": pa.array([time_ns], TS),
            "created_timestamp": pa.array([time_ns], TS),
            "x": pa.array([777], pa.int64()),
            "s": ["new"],
        }
    )


def _next_second() -> int:
    """A whole second after now: a single root formats a column's event times with one unit
    for all its rows, a router merges per-partition answers: whole seconds read alike."""
    return (time.time_ns() // 10**9 + 2) * 10**9


def _reads() -> list[dict[str, Any]]:
    users = list(range(100))
    items = [f"i{k}" for k in range(12)]
    pairs_u = [u for u in range(0, 90, 3) for _ in range(2)]
    pairs_i = [
        f"i{(u * 3) % 12}" if j == 0 else f"i{u % 12}" for u in range(0, 90, 3) for j in range(2)
    ]
    return [
        {
            "features": ["user_stats:x", "user_stats:s", "user_tier:tier"],
            "entities": {"user_id": users},
        },
        {"features": ["item_stats:price"], "entities": {"item_id": items}},
        {
            "features": ["user_item:n", "user_item_pb:n"],
            "entities": {"user_id": pairs_u, "item_id": pairs_i},
            "full_feature_names": True,
        },
    ]


def _read_root(fs: FeatureStore) -> list[Any]:
    out = []
    for r in _reads():
        res = fs.get_online_features(
            r["features"], r["entities"], full_feature_names=r.get("full_feature_names", False)
        )
        out.append(orjson.loads(orjson.dumps(feast_json(res), option=orjson.OPT_SERIALIZE_NUMPY)))
    return out


def _same(got: list[Any], want: list[Any]) -> None:
    """got == want, else the first differing cell."""
    for g, w, req in zip(got, want, _reads(), strict=True):
        if g == w:
            continue
        assert g["metadata"] == w["metadata"], req
        for c, (gc, wc) in enumerate(zip(g["results"], w["results"], strict=True)):
            for field in ("values", "statuses", "event_timestamps"):
                for r, (x, y) in enumerate(zip(gc[field], wc[field], strict=True)):
                    assert x == y, (
                        req["features"],
                        c,
                        field,
                        r,
                        x,
                        y,
                        g["results"][0]["values"][r],
                    )


def _audit_clean(audit: dict[str, Any], where: str) -> None:
    for view, a in audit.items():
        assert a["mismatches"] == 0, (where, view, a)
        assert a.get("deleted_entity_rows", 0) == 0, (where, view, a)


# ------------------------------------------------------------------------- in process


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_delete_at_equals_a_single_root(tmp_path: Path) -> None:
    root = FeatureStore(tmp_path / "root")
    tablet = FeatureStore(tmp_path / "tablet")
    defs = Definitions.load(DEFS_X)
    try:
        root.apply(DEFS_X)
        tablet.apply_at(1, DEFS_X)
        seq = 1
        for view, table in _batches(6):
            root.ingest(view, table)
            seq += 3  # gaps, as Kafka offsets have
            tablet.ingest_at(seq, view, table)
        now = time.time_ns()  # the router's stamp; the root stamps its own clock
        # a delete of user_stats entities and a forget of users, as the router writes them
        one = root.delete("user_stats", {"user_id": USERS_GONE[:2]})
        targets = {"user_stats": pa.table({"user_id": pa.array(USERS_GONE[:2], pa.int64())})}
        got = _apply_slices(tablet, seq + 1, defs, targets, now, partitions=1)
        assert got == {"user_stats": one["deleted"]}
        assert delete_at(tablet, seq + 1, {"user_stats": {"user_id": [1]}}, now) is None
        two = root.forget("user", USERS_GONE)
        got = _apply_slices(tablet, seq + 2, defs, forget_targets(defs, "user", USERS_GONE), now, 1)
        assert got == two["views"], (got, two)
        three = root.forget("item", ITEMS_GONE)
        got = _apply_slices(tablet, seq + 3, defs, forget_targets(defs, "item", ITEMS_GONE), now, 1)
        assert got == three["views"]
        assert tablet.last_seq == seq + 3
        # bad keys: refused, nothing written, the position unchanged
        with pytest.raises(ValidationError):
            delete_at(tablet, seq + 4, {"user_stats": {"user_id": ["x"]}}, now)
        with pytest.raises(ValidationError):
            delete_at(tablet, seq + 4, {"user_stats": {"nope": [1]}}, now)
        assert tablet.last_seq == seq + 3
        # late events are dropped on both; an event after the delete starts a new history
        for view, table in (_late(USERS_GONE[0]), _future(USERS_GONE[1], now + 3600 * 10**9)):
            root.ingest(view, table)
            tablet.ingest_at(tablet.last_seq + 1, view, table)
        _same(_read_root(tablet), _read_root(root))
        _audit_clean(tablet.audit(), "tablet")
        _audit_clean(root.audit(), "root")
    finally:
        root.close()
        tablet.close()
    # the delete is replayed from the tablet's log after a reopen
    tablet = FeatureStore(tmp_path / "tablet")
    root = FeatureStore(tmp_path / "root")
    try:
        _same(_read_root(tablet), _read_root(root))
        _audit_clean(tablet.audit(), "reopened tablet")
    finally:
        root.close()
        tablet.close()


def _apply_slices(
    fs: FeatureStore,
    seq: int,
    defs: Definitions,
    targets: dict[str, pa.Table],
    now: int,
    partitions: int,
) -> dict[str, int] | None:
    """What a node does with the delete records of one partition (records cut small)."""
    slices = delete_slices(defs, targets, partitions, now, max_bytes=100)
    assert all(len(s.payload) <= 100 for s in slices)  # cut to the record limit
    assert len(slices) > 1 or len(targets) == 1
    merged, time_ns = decode_records([s.payload for s in slices])  # type: ignore[misc]
    assert time_ns == now
    return delete_at(fs, seq, merged, time_ns)


# ------------------------------------------------------------------------- real processes


@contextmanager
def _cluster(config: Path, tmp: Path, names: list[str]) -> Iterator[tuple[RouterProcess, dict]]:
    """The named nodes and the router, started in parallel (startup dominates on a loaded
    machine); all stopped on exit. The pool's threads spawned the children, which die with
    their spawning thread (PR_SET_PDEATHSIG): the pool lives until they are stopped."""
    nodes = {n: NodeProcess(config, n, tmp / f"{n}.log") for n in names}
    router = RouterProcess(config, tmp / "router.log")
    pool = ThreadPoolExecutor(len(nodes) + 1)
    try:
        starts = [pool.submit(n.start, 120.0) for n in nodes.values()]
        starts.append(pool.submit(router.start, 120.0))
        for f in starts:
            f.result()
        deadline = time.monotonic() + 30  # the router has seen every node
        while httpx.get(f"{router.url}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the router never saw every partition live"
            time.sleep(0.1)
        yield router, nodes
    finally:
        router.stop()
        for n in nodes.values():
            n.stop()
        pool.shutdown()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _ingest(router: Any, view: str, table: pa.Table) -> None:
    r = router.post(
        f"/v1/ingest/{view}",
        content=_ipc(table),
        headers={"content-type": "application/vnd.apache.arrow.stream"},
    )
    assert r.status_code == 200, r.text


def _read_router(router: Any) -> list[Any]:
    out = []
    for req in _reads():
        got = router.post("/get-online-features", json=req)
        assert got.status_code == 200, got.text
        out.append(got.json())
    return out


def _status(answer: dict[str, Any], user: int, column: int) -> tuple[Any, str]:
    users = answer["results"][0]["values"]
    col = answer["results"][column]
    i = users.index(user)
    return col["values"][i], col["statuses"][i]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_deletes_through_the_router_answer_as_one_root(
    broker: TestBroker, topic: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cluster.yaml", broker.bootstrap_servers, topic, P, NODES)
    root = FeatureStore(tmp_path / "oracle")
    try:
        root.apply(DEFS_X)
        with _cluster(config, tmp_path, [n for n, _ in NODES]) as (router, nodes):
            r = router.put("/v1/definitions", json=DEFS_X)
            assert r.status_code == 200, r.text
            for view, table in _batches(2):
                root.ingest(view, table)
                _ingest(router, view, table)
            _same(_read_router(router), _read_root(root))

            # bad input: the single root's errors, nothing written
            r = router.client.request("DELETE", f"{router.url}/v1/entities/nope",
                                      json={"entities": {"user_id": [1]}})  # fmt: skip
            assert r.status_code == 404, r.text
            r = router.client.request("DELETE", f"{router.url}/v1/entities/user_stats",
                                      json={"entities": {"user_id": ["x"]}})  # fmt: skip
            assert r.status_code == 422 and "user_id" in r.text, r.text
            r = router.client.request("DELETE", f"{router.url}/v1/entities/user_stats",
                                      json={"keys": [1]})  # fmt: skip
            assert r.status_code == 422 and "entities" in r.text, r.text
            assert router.post("/v1/forget/nobody", json={"keys": [1]}).status_code == 422

            # a delete, then forgets of users and items: same answers, plus the position
            want = root.delete("user_stats", {"user_id": USERS_GONE[:2]})
            r = router.client.request("DELETE", f"{router.url}/v1/entities/user_stats",
                                      json={"entities": {"user_id": USERS_GONE[:2]}})  # fmt: skip
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["deleted"] == want["deleted"] and got["position"], got
            assert "not_yet_applied" not in got
            assert set(got["seq"]) == set(got["position"])
            for entity, keys in (("user", USERS_GONE), ("item", ITEMS_GONE)):
                want = root.forget(entity, keys)
                r = router.post(f"/v1/forget/{entity}", json={"keys": keys})
                assert r.status_code == 200, r.text
                got = r.json()
                assert (got["deleted"], got["views"]) == (want["deleted"], want["views"]), got
                assert "not_yet_applied" not in got, got
            # read-your-writes right after the answers, equal to the single root
            _same(_read_router(router), _read_root(root))
            first = _read_router(router)[0]
            assert _status(first, USERS_GONE[0], 1) == (None, "NOT_FOUND")

            # sticky: a late event is dropped; an event after the delete starts a new history
            for view, table in (_late(USERS_GONE[0]), _future(USERS_GONE[1], _next_second())):
                root.ingest(view, table)
                _ingest(router, view, table)
            first = _read_router(router)[0]
            assert _status(first, USERS_GONE[0], 1) == (None, "NOT_FOUND")
            assert _status(first, USERS_GONE[1], 1) == (777, "PRESENT")
            _same(_read_router(router), _read_root(root))

            # every tablet of every replica: audit 0, no row of a forgotten entity
            # (a delete answers once ONE replica of each partition applied it: a2 catches up)
            done = nodes["a"].get("/v1/positions")["partitions"]
            nodes["a2"].wait_applied({p: done[str(p)]["applied_offset"] for p in (0, 1)})
            for node in nodes.values():
                tablets = httpx.get(f"{node.url}/v1/audit", timeout=300).json()
                for p, audit in tablets.items():
                    _audit_clean(audit, f"{node.name}/p{p}")
            # the replicas of partitions 0-1 hold the same deletes
            a = nodes["a"].get("/v1/stats")
            a2 = nodes["a2"].get("/v1/stats")
            for p in ("0", "1"):
                assert a[p]["deletes"] == a2[p]["deletes"], (a[p]["deletes"], a2[p]["deletes"])

            # a replica down: the other one's count answers, without waiting for the dead one
            nodes["a2"].kill()
            want = root.delete("user_tier", {"user_id": [0, 1, 2, 3, 6, 9]})
            r = router.client.request("DELETE", f"{router.url}/v1/entities/user_tier",
                                      json={"entities": {"user_id": [0, 1, 2, 3, 6, 9]}})  # fmt: skip
            assert r.status_code == 200, r.text
            assert r.json()["deleted"] == want["deleted"] and "not_yet_applied" not in r.json()
            _same(_read_router(router), _read_root(root))
    finally:
        root.close()
