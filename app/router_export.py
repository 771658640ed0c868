"""The HTTP faces of a cluster training export (the logic is cluster/export.py, and
cluster/export_computed.py for on-demand features), and its CLI.

- Router: `POST /v1/training-export`, the request shapes of `rickhouse serve` (app/export.py):
  entity rows as JSON columns, an Arrow IPC stream body (features as query parameters) or
  `entities_path` (a Parquet file under the router's root, `RICKHOUSE_ROUTER_ROOT`, default
  `./rickhouse-router`); `features` or `feature_service`; `entities_as_of`. Instead of
  `as_of_seq` a cluster export takes `as_of_position` ({"<partition>": offset}, every
  partition; a query parameter holds it as JSON text). The answer names the `position` the
  export was taken at: JSON {"position", "rows", "path", "tasks", "timings"} (the file under
  `<router root>/exports/`), or the Parquet / Arrow stream with the headers
  `X-Rickhouse-Position` (JSON) and `X-Rickhouse-Rows`.
- Node: `POST /v1/export/listings` {"partitions": {"<p>": offset | null}, "views": [...],
  "min_position": {...}, "wait_ms"}: pins each tablet and lists its snapshot files
  (cluster/export.py `list_tablets`); 503 while the node is behind the position asked, 421 for
  a partition it does not serve.
- `export_via_router`: `rickhouse export --cluster cluster.yaml`, a client of the router.
Blocking work runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response, StreamingResponse

from app import export
from app.arrow_body import ARROW_STREAM
from app.body import media_type, read_body
from app.errors import BadRequestError, UnsupportedMediaTypeError, error_response
from app.payloads import key_dtypes, parse_json
from app.service import DefinitionsSnapshot
from cluster.export import ExportFailedError, TabletPinError, list_tablets, pin_tablets
from cluster.export_computed import prepare, run
from cluster.ray_tasks import RayUnavailableError, shutdown_ray
from cluster.router import Router
from cluster.tablets import NotOwnedError

ROUTER_ROOT_ENV = "RICKHOUSE_ROUTER_ROOT"
DEFAULT_ROUTER_ROOT = "rickhouse-router"
MAX_BODY_BYTES = 256 << 20
POSITION_HEADER = "X-Rickhouse-Position"


def router_root() -> Path:
    return Path(os.environ.get(ROUTER_ROOT_ENV) or DEFAULT_ROUTER_ROOT).absolute()


def parse_position(value: Any) -> dict[int, int] | None:
    """`as_of_position`: {"<partition>": offset >= -1} (or its JSON text); None when absent."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            value = orjson.loads(value)
        assert isinstance(value, dict)
        out = {int(p): v for p, v in value.items()}
        assert all(type(v) is int and v >= -1 for v in out.values())
        return out
    except (AssertionError, TypeError, ValueError, orjson.JSONDecodeError):
        raise BadRequestError(
            f"'as_of_position' must be an object {{\"<partition>\": offset}} as an export "
            f"answer names it, got {str(value)[:200]!r}"
        ) from None


