"""The HTTP face of the cluster router (`rickhouse router`): the public API over every node.

Same request and response shapes as `rickhouse serve` (FEAST_REST.md), the logic in
cluster/router.py:
- `POST /get-online-features` (answered ahead of FastAPI by app/router_fast.py, the read hot
  path): scattered by partition to live replicas, merged in request order; the body may carry
  `"min_position": {"<partition>": offset}` (an ingest answer's position, for read-your-writes
  across routers). 503 names a partition no replica could serve at the required position in
  time.
- `POST /v1/ingest/{view}` (JSON or Arrow IPC), `POST /push`, `POST /write-to-online-store`:
  validated whole, produced in one Kafka transaction, answered after the commit. The native
  answer is `{"rows", "position"}`; Feast's endpoints keep their bodies and carry the position
  in the `x-rickhouse-position` header (JSON).
- `PUT /v1/definitions`: a control record in every partition (one transaction); answers
  `{"position"}` once every live node applied it. `GET /v1/definitions`, `GET /v1/feature-views`
  (`/{name}`): from the nodes' applied definitions.
- `DELETE /v1/entities/{view}`, `POST /v1/forget/{entity}`: deletes through the log
  (app/router_lifecycle.py).
- `POST /v1/training-export`: a training export, one Ray task per tablet
  (app/router_export.py, cluster/export.py).
- `GET /health`: 200 while every partition has a live replica, else 503 naming the partitions.
- `GET /v1/stats`: per node and partition the applied offset, lag and last seen;
  `POST /v1/audit`: every live node's tablet audits; `GET /metrics`: request metrics and
  per-partition positions.
Blocking work (validation, produce) runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from app.arrow_body import ARROW_STREAM, read_arrow_stream
from app.body import media_type, read_body
from app.errors import (
    BadRequestError,
    UnavailableError,
    UnsupportedMediaTypeError,
    error_response,
    install_error_handlers,
)
from app.metrics import MetricsMiddleware, RequestMetrics
from app.payloads import (
    parse_ingest_json,
    parse_json,
    parse_push_request,
    parse_write_request,
    parse_yaml,
    require_object,
)
from app.router_export import install_export_routes
from app.router_fast import RouterFastPath, read_online
from app.router_lifecycle import routes as lifecycle_routes
from cluster.config import ClusterConfig
from cluster.errors import FencedError, ProduceError
from cluster.router import NoReplicaError, Router, RouterOptions
from store import Definitions
from store.errors import UnknownViewError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BODY_BYTES = 256 << 20
POSITION_HEADER = "x-rickhouse-position"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
APPLY_WAIT_S = 30.0  # bound on waiting for the nodes to apply a definitions change


def create_router_app(
    config: ClusterConfig, bootstrap_servers: str, options: RouterOptions | None = None
) -> FastAPI:
    """The router's app; the Router starts (node polling, producer) at startup."""
    router = Router(config, bootstrap_servers, options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await router.start()
        try:
            yield
        finally:
            await router.close()

    app = FastAPI(
        title="rickhouse router",
        lifespan=lifespan,
        # /metrics is our telemetry; FastAPI's OpenTelemetry hooks stay off the hot path.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.router = router
    app.include_router(lifecycle_routes)  # deletes and forgets (app/router_lifecycle.py)
    install_error_handlers(app)
    metrics = RequestMetrics()
    app.add_middleware(RouterFastPath, router=router, max_body_bytes=MAX_BODY_BYTES)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: times the fast path too

    @app.exception_handler(NoReplicaError)
    async def _no_replica(request: Request, exc: Exception) -> Response:
        return await _as_unavailable(request, str(exc))

    @app.exception_handler(FencedError)
    @app.exception_handler(ProduceError)
    async def _produce(request: Request, exc: Exception) -> Response:
        return await _as_unavailable(request, f"the batch was not written: {exc}")

    async def run(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def defs() -> Definitions:
        return router.parsed

    @app.post("/get-online-features")
    async def get_online_features(request: Request) -> Response:
        body = await read_body(request, MAX_BODY_BYTES)
        status, content = await read_online(router, body)
        return Response(content, status_code=status, media_type="application/json")

    async def ingest(view: str, data: Any) -> tuple[int, dict[int, int]]:
        return await run(router.ingest, view, data)

    @app.post("/v1/ingest/{view}")
    async def ingest_view(view: str, request: Request) -> Response:
        if view not in defs().feature_views:
            raise UnknownViewError(view)
        kind = media_type(request)
        if kind not in (ARROW_STREAM, "application/json", ""):
            raise UnsupportedMediaTypeError(
                f"Content-Type {kind!r}: send application/json or {ARROW_STREAM}"
            )
        body = await read_body(request, MAX_BODY_BYTES)
        if kind == ARROW_STREAM:
            data: Any = await run(read_arrow_stream, body, MAX_BODY_BYTES)
            if data.num_rows == 0:
                raise BadRequestError("the Arrow IPC stream has no rows")
        else:
            data = parse_ingest_json(body)
        rows, position = await ingest(view, data)
        return _json({"rows": rows, "position": _wire(position)})

    @app.post("/write-to-online-store")
    async def write_to_online_store(request: Request) -> Response:
        view, df = parse_write_request(await read_body(request, MAX_BODY_BYTES))
        _, position = await ingest(view, df)
        return Response(b"null", media_type="application/json", headers=_header(position))

    @app.post("/push")
    async def push(request: Request) -> Response:
        name, df, _to = parse_push_request(await read_body(request, MAX_BODY_BYTES))
        _, position = await ingest(router.view_of_push_source(name), df)
        return Response(b"", status_code=200, headers=_header(position))

    @app.get("/v1/definitions")
    async def get_definitions() -> Response:
        return _json(router.definitions)

    @app.put("/v1/definitions")
    async def put_definitions(request: Request) -> Response:
        body = await read_body(request, MAX_BODY_BYTES)
        is_yaml = media_type(request) in YAML_TYPES
        definitions = require_object(
            await run(parse_yaml, body) if is_yaml else parse_json(body), "the definitions"
        )
        force = request.query_params.get("force", "false").lower() in ("1", "true", "yes")
        position = await run(router.apply, definitions, force)
        lagging = await _wait_applied(router, position, APPLY_WAIT_S)
        await router.refresh_definitions(position)
        return _json({"position": _wire(position), "not_yet_applied_by": lagging})

    @app.get("/v1/feature-views")
    async def list_feature_views() -> Response:
        return _json(router.definitions.get("feature_views") or [])

    @app.get("/v1/feature-views/{name}")
    async def get_feature_view(name: str) -> Response:
        for v in router.definitions.get("feature_views") or []:
            if v["name"] == name:
                return _json(v)
        raise UnknownViewError(name)

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health(request: Request) -> Response:
        live = {p for s in router.nodes.values() if s.alive for p in s.config.partitions}
        orphans = [p for p in range(config.partitions) if p not in live]
        if orphans:
            raise UnavailableError(f"partitions {orphans} have no live replica")
        if request.method == "HEAD":
            return Response(b"", status_code=200)
        return _json({"stale": [], "nodes": {n: s.alive for n, s in router.nodes.items()}})

    @app.get("/v1/stats")
    async def stats() -> Response:
        return _json(router.stats())

    @app.post("/v1/audit")
    async def audit() -> Response:
        return _json(await router.gather("/v1/audit"))

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        lines = metrics.render() + _cluster_metrics(router.stats())
        return Response(("\n".join(lines) + "\n").encode(), media_type="text/plain; version=0.0.4")

    install_export_routes(app, router)  # POST /v1/training-export (app/router_export.py)
    return app


async def _as_unavailable(request: Request, message: str) -> Response:
    return error_response(request.url.path, 503, "Unavailable", "FeastError", message)


async def _wait_applied(router: Router, position: dict[int, int], timeout_s: float) -> list[str]:
    """Wait until every live node applied `position` on its partitions and every partition of
    it has a live replica that applied it (a node the last poll missed does not count as done);
    the names of the nodes still behind (or down, for a partition no replica applied yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        await router.poll()
        nodes = list(router.nodes.values())
        behind = [
            s.config.name
            for s in nodes
            if s.alive and any(s.applied(p) < position.get(p, -1) for p in s.config.partitions)
        ]
        uncovered = {
            s.config.name
            for p, offset in position.items()
            if not any(
                s.alive and s.applied(p) >= offset for s in nodes if p in s.config.partitions
            )
            for s in nodes
            if p in s.config.partitions and not s.alive
        }
        if (not behind and not uncovered) or time.monotonic() > deadline:
            return sorted(set(behind) | uncovered)
        await asyncio.sleep(0.05)


def _wire(position: dict[int, int]) -> dict[str, int]:
    return {str(p): off for p, off in sorted(position.items())}


def _header(position: dict[int, int]) -> dict[str, str]:
    return {POSITION_HEADER: orjson.dumps(_wire(position)).decode()}


def _json(value: Any, status: int = 200) -> Response:
    content = orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type="application/json")


def _cluster_metrics(stats: dict[str, Any]) -> list[str]:
    out = [
        "# TYPE rickhouse_cluster_node_up gauge",
        "# TYPE rickhouse_cluster_partition_applied_offset gauge",
        "# TYPE rickhouse_cluster_partition_lag gauge",
    ]
    for name, n in stats["nodes"].items():
        out.append(f'rickhouse_cluster_node_up{{node="{name}"}} {int(bool(n["alive"]))}')
        for p, s in n["partitions"].items():
            labels = f'node="{name}",partition="{p}"'
            if s["applied_offset"] is not None:
                out.append(
                    f"rickhouse_cluster_partition_applied_offset{{{labels}}} {s['applied_offset']}"
                )
            if s["lag"] is not None:
                out.append(f"rickhouse_cluster_partition_lag{{{labels}}} {s['lag']}")
    return out


def run_router(config: ClusterConfig, bootstrap_servers: str, log_level: str = "info") -> None:
    """Serve the router on router.url until interrupted (uvicorn, one worker)."""
    import uvicorn

    url = urlsplit(config.router.url)
    app = create_router_app(config, bootstrap_servers)
    uvicorn.run(
        app,
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        log_level=log_level,
        access_log=False,
        workers=1,
    )
