"""The router's data lifecycle routes: deletes and forgets through the cluster's log.

- `DELETE /v1/entities/{view}`: body `{"entities": {join_key: [values]}}`;
- `POST /v1/forget/{entity}`: body `{"keys": [values]}`.
Same bodies, errors and answers as `rickhouse serve` (app/native_api.py), with `"seq"` and
`"position"` per partition (`{"<partition>": ...}`: a cluster has no single seq; a tablet's seq
is its partition's offset + 1), and `"not_yet_applied"` listing partitions no replica applied
within APPLY_WAIT_S (the delete is durable and will be applied). The delete is written as one
batch (one Kafka transaction and one commit record) and answered after its commit and once the
nodes applied it (cluster/deletes.py); reads through this router see it from then on.

`routes` is included by app/router_server.py; the app's `state.router` is the Router.
Blocking work (produce) runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Request
from starlette.responses import Response

from app.body import read_body
from app.errors import BadRequestError
from app.payloads import parse_json, require_object
from cluster import deletes
from cluster.router import Router

routes = APIRouter()
MAX_BODY_BYTES = 64 << 20
APPLY_WAIT_S = 30.0  # bound on waiting for the nodes to apply a delete before answering


@routes.delete("/v1/entities/{view}")
async def delete_entities(view: str, request: Request) -> Response:
    """Delete entities from a view in both stores of every tablet holding them."""
    router: Router = request.app.state.router
    entities = await _body_field(
        request, "entities", dict, '{"entities": {join_key: [values, ...]}}'
    )
    targets = deletes.delete_targets(router.parsed, view, entities)
    return await _write(router, "delete", targets)


@routes.post("/v1/forget/{entity}")
async def forget_entity(entity: str, request: Request) -> Response:
    """Delete entities from every view keyed by `entity` (composite keys included)."""
    router: Router = request.app.state.router
    keys = await _body_field(request, "keys", list, '{"keys": [values, ...]} (at least one key)')
    targets = deletes.forget_targets(router.parsed, entity, keys)
    return await _write(router, "forget", targets)


async def _write(router: Router, kind: str, targets: dict[str, pa.Table]) -> Response:
    defs = router.parsed
    slices = deletes.delete_slices(
        defs,
        targets,
        router.config.partitions,
        time.time_ns(),
        router.writer.options.max_record_bytes,
    )
    positions = await asyncio.to_thread(router.writer.produce, slices)
    nodes = [(s.config.url, s.config.partitions) for s in router.nodes.values()]
    results = await deletes.gather_results(nodes, positions, APPLY_WAIT_S)
    replicated = deletes.replicated_views(defs, list(targets))
    body = deletes.answer(kind, positions, results, replicated, list(targets))
    return _json(body)


async def _body_field(request: Request, name: str, kind: type, shape: str) -> Any:
    """The non-empty `kind` field `name` of a JSON object body; BadRequestError otherwise."""
    body = require_object(parse_json(await read_body(request, MAX_BODY_BYTES)))
    value = body.get(name)
    if not isinstance(value, kind) or not value:
        raise BadRequestError(f"the body must be {shape}")
    return value


def _json(value: Any) -> Response:
    import orjson

    return Response(orjson.dumps(value), media_type="application/json")
