"""The router's logic: node liveness and positions, scattered reads with failover, and the
transactional write of validated batches. The HTTP face is app/router_server.py.

Reads (`Router.read`): the request's rows are planned per routing group and partition
(cluster/scatter.py); each partition goes to one live replica (round robin over the replicas
whose last known position satisfies the read, then over any live one), one keep-alive HTTP
request per (group, node) through cluster/node_client.py (a lean client: the read hot path). A
request of one routing group whose rows all fall in one partition (one entity always does) is
forwarded as its bytes with `route_by=@<partition>` (the node reads that tablet, no re-routing)
and the node's answer is returned as its bytes. A replica that fails (connection error,
timeout, 5xx, 421) is marked down and its rows are re-planned over the other replicas of their
partitions: with one replica of every partition alive no read fails. A node's 4xx answer is the
answer (the request is bad).

Read-your-writes: the router remembers, per partition, the highest offset of every ingest it
acknowledged (`acked`); a read needs max(acked, the request's `min_position`) per partition and
passes it to the node, which waits a bounded time for its tablets to get there, else 503.

Writes (`Router.ingest`, `Router.apply`): validate with the applied definitions (the same
store.batch.convert_batch as a single root, same errors), stamp created_timestamp, split by
partition keeping row order, produce in one Kafka transaction; return {partition: offset} after
the commit. Each batch carries a batch id and ends, in the same transaction, with a commit
record per partition it touches (cluster/staging.py): nodes apply a batch only at its commit
record, so a batch is all-or-nothing even on a broker that delivers aborted records. The
TransactionalProducer's id derives from the router's url, so a restarted router
fences its zombie and aborts its open transaction.

Threading: async methods run on the server's event loop; `ingest`/`apply` are blocking (call
them in a worker thread; cluster/writer.py is thread-safe); `nodes` entries and `definitions`
are replaced whole by the event loop only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import numpy as np
import orjson

from cluster.config import ClusterConfig, NodeConfig
from cluster.control import encode_definitions
from cluster.errors import ClusterError
from cluster.node_client import NodeClient
from cluster.on_demand import read_on_demand
from cluster.partitioning import routing_of
from cluster.record import Slice
from cluster.router_state import NodeStatus, NoReplicaError, RouterOptions
from cluster.scatter import Answer, GroupRows, merge, plan, sub_entities
from cluster.tablets import PINNED
from cluster.writer import BatchWriter
from store import Definitions
from store.batch import convert_batch
from store.errors import UnknownPushSourceError, UnknownViewError
from store.placement import refuse_placement_changes

log = logging.getLogger(__name__)
COLUMNS_HEADER = "x-rickhouse-columns"  # node -> router, see app/node_server.py
_JSON = {"content-type": "application/json"}
# a node that cannot be reached, times out, or answers what is not JSON (NodeCallError and
# TimeoutError are OSErrors)
_HTTP_ERRORS = (aiohttp.ClientError, OSError, ValueError)


@dataclass
class _Read:
    body: Mapping[str, Any]  # the request as parsed JSON
    entities: Mapping[str, Sequence[Any]]  # typed keys, for hashing
    required: dict[int, int]  # partition -> offset a replica must have applied
    raw: bytes | None = None  # the request's bytes, forwarded as they are for all the rows
    groups: int = 1  # routing groups of the request
    answers: list[Answer] = field(default_factory=list)


class Router:
    """Routes reads to replicas and writes to the log for one cluster (module docstring)."""

    def __init__(
        self, config: ClusterConfig, bootstrap_servers: str, options: RouterOptions | None = None
    ) -> None:
        self.config = config
        self.bootstrap_servers = bootstrap_servers
        self.options = options or RouterOptions()
        self.nodes: dict[str, NodeStatus] = {n.name: NodeStatus(n) for n in config.nodes}
        self.definitions: dict[str, Any] = {}  # the nodes' applied definitions, replaced whole
        self.parsed = Definitions.load({})  # `definitions` parsed; replaced with it
        self.writer = BatchWriter(
            bootstrap_servers,
            config.kafka.topic,
            "rickhouse-router-" + urlsplit(config.router.url).netloc,
            self.options.producer,
        )
        self._turn = itertools.count()
        self._client: aiohttp.ClientSession | None = None
        self._reads = NodeClient()  # the read hot path's connections
        self._address = {n.name: _address(n.url) for n in config.nodes}  # name -> (host, port)
        self._poller: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=self.options.request_timeout_s),
        )
        await self.poll()
        self._poller = asyncio.create_task(self._poll_forever())
        threading.Thread(target=self.writer.warm, name="router-producer", daemon=True).start()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._client is not None:
            await self._client.close()
        await self._reads.close()
        self.writer.close()

    # ------------------------------------------------------------------ node state

    async def poll(self) -> None:
        """Ask every node its positions (and one live node the definitions), concurrently."""
        await asyncio.gather(*(self._poll_node(n) for n in self.config.nodes))
        await self.refresh_definitions()

    async def refresh_definitions(self, position: Mapping[int, int] | None = None) -> None:
        """Take the definitions of a live node; with `position` (an apply's), of one that applied
        it on its partitions, so the router never keeps the definitions from before it."""
        live = self._live(range(self.config.partitions))
        if position:
            live = [
                s
                for s in live
                if all(s.applied(p) >= position.get(p, -1) for p in s.config.partitions)
            ]
        for s in live:
            try:
                status, body = await self._get(f"{s.config.url}/v1/definitions", 2.0)
                if status == 200:
                    defs = orjson.loads(body)
                    if defs != self.definitions:
                        self.parsed, self.definitions = Definitions.load(defs), defs
                    return
            except _HTTP_ERRORS:
                continue

    def stats(self) -> dict[str, Any]:
        """Per node: alive, last seen and, per partition, applied offset and lag."""
        out: dict[str, Any] = {}
        for name, s in self.nodes.items():
            parts = s.state.get("partitions", {})
            out[name] = {
                "url": s.config.url,
                "alive": s.alive,
                "last_seen": s.last_seen,
                "error": s.error,
                "broker": s.state.get("broker"),
                "partitions": {
                    str(p): {
                        "applied_offset": parts.get(str(p), {}).get("applied_offset"),
                        "lag": parts.get(str(p), {}).get("lag"),
                        "last_applied_at": parts.get(str(p), {}).get("last_applied_at"),
                        "refused": parts.get(str(p), {}).get("refused"),
                    }
                    for p in s.config.partitions
                },
            }
        return {"nodes": out, "acknowledged": {str(p): o for p, o in self.writer.acked().items()}}

    async def gather(self, path: str) -> dict[str, Any]:
        """Every live node's answer to GET `path`: {node: JSON, or {"error": ...}}."""

        async def ask(s: NodeStatus) -> Any:
            try:
                status, body = await self._get(f"{s.config.url}{path}", 300.0)
                if status != 200:
                    return {"error": f"HTTP {status}: {body[:300].decode(errors='replace')}"}
                return orjson.loads(body)
            except _HTTP_ERRORS as e:
                return {"error": str(e) or type(e).__name__}

        live = [s for s in self.nodes.values() if s.alive]
        answers = await asyncio.gather(*(ask(s) for s in live))
        return {s.config.name: a for s, a in zip(live, answers, strict=True)}

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval_s)
            try:
                await self.poll()
            except Exception:  # never let the poller die; the next round retries
                log.exception("router: polling the nodes failed")

    async def _poll_node(self, n: NodeConfig) -> None:
        s = self.nodes[n.name]
        try:
            status, body = await self._get(f"{n.url}/v1/positions", 1.0)
            if status != 200:
                raise ValueError(f"HTTP {status}")
            self.nodes[n.name] = replace(
                s, alive=True, last_seen=time.time(), error=None, state=orjson.loads(body)
            )
        except _HTTP_ERRORS as e:
            self.nodes[n.name] = replace(s, alive=False, error=str(e) or type(e).__name__)

    def _live(self, partitions: Sequence[int] | range) -> list[NodeStatus]:
        want = set(partitions)
        return [s for s in self.nodes.values() if s.alive and want & set(s.config.partitions)]

    async def _get(self, url: str, timeout_s: float) -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self._http().get(url, timeout=timeout) as r:
            return r.status, await r.read()

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None:
            raise ClusterError("the router is not started")
        return self._client

    # ------------------------------------------------------------------ reads

    async def read(
        self,
        body: Mapping[str, Any],
        features: str | Sequence[str],
        entities: Mapping[str, Sequence[Any]],
        min_position: Mapping[int, int],
        raw: bytes | None = None,
    ) -> tuple[int, bytes]:
        """Answer a Feast read: (HTTP status, body). A node's 4xx is passed through."""
        if self.parsed.on_demand_views:  # computed here when tablets cannot (cluster/on_demand.py)
            computed = await read_on_demand(self, body, features, entities, min_position)
            if computed is not None:
                return computed
        required = self.writer.acked()
        for p, off in min_position.items():
            required[p] = max(required.get(p, -1), off)
        groups = plan(self.definitions, features, entities, self.config.partitions)
        n = len(next(iter(entities.values()))) if entities else 0
        read = _Read(body, entities, required, raw, len(groups))
        try:
            if len(groups) == 1:  # no task per group: the common case
                await self._read_group(read, groups[0], np.arange(n), set())
            else:
                await asyncio.gather(
                    *(self._read_group(read, g, np.arange(n), set()) for g in groups)
                )
        except _PassThrough as e:
            return e.status, e.content
        if len(read.answers) == 1 and len(read.answers[0].rows) == n:
            return 200, read.answers[0].content
        return 200, orjson.dumps(merge(read.answers, n))

    async def _read_group(
        self, read: _Read, g: GroupRows, rows: np.ndarray, tried: set[str]
    ) -> None:
        """Read `rows` of group g: one request per chosen replica, retried elsewhere on failure."""
        parts = g.parts[rows]
        by_node: dict[str, list[int]] = {}
        for p in np.unique(parts).tolist() if g.keys else [-1]:
            by_node.setdefault(self._choose(p, read.required, tried), []).append(p)
        if len(by_node) == 1:  # one replica reads them all: no split, no task
            ((name, ps),) = by_node.items()
            return await self._read_node(read, g, rows, name, ps, tried)
        calls = []
        for name, ps in by_node.items():
            mine = rows if not g.keys else rows[np.isin(parts, ps)]
            calls.append(self._read_node(read, g, mine, name, ps, tried))
        await asyncio.gather(*calls)

    async def _read_node(
        self, read: _Read, g: GroupRows, rows: np.ndarray, name: str, ps: list[int], tried: set[str]
    ) -> None:
        if read.raw is not None and len(rows) == len(g.parts):
            content = read.raw  # all the rows: the request as it came (nodes ignore min_position)
        else:
            body = {k: v for k, v in read.body.items() if k != "min_position"}
            body["entities"] = sub_entities(read.body["entities"], rows)
            content = orjson.dumps(body)
        params: dict[str, str] = {}
        if g.keys:
            params["route_by"] = ",".join(g.keys)
            if read.groups == 1 and len(ps) == 1:  # every row on one tablet: no re-routing there
                params["route_by"] = f"{PINNED}{ps[0]}"
            need = {str(p): read.required[p] for p in ps if read.required.get(p, -1) >= 0}
            if need:
                params["min_position"] = orjson.dumps(need).decode()
                params["wait_ms"] = str(self.options.read_wait_ms)
        target = "/get-online-features"
        if params:  # quote(): a tenth of urlencode's cost for these few short values
            target += "?" + "&".join(f"{k}={quote(v, safe=',@')}" for k, v in params.items())
        host, port = self._address[name]
        timeout_s = self.options.request_timeout_s
        try:
            r = await self._reads.request("POST", host, port, target, content, _JSON, timeout_s)
            status, payload, header = r.status, r.body, r.headers.get(COLUMNS_HEADER)
        except _HTTP_ERRORS as e:
            return await self._retry(read, g, rows, name, tried, f"{type(e).__name__}: {e}")
        if status == 503 or status == 421 or status >= 500:
            why = payload[:300].decode(errors="replace")
            return await self._retry(read, g, rows, name, tried, why, (status, payload))
        if status != 200:
            raise _PassThrough(status, payload)
        columns = None  # one routing group: every column of the answer is valid
        if header is not None and read.groups > 1:
            columns = [int(c) for c in header.split(",") if c]
        read.answers.append(Answer(rows, payload, columns))

    async def _retry(
        self,
        read: _Read,
        g: GroupRows,
        rows: np.ndarray,
        name: str,
        tried: set[str],
        why: str,
        answer: tuple[int, bytes] | None = None,
    ) -> None:
        log.warning("router: node %s failed a read, trying another replica: %s", name, why)
        if answer is None or answer[0] >= 500 and answer[0] != 503:
            self.nodes[name] = replace(self.nodes[name], alive=False, error=why)
        try:
            await self._read_group(read, g, rows, tried | {name})
        except NoReplicaError:
            if answer is not None and answer[0] == 503:
                raise _PassThrough(503, answer[1]) from None
            raise

    def _choose(self, partition: int, required: Mapping[int, int], tried: set[str]) -> str:
        """A replica for `partition` (-1: any node): caught up first, then any live, round robin."""
        owners = [
            s
            for s in self.nodes.values()
            if s.config.name not in tried and (partition < 0 or partition in s.config.partitions)
        ]
        need = required.get(partition, -1)
        for pool in (
            [s for s in owners if s.alive and s.applied(partition) >= need],
            [s for s in owners if s.alive],
            [s for s in owners if s.alive is not False],
            owners,  # all marked down: the mark may be stale, try them anyway
        ):
            if pool:
                return pool[next(self._turn) % len(pool)].config.name
        what = "any node" if partition < 0 else f"partition {partition}"
        raise NoReplicaError(f"no live replica can serve {what}; tried {sorted(tried)}")

    # ------------------------------------------------------------------ writes

    def view_of_push_source(self, name: str) -> str:
        source = self.parsed.push_sources.get(name)
        if source is None:
            raise UnknownPushSourceError(name)
        return source.feature_view

    def ingest(self, view: str, data: Any) -> tuple[int, dict[int, int]]:
        """Blocking: validate, stamp, split and produce one batch; (rows, {partition: offset})."""
        fv = self.parsed.feature_views.get(view)
        if fv is None:
            raise UnknownViewError(view)
        table, missing = convert_batch(fv, data)
        if missing is not None:
            table = self.writer.stamp_created(table, missing)
        parts = routing_of(fv, self.parsed.entities).split(table, self.config.partitions)
        batch = self.writer.batch_id()
        slices = [Slice(p, view, "data", t, batch) for p, t in sorted(parts.items())]
        return table.num_rows, self.writer.produce(slices)

    def apply(self, definitions: Mapping[str, Any], force: bool = False) -> dict[int, int]:
        """Blocking: a definitions change as a control record in every partition, one transaction."""
        new = Definitions.load(definitions)  # refuse what no node could apply, naming it
        refuse_placement_changes(self.parsed.feature_views, new.feature_views, force)
        value = encode_definitions(definitions, force)
        batch = self.writer.batch_id()
        return self.writer.produce(
            [Slice(p, "", "control", value, batch) for p in range(self.config.partitions)]
        )


def _address(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 80


class _PassThrough(Exception):  # noqa: N818 (control flow, not an error of the router)
    """A node's final answer for the whole read (a 4xx, or a 503 every replica gave)."""

    def __init__(self, status: int, content: bytes) -> None:
        super().__init__(status)
        self.status, self.content = status, content
