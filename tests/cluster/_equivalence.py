"""Helpers of the tests comparing a cluster with a single root: Arrow IPC bodies, a root's Feast
JSON answer, the audit check of every tablet, and a router counting its node calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from app.feast_json import feast_json
from app.payloads import key_dtypes, parse_online_request
from cluster.broker import free_port
from cluster.config import ClusterConfig, RouterConfig
from cluster.router import Router
from store import Definitions, FeatureStore
from tests.cluster._nodes import NodeProcess
from tests.cluster._router import RouterProcess

IPC = {"content-type": "application/vnd.apache.arrow.stream"}


def ipc(table: pa.Table) -> bytes:
    """`table` as an Arrow IPC stream (the body of `/v1/ingest/{view}`)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def root_answer(fs: FeatureStore, req: dict[str, Any]) -> Any:
    """What `rickhouse serve` over `fs` answers to the Feast request `req`, as parsed JSON."""
    features = req.get("feature_service") or req["features"]
    res = fs.get_online_features(
        features, req["entities"], full_feature_names=req.get("full_feature_names", False)
    )
    return orjson.loads(orjson.dumps(feast_json(res), option=orjson.OPT_SERIALIZE_NUMPY))


def assert_audits_clean(nodes: Mapping[str, NodeProcess]) -> int:
    """Every tablet of every node audits 0 (each node's own `/v1/audit`, asked directly: the
    router's gathers only the nodes its last poll saw alive); the number of tablets."""
    tablets = 0
    for node, process in nodes.items():
        parts = process.get("/v1/audit")
        assert "error" not in parts, (node, parts)
        for p, views in parts.items():
            tablets += 1
            for view, a in views.items():
                assert a["mismatches"] == 0, (node, p, view, a)
                assert a.get("aggregate_mismatches", 0) == 0, (node, p, view, a)
    return tablets


def put_definitions(router: RouterProcess, defs: dict[str, Any], timeout_s: float = 60.0) -> None:
    """PUT `defs` through the router and wait until the router serves them (a loaded machine
    can make the router miss its nodes' polls for a while, and so the definitions)."""
    r = router.put("/v1/definitions", json=defs)
    assert r.status_code == 200, r.text
    want = Definitions.load(defs)
    deadline = time.monotonic() + timeout_s
    while Definitions.from_dict(got := router.get("/v1/definitions").json()) != want:
        assert time.monotonic() < deadline, (r.text, got)
        time.sleep(0.1)


def counted_read(config_path: Path, req: dict[str, Any]) -> tuple[Any, list[tuple[str, list]]]:
    """Read `req` through an in-process Router of the cluster at `config_path` (its own url, so
    its producer fences no one): (the answer, [(node, partitions) of each node call])."""
    config = ClusterConfig.load(config_path)
    config = replace(config, router=RouterConfig(f"http://127.0.0.1:{free_port()}"))

    async def go() -> tuple[Any, list[tuple[str, list]]]:
        router = Router(config, config.kafka.bootstrap_servers)
        await router.start()
        calls: list[tuple[str, list]] = []
        read_node = router._read_node

        async def counting(read: Any, g: Any, rows: Any, name: str, ps: list, tried: Any) -> None:
            calls.append((name, list(ps)))
            await read_node(read, g, rows, name, ps, tried)

        router._read_node = counting  # type: ignore[method-assign]
        try:
            raw = orjson.dumps(req)
            parsed = parse_online_request(raw, key_dtypes(router.parsed))
            status, body = await router.read(req, parsed.features, parsed.entities, {}, raw)
            assert status == 200, body
            return orjson.loads(body), calls
        finally:
            await router.close()

    return asyncio.run(go())
