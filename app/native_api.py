"""Native endpoints under /v1 (ingest, training export, definitions, views, stats, audit,
compaction) and /metrics. Errors use the native body `{"error": {"type", "message"}}`.

Heavy calls (ingest, export, apply, audit, compaction) run in the write pool; nothing blocking
runs on the event loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response, StreamingResponse

from app import export, openapi_docs
from app.arrow_body import ARROW_STREAM, read_arrow_stream
from app.body import media_type, read_body
from app.errors import BadRequestError, UnsupportedMediaTypeError
from app.metrics import CONTENT_TYPE, render
from app.payloads import parse_ingest_json, parse_json, parse_yaml, require_object
from app.service import StoreService
from store.errors import UnknownViewError

router = APIRouter(tags=["rickhouse"])
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _service(request: Request) -> StoreService:
    return request.app.state.service


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def json_response(value: Any, status: int = 200) -> Response:
    content = orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type="application/json")


def _ingest(svc: StoreService, view: str, body: bytes, kind: str) -> dict[str, int]:
    if kind == ARROW_STREAM:
        data: Any = read_arrow_stream(body, svc.settings.max_body_bytes)
        rows = data.num_rows
        if rows == 0:
            raise BadRequestError("the Arrow IPC stream has no rows")
    else:
        data = parse_ingest_json(body)
        rows = len(next(iter(data.values())))
    seq = svc.store.ingest(view, data)
    return {"seq": int(seq), "rows": int(rows)}


@router.post("/v1/ingest/{view}", openapi_extra=openapi_docs.INGEST)
async def ingest(view: str, request: Request) -> Response:
    """One atomic, durable batch: JSON columns or records, or an Arrow IPC stream (the fast path).

    Returns {"seq", "rows"} once the batch is fsynced and visible online and offline.
    """
    svc = _service(request)
    if view not in svc.snapshot.definitions.feature_views:
        raise UnknownViewError(view)
    kind = media_type(request)
    if kind not in (ARROW_STREAM, "application/json", ""):
        raise UnsupportedMediaTypeError(
            f"Content-Type {kind!r}: send application/json or {ARROW_STREAM}"
        )
    body = await read_body(request, svc.settings.max_body_bytes)
    return json_response(await svc.run_write(_ingest, svc, view, body, kind))


def _parse_export(
    svc: StoreService, request_kind: str, body: bytes, params: dict[str, Any], accept: str
) -> export.ExportRequest:
    if request_kind == ARROW_STREAM:
        return export.parse_arrow_request(
            body, params, accept, svc.snapshot, svc.settings.max_body_bytes
        )
    return export.parse_json_request(parse_json(body), accept, svc.snapshot, svc.settings.root)


def _export(svc: StoreService, req: export.ExportRequest) -> dict[str, Any]:
    return export.run_export(svc.store, req)


@router.post("/v1/training-export", openapi_extra=openapi_docs.TRAINING_EXPORT)
async def training_export(request: Request) -> Response:
    """Point-in-time correct training rows at one seq.

    `Accept: application/vnd.apache.arrow.stream` or `application/vnd.apache.parquet` streams the
    result back (header `X-Rickhouse-Seq`); otherwise the file is written under <root>/exports/
    and the answer is {"seq", "rows", "path"}.
    """
    svc = _service(request)
    kind = media_type(request)
    if kind not in (ARROW_STREAM, "application/json", ""):
        raise UnsupportedMediaTypeError(
            f"Content-Type {kind!r}: send application/json or {ARROW_STREAM}"
        )
    body = await read_body(request, svc.settings.max_body_bytes)
    params = {
        "features": request.query_params.getlist("features"),
        "feature_service": request.query_params.get("feature_service"),
        "as_of_seq": request.query_params.get("as_of_seq"),
        "output": request.query_params.get("output"),
        "out": request.query_params.get("out"),
    }
    accept = request.headers.get("accept", "")
    req = await svc.run_write(_parse_export, svc, kind, body, params, accept)
    info = await svc.run_write(_export, svc, req)
    if req.mode == "file":
        return json_response(info)
    headers = {"X-Rickhouse-Seq": str(info["seq"]), "X-Rickhouse-Rows": str(info["rows"])}
    if "outside_retention" in info:  # JSON {view: entity rows read as nulls}
        headers["X-Rickhouse-Outside-Retention"] = orjson.dumps(info["outside_retention"]).decode()
    if req.mode == "arrow":
        return StreamingResponse(
            export.arrow_chunks(info["path"]), media_type=ARROW_STREAM, headers=headers
        )
    return FileResponse(
        info["path"],
        media_type=export.PARQUET,
        headers=headers,
        filename="training.parquet",
        background=BackgroundTask(export.remove_quietly, info["path"]),
    )


@router.get("/v1/definitions")
async def get_definitions(request: Request) -> Response:
    """The applied definitions, in the YAML shape."""
    svc = _service(request)
    return json_response(await svc.run_read(lambda: svc.store.definitions()))


def _apply(svc: StoreService, body: bytes, is_yaml: bool) -> Any:
    """Blocking: parse (PyYAML is pure Python: seconds for a large body) and apply."""
    definitions = parse_yaml(body) if is_yaml else parse_json(body)
    changes = svc.store.apply(require_object(definitions, "the definitions"))
    svc.refresh_definitions()
    return changes


@router.put("/v1/definitions", openapi_extra=openapi_docs.DEFINITIONS)
async def put_definitions(request: Request) -> Response:
    """Apply definitions (JSON or YAML text); answers {"changes": ...}. Refused changes: 422."""
    svc = _service(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    is_yaml = media_type(request) in YAML_TYPES
    return json_response({"changes": await svc.run_write(_apply, svc, body, is_yaml)})


@router.get("/v1/feature-views")
async def list_feature_views(request: Request) -> Response:
    """Every feature view definition."""
    svc = _service(request)
    definitions = await svc.run_read(lambda: svc.store.definitions())
    return json_response(definitions.get("feature_views") or [])


@router.get("/v1/feature-views/{name}")
async def get_feature_view(name: str, request: Request) -> Response:
    """One feature view definition (404 when unknown)."""
    svc = _service(request)
    return json_response(await svc.run_read(svc.store.feature_view, name))


@router.get("/v1/stats")
async def stats(request: Request) -> Response:
    """Commit log, both stores, index statistics and counters."""
    svc = _service(request)
    return json_response(await svc.run_read(lambda: svc.store.stats()))


@router.post("/v1/audit")
async def audit(request: Request) -> Response:
    """Offline latest row per entity vs the online scan, per view (mismatches must be 0)."""
    svc = _service(request)
    return json_response(await svc.run_write(lambda: svc.store.audit()))


@router.post("/v1/compact")
async def compact(request: Request) -> Response:
    """Run every pending compaction now (both stores); online reads keep being served."""
    svc = _service(request)
    await svc.run_write(lambda: svc.store.compact())
    return json_response({"compacted": True, "last_seq": int(svc.store.last_seq)})


@router.get("/v1/offline/{view}/files")
async def offline_files(view: str, request: Request) -> Response:
    """The Parquet files of a view's offline history as of `?as_of_seq=N` (default: the last
    seq), for another engine (pyarrow, Polars, Ray, Spark) to read: absolute paths, schema, the
    row filter `_seq <= N`, the timestamp encoding and the version order. Flushes the view's
    buffer first; listed files stay on disk RICKHOUSE_SNAPSHOT_GRACE_S after being replaced."""
    svc = _service(request)
    as_of_seq = export.parse_as_of_seq(request.query_params.get("as_of_seq"))
    return json_response(await svc.run_write(svc.store.offline_files, view, as_of_seq))


@router.delete("/v1/entities/{view}")
async def delete_entities(view: str, request: Request) -> Response:
    """Delete entities from a view in both stores: body {"entities": {join_key: [values]}};
    answers {"seq", "deleted"} once the delete is durable (see README "Deleting and
    forgetting")."""
    svc = _service(request)
    entities = await _body_field(
        request, svc, "entities", dict, '{"entities": {join_key: [values, ...]}}'
    )
    return json_response(await svc.run_write(svc.store.delete, view, entities))


@router.post("/v1/forget/{entity}")
async def forget_entity(entity: str, request: Request) -> Response:
    """Delete entities from every view keyed by `entity` (composite keys included), in one
    record: body {"keys": [values]}; answers {"seq", "deleted", "views"}."""
    svc = _service(request)
    keys = await _body_field(
        request, svc, "keys", list, '{"keys": [values, ...]} (at least one key)'
    )
    return json_response(await svc.run_write(svc.store.forget, entity, keys))


async def _body_field(
    request: Request, svc: StoreService, name: str, kind: type, shape: str
) -> Any:
    """The non-empty `kind` field `name` of a JSON object body; BadRequestError otherwise,
    saying the body must be `shape`."""
    body = require_object(parse_json(await read_body(request, svc.settings.max_body_bytes)))
    value = body.get(name)
    if not isinstance(value, kind) or not value:
        raise BadRequestError(f"the body must be {shape}")
    return value


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text: requests and latency per endpoint, store counters, index statistics."""
    svc = _service(request)
    content = await svc.run_read(render, request.app.state.metrics_registry)
    return Response(content, media_type=CONTENT_TYPE)
