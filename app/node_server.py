"""The HTTP face of a cluster node (`rickhouse node`): reads over its tablets, its state.

Routes:
- `POST /get-online-features`: Feast's request and response shapes (FEAST_REST.md), for
  entities of the node's partitions: each row is routed to its tablet (cluster/partitioning.py)
  and the answers are merged in request order. Entities of a partition the node does not serve
  answer 421 naming the partitions. Query parameters used by the router: `route_by=k1,k2`
  routes every row by those join keys only, and the answer's `x-rickhouse-columns` header lists
  the result columns valid for them; `min_position={"<partition>": offset}` (with `wait_ms`)
  waits until the node applied that far, else 503 naming the lagging partition;
  `route_by=@<p>` reads every row on tablet p. app/node_fast.py answers this endpoint ahead of
  FastAPI (the read hot path); the route below stays for /docs and states the same contract.
- `GET /v1/definitions`: the definitions its tablets apply (the lowest partition's).
- `GET /health`: 200 `{"status": "ok"}` while the node serves; `"degraded"` (still 200: reads
  are served from what the tablets hold) when the broker cannot be reached or a tablet stopped
  applying, with the reason.
- `GET /v1/positions`: per partition the applied offset, the log end, the lag, refusals, the
  last applied time, and the broker's reachability (cluster/node.py `Node.state`).
- `GET /v1/deletes?positions={"<partition>": offset}`: what the deletes ending there deleted
  (cluster/deletes.py), waiting `wait_ms` for them to be applied.
- `GET /v1/audit`: each tablet's audit ({partition: {view: ...}}); `GET /v1/stats`: each
  tablet's stats.
- `POST /v1/export/listings`: a cluster export pins tablets at a position and lists their
  snapshot files for the Ray tasks (app/router_export.py `node_listings`).
Blocking calls run in the default thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from app.body import read_body
from app.errors import BadRequestError, install_error_handlers
from app.feast_json import feast_json
from app.payloads import key_dtypes, parse_online_request
from app.router_export import node_listings
from cluster.config import ClusterConfig
from cluster.errors import RoutingError
from cluster.node import Node, NodeOptions
from cluster.scatter import merge_bodies
from cluster.tablets import NotOwnedError, TabletRead
from store import Definitions

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BODY_BYTES = 64 << 20
COLUMNS_HEADER = "x-rickhouse-columns"  # node -> router: the columns of the route_by group
DEFAULT_WAIT_MS = 5000  # bound on waiting for min_position
MAX_WAIT_MS = 60_000
INLINE_BODY_BYTES = 2048  # reads this small run on the event loop
JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def create_node_app(
    config: ClusterConfig,
    name: str,
    bootstrap_servers: str | None = None,
    options: NodeOptions | None = None,
) -> FastAPI:
    """The node's app; the Node opens (tablets) and starts applying at startup, stops at
    shutdown."""
    holder: dict[str, Node] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        node = await asyncio.to_thread(Node, config, name, bootstrap_servers, options)
        holder["node"] = node.start()
        try:
            yield
        finally:
            await asyncio.to_thread(node.stop)

    app = FastAPI(
        title=f"rickhouse node {name}",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks stay off the hot path (as in app/server.py).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    from app.node_fast import NodeFastPath  # imports this module: at call time

    app.add_middleware(NodeFastPath, holder=holder)  # the hot read, before FastAPI's routing

    @app.exception_handler(NotOwnedError)
    async def _not_owned(request: Request, exc: NotOwnedError) -> Response:
        return _error(421, "MisdirectedRequest", str(exc))

    @app.exception_handler(RoutingError)
    async def _routing(request: Request, exc: RoutingError) -> Response:
        return _error(422, "ValidationError", str(exc))

    async def run(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    @app.post("/get-online-features")
    async def get_online_features(request: Request) -> Response:
        body = await read_body(request, MAX_BODY_BYTES)
        q = request.query_params
        node = holder["node"]
        if "min_position" in q:
            required = parse_min_position(q["min_position"])
            wait_s = min(float(q.get("wait_ms", DEFAULT_WAIT_MS)), MAX_WAIT_MS) / 1000
            behind = await run(node.wait_positions, required, wait_s)
            if behind:
                p, applied = min(behind.items())
                return _error(
                    503,
                    "Unavailable",
                    f"partition {p} of node {node.me.name} has applied offset {applied}, "
                    f"behind the requested position {required[p]}",
                )
        route_by = tuple(k for k in q.get("route_by", "").split(",") if k) or None
        if len(body) <= INLINE_BODY_BYTES:  # a few entities: cheaper than a thread hop
            content, columns = online_json(node, body, route_by)
        else:
            content, columns = await run(online_json, node, body, route_by)
        headers = {COLUMNS_HEADER: ",".join(map(str, columns))} if columns is not None else None
        return Response(content, media_type="application/json", headers=headers)

    @app.get("/v1/definitions")
    async def definitions() -> Response:
        defs = holder["node"].tablets.any().definitions()
        return Response(orjson.dumps(defs, default=str), media_type="application/json")

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> Response:
        state = holder["node"].state()
        problems = (
            [f"broker: {state['broker']['error']}"] if state["broker"]["connected"] is False else []
        )
        problems += [
            f"partition {p}: {s['failed']}" for p, s in state["partitions"].items() if s["failed"]
        ]
        body = {"status": "degraded" if problems else "ok", "problems": problems}
        return JSONResponse(body)

    @app.get("/v1/positions")
    async def positions() -> Response:
        return JSONResponse(holder["node"].state())

    @app.get("/v1/audit")
    async def audit() -> Response:
        stores = holder["node"].tablets.stores
        out = {str(p): await run(fs.audit) for p, fs in stores.items()}
        return Response(orjson.dumps(out, default=str), media_type="application/json")

    @app.get("/v1/deletes")
    async def deletes(request: Request) -> Response:
        """What the deletes ending at `positions={"<partition>": offset}` deleted, once applied
        (waiting up to `wait_ms`): {"results": {partition: {view: n} or null}} (null: not
        applied yet, or applied before this process started)."""
        q = request.query_params
        node = holder["node"]
        wanted = parse_min_position(q.get("positions", "{}"))
        wait_s = min(float(q.get("wait_ms", DEFAULT_WAIT_MS)), MAX_WAIT_MS) / 1000
        await run(node.wait_positions, wanted, wait_s)
        out = {str(p): node.delete_results.get(p, off) for p, off in wanted.items()}
        return Response(orjson.dumps({"results": out}), media_type="application/json")

    @app.get("/v1/stats")
    async def stats() -> Response:
        stores = holder["node"].tablets.stores
        out = {str(p): await run(fs.stats) for p, fs in stores.items()}
        return Response(orjson.dumps(out, default=str), media_type="application/json")

    @app.post("/v1/export/listings")
    async def export_listings(request: Request) -> Response:
        """A cluster export pins tablets and lists their snapshot files (app/router_export.py)."""
        return await node_listings(holder["node"], await read_body(request, MAX_BODY_BYTES))

    return app


_dtypes_cache: list[tuple[dict[str, Any], dict[str, str]]] = []  # the last (definitions, dtypes)


def _key_dtypes(definitions: dict[str, Any]) -> dict[str, str]:
    """key_dtypes of `definitions`, parsed once per change (a list swap: atomic)."""
    cached = _dtypes_cache[:1]
    if cached and cached[0][0] == definitions:
        return cached[0][1]
    dtypes = key_dtypes(Definitions.load(definitions))
    _dtypes_cache[:] = [(definitions, dtypes)]
    return dtypes


def parse_min_position(text: str) -> dict[int, int]:
    """The `min_position` query parameter: JSON {"<partition>": offset}."""
    try:
        obj = orjson.loads(text)
        return {int(p): int(off) for p, off in obj.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise BadRequestError(
            f'min_position must be a JSON object {{"<partition>": offset}}, got {text[:100]!r}'
        ) from None


def online_json(
    node: Node, body: bytes, route_by: tuple[str, ...] | None = None
) -> tuple[bytes, list[int] | None]:
    """Blocking: parse a Feast request, read each row on its tablet, merge in request order.

    With route_by, also the result columns the answer holds for views routed by those keys
    (the router takes those columns from this node)."""
    req = parse_online_request(body, _key_dtypes(node.tablets.any().definitions()))
    reads = node.tablets.get_online_features(
        req.features, req.entities, req.full_feature_names, route_by
    )
    out = merge_feast_json(reads, len(next(iter(req.entities.values()))))
    if req.include_metadata:
        lookups = reads[0].response.lookups
        out["metadata"]["feature_view_metadata"] = [{"name": lk.read.view.name} for lk in lookups]
    columns = _columns_of(reads[0]) if route_by is not None and reads else None
    return orjson.dumps(out, option=JSON_OPTS), columns


def merge_feast_json(reads: list[TabletRead], n: int) -> dict[str, Any]:
    """Feast's JSON of the whole request from the tablets' answers for their rows."""
    if len(reads) == 1 and len(reads[0].rows) == n:
        return feast_json(reads[0].response)
    return merge_bodies([(r.rows, feast_json(r.response), _columns_of(r)) for r in reads], n)


def _columns_of(read: TabletRead) -> list[int]:
    """The result columns `read` answers for: the join keys, and its routing group's views
    (TabletRead.serves)."""
    res = read.response
    cols = list(range(len(res.keys)))
    at = len(cols)
    for lk in res.lookups:
        width = len(lk.read.names)
        if read.serves(lk.read.view.name):  # routed by the group's key, or replicated
            cols += range(at, at + width)
        at += width
    return cols


def _error(status: int, kind: str, message: str) -> Response:
    body = {"error": kind, "detail": message, "status_code": status}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def run_node(
    config: ClusterConfig, name: str, bootstrap_servers: str | None, log_level: str = "info"
) -> None:
    """Serve node `name` of `config` on its url until interrupted (uvicorn, one worker)."""
    import uvicorn

    url = urlsplit(config.node(name).url)
    app = create_node_app(config, name, bootstrap_servers)
    uvicorn.run(
        app,
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        log_level=log_level,
        access_log=False,
        workers=1,
    )
