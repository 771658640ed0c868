"""Feast-compatible endpoints (FEAST_REST.md): shapes, status codes and error bodies as Feast's
feature server and its `remote` online-store client expect them.

Hot path: the raw body goes to the read pool, where it is parsed with orjson, checked, looked up
in one batched store call and serialized with orjson; the event loop only moves bytes.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app import openapi_docs
from app.body import read_body
from app.errors import UnavailableError
from app.feast_json import feast_json
from app.payloads import parse_online_request, parse_push_request, parse_write_request
from app.service import StoreService

router = APIRouter(tags=["feast"])
JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def _service(request: Request) -> StoreService:
    return request.app.state.service


def online_features_json(svc: StoreService, body: bytes) -> bytes:
    """Blocking: parse, one batched lookup, serialize."""
    req = parse_online_request(body, svc.snapshot.key_dtypes)
    r = svc.store.get_online_features(
        req.features, req.entities, full_feature_names=req.full_feature_names
    )
    out: dict[str, Any] = feast_json(r)
    if req.include_metadata:  # the views read, in request order
        out["metadata"]["feature_view_metadata"] = [{"name": lk.read.view.name} for lk in r.lookups]
    return orjson.dumps(out, option=JSON_OPTS)


@router.post("/get-online-features", openapi_extra=openapi_docs.GET_ONLINE_FEATURES)
async def get_online_features(request: Request) -> Response:
    """Latest feature values per entity, in Feast's response shape."""
    svc = _service(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    if svc.settings.inline_lookups:
        content = online_features_json(svc, body)
    else:
        content = await svc.run_read(online_features_json, svc, body)
    return Response(content, media_type="application/json")


def _write(svc: StoreService, body: bytes) -> int:
    view, df = parse_write_request(body)
    return svc.store.ingest(view, df)


@router.post("/write-to-online-store", openapi_extra=openapi_docs.WRITE_TO_ONLINE_STORE)
async def write_to_online_store(request: Request) -> Response:
    """Feast's remote-client write: one durable batch into both stores. Answers JSON `null`."""
    svc = _service(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    await svc.run_write(_write, svc, body)
    return Response(b"null", media_type="application/json")


def _push(svc: StoreService, body: bytes) -> int:
    name, df, _to = parse_push_request(body)
    # Every pushed row goes to both stores whatever `to` says: that is the consistency promise.
    return svc.store.push(name, df)


@router.post("/push", openapi_extra=openapi_docs.PUSH)
async def push(request: Request) -> Response:
    """Ingest through a push source (both stores). Answers 200 with an empty body."""
    svc = _service(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    await svc.run_write(_push, svc, body)
    return Response(b"", status_code=200)


@router.api_route("/health", methods=["GET", "HEAD"])
async def health(request: Request) -> Response:
    """200 when the store is open and serving, else 503 (HEAD too, as load balancers and uptime
    checkers often probe with it). GET's body is {"stale": [views]}: views whose `freshness`
    objective is not met. A quiet view never turns the status to 503 (Feast clients and load
    balancers read the status only); HEAD has no body."""
    svc = _service(request)
    if not svc.is_open:
        raise UnavailableError(f"the store is not available: {svc.unavailable_reason}")
    if request.method == "HEAD":
        return Response(b"", status_code=200)
    body = orjson.dumps({"stale": svc.store.stale_views()})
    return Response(body, status_code=200, media_type="application/json")