def install_export_routes(app: FastAPI, router: Router) -> None:
    """Add the router's `POST /v1/training-export` (module docstring) to `app`, and stop
    the Ray it started when the app shuts down (a local Ray's processes would outlive it)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with inner(app) as state:
            try:
                yield state
            finally:
                await asyncio.to_thread(shutdown_ray)

    app.router.lifespan_context = lifespan

    @app.exception_handler(RayUnavailableError)
    @app.exception_handler(ExportFailedError)
    async def _failed(request: Request, exc: Exception) -> Response:
        return error_response(request.url.path, 503, "Unavailable", "FeastError", str(exc))

    @app.exception_handler(TabletPinError)
    async def _pin(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TabletPinError)
        kind = "ValidationError" if exc.status < 500 else "Unavailable"
        return error_response(request.url.path, exc.status, kind, "FeastError", str(exc))

    @app.post("/v1/training-export")
    async def training_export(request: Request) -> Response:
        kind = media_type(request)
        if kind not in (ARROW_STREAM, "application/json", ""):
            raise UnsupportedMediaTypeError(
                f"Content-Type {kind!r}: send application/json or {ARROW_STREAM}"
            )
        body = await read_body(request, MAX_BODY_BYTES)
        q = request.query_params
        params = {
            "features": q.getlist("features"),
            "feature_service": q.get("feature_service"),
            "as_of_seq": q.get("as_of_seq"),
            "output": q.get("output"),
            "out": q.get("out"),
        }
        accept = request.headers.get("accept", "")
        snap = DefinitionsSnapshot(router.parsed, key_dtypes(router.parsed))
        root = router_root()
        if kind == ARROW_STREAM:
            req = await asyncio.to_thread(
                export.parse_arrow_request, body, params, accept, snap, MAX_BODY_BYTES
            )
            position = parse_position(q.get("as_of_position"))
        else:
            obj = parse_json(body)
            req = await asyncio.to_thread(export.parse_json_request, obj, accept, snap, root)
            position = parse_position(obj.get("as_of_position"))
        if req.as_of_seq is not None:
            raise BadRequestError(
                "a cluster export is pinned by 'as_of_position' ({\"<partition>\": offset}, "
                "as an export answer names it), not 'as_of_seq'"
            )
        t0 = time.perf_counter()
        spec = await asyncio.to_thread(
            prepare,
            router.parsed,
            req.features,
            req.entities,
            req.entities_as_of,
            router.config.partitions,
        )
        t1 = time.perf_counter()
        pins = await pin_tablets(router, spec.views, position)
        t2 = time.perf_counter()
        out = _out_path(root, req)
        try:
            outcome = await asyncio.to_thread(run, spec, pins, out)
        except BaseException:
            out.unlink(missing_ok=True)  # ours: reserved or written by this request
            raise
        wire = {str(p): o for p, o in outcome.position.items()}
        info: dict[str, Any] = {
            "position": wire,
            "rows": outcome.rows,
            "path": outcome.path,
            "tasks": outcome.tasks,
            "timings": {"prepare_s": t1 - t0, "pin_s": t2 - t1, **outcome.timings},
        }
        if outcome.outside_retention:
            info["outside_retention"] = outcome.outside_retention
        if spec.entities_as_of_ns is not None:
            info["entities_as_of"] = spec.entities_as_of_ns
        if req.mode == "file":
            return Response(orjson.dumps(info), media_type="application/json")
        headers = {
            POSITION_HEADER: orjson.dumps(wire).decode(),
            "X-Rickhouse-Rows": str(outcome.rows),
        }
        if req.mode == "arrow":
            return StreamingResponse(
                export.arrow_chunks(outcome.path), media_type=ARROW_STREAM, headers=headers
            )
        return FileResponse(
            outcome.path,
            media_type=export.PARQUET,
            headers=headers,
            filename="training.parquet",
            background=BackgroundTask(export.remove_quietly, outcome.path),
        )


def _out_path(root: Path, req: export.ExportRequest) -> Path:
    out_dir = root / export.EXPORTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    if req.mode == "file" and req.out_name:
        out = out_dir / req.out_name
        try:  # reserve the name atomically: of concurrent exports to one name, one wins
            out.touch(exist_ok=False)
        except FileExistsError:
            raise export.ExportExistsError(
                f"export {req.out_name!r} already exists under {out_dir}"
            ) from None
        return out
    if req.mode == "file":
        return out_dir / f"export-{uuid.uuid4().hex[:12]}.parquet"
    return out_dir / f".stream-{uuid.uuid4().hex}.parquet"


async def node_listings(node: Any, body: bytes) -> Response:
    """The node's `POST /v1/export/listings` (module docstring); `node` a cluster.node.Node."""
    obj = parse_json(body)
    try:
        partitions = {int(p): (None if o is None else int(o)) for p, o in obj["partitions"].items()}
        required = {int(p): int(o) for p, o in (obj.get("min_position") or {}).items()}
        views = [str(v) for v in obj["views"]]
        wait_s = min(float(obj.get("wait_ms", 5000)), 60_000) / 1000
    except (KeyError, AttributeError, TypeError, ValueError):
        raise BadRequestError(
            'send {"partitions": {"<p>": offset | null}, "views": [...]}'
        ) from None
    stray = sorted(set(partitions) - set(node.tablets.stores))
    if stray:
        raise NotOwnedError(f"partitions {stray} are not served by node {node.me.name}")
    for p, o in partitions.items():
        if o is not None:
            required[p] = max(required.get(p, -1), o)
    behind = await asyncio.to_thread(node.wait_positions, required, wait_s)
    if behind:
        p, applied = min(behind.items())
        return error_response(
            "/v1/export/listings",
            503,
            "Unavailable",
            "FeastError",
            f"partition {p} of node {node.me.name} has applied offset {applied}, behind the "
            f"export's position {required[p]}",
        )
    listed = await asyncio.to_thread(list_tablets, node.tablets.stores, partitions, views)
    return Response(orjson.dumps(listed, default=str), media_type="application/json")


def export_via_router(
    config_path: Path,
    entities: Path | None,
    refs: list[str],
    out: Path,
    as_of_position: str | None = None,
    entities_as_of: float | str | None = None,
) -> dict[str, Any]:
    """`rickhouse export --cluster`: send the export to the cluster's router and stream the
    Parquet answer to `out` (a temp file renamed at the end): {"rows", "position"}. Entity
    rows from a .parquet or .csv file travel as an Arrow IPC stream. Raises CliError."""
    import httpx
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app import input_files
    from app.cli_context import CliError
    from cluster.config import ClusterConfig
    from store import Definitions

    base = ClusterConfig.load(config_path).router.url
    try:
        position = parse_position(as_of_position)
    except BadRequestError as exc:
        raise CliError(f"--as-of-position: {exc}") from None
    headers = {"accept": export.PARQUET}
    with httpx.Client(timeout=httpx.Timeout(30.0, read=3600.0)) as client:
        if entities is None:
            body: dict[str, Any] = {
                "features": refs,
                "entities_as_of": entities_as_of,
                "output": "stream",
            }
            if position is not None:
                body["as_of_position"] = {str(p): o for p, o in position.items()}
            request = client.build_request(
                "POST", f"{base}/v1/training-export", json=body, headers=headers
            )
        else:
            if entities.suffix.lower() == ".parquet":
                table = pq.read_table(entities)
            else:
                defs = client.get(f"{base}/v1/definitions").raise_for_status().json()
                table = input_files.read_entities(entities, Definitions.load(defs))
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
            params: dict[str, Any] = {"features": refs}
            if as_of_position is not None:
                params["as_of_position"] = as_of_position
            request = client.build_request(
                "POST",
                f"{base}/v1/training-export",
                content=sink.getvalue().to_pybytes(),
                params=params,
                headers={**headers, "content-type": ARROW_STREAM},
            )
        temp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            response = client.send(request, stream=True)
            try:
                if response.status_code != 200:
                    detail = response.read()[:1000].decode(errors="replace")
                    raise CliError(f"the router answered {response.status_code}: {detail}")
                with open(temp, "wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
                os.replace(temp, out)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise CliError(f"router {base}: {type(exc).__name__}: {exc}") from None
        finally:
            temp.unlink(missing_ok=True)
    wire = orjson.loads(response.headers.get(POSITION_HEADER, "{}"))
    return {"rows": int(response.headers.get("X-Rickhouse-Rows", "0")), "position": wire}
