"""A node's POST /get-online-features as a pure ASGI handler in front of FastAPI: the read hot
path of every request a router forwards.

Same contract as the FastAPI route it shadows in app/node_server.py (which stays registered for
/docs): query parameters `route_by`, `min_position` and `wait_ms`; the `x-rickhouse-columns`
header; 421 for entities of partitions the node does not serve, 422 for rows that cannot be
routed, 503 naming a partition still behind `min_position` after the wait; every other error
as app/errors.py maps it. What it saves: FastAPI's routing, Request/Response objects and
exception middleware, and the thread hop of `min_position` when the node already applied that
far (the usual case: the wait runs in a worker thread only when a partition is behind). Reads
of a small body run on the event loop, larger ones in a worker thread, as the route does. All
other requests pass through untouched. Runs on the event loop; holds no state of its own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from app.body import read_asgi_body
from app.errors import CLIENT_CLOSED, ApiError, BadRequestError, error_body, store_error_answer
from app.fast_path import send_json
from app.feast_json import feast_json
from app.node_server import (
    COLUMNS_HEADER,
    DEFAULT_WAIT_MS,
    INLINE_BODY_BYTES,
    JSON_OPTS,
    MAX_BODY_BYTES,
    MAX_WAIT_MS,
    _key_dtypes,
    online_json,
    parse_min_position,
)
from app.payloads import parse_online_request
from cluster.errors import RoutingError
from cluster.node import Node
from cluster.tablets import NotOwnedError, pinned_partition
from store.errors import StoreError

PATH = "/get-online-features"
_COLUMNS = COLUMNS_HEADER.encode()


class NodeFastPath:
    """ASGI middleware; `holder["node"]` is the started Node (set by the app's lifespan)."""

    def __init__(self, app: ASGIApp, holder: Mapping[str, Node]) -> None:
        self.app = app
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        node = self.holder.get("node")
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or node is None
        ):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = []
        try:
            body = await read_asgi_body(scope, receive, MAX_BODY_BYTES)
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            status, content, columns = await answer(node, body, query)
            if columns is not None:
                headers.append((_COLUMNS, ",".join(map(str, columns)).encode()))
        except ClientDisconnect:  # nothing to answer
            status, content = CLIENT_CLOSED, b""
        except NotOwnedError as exc:
            status, content = 421, _native(421, "MisdirectedRequest", str(exc))
        except RoutingError as exc:
            status, content = 422, _native(422, "ValidationError", str(exc))
        except ApiError as exc:
            status = exc.status
            content = error_body(PATH, status, exc.type, exc.feast_class, exc.message)
        except StoreError as exc:
            status, content = store_error_answer(PATH, exc)
        await send_json(send, status, content, headers)


async def answer(
    node: Node, body: bytes, query: Mapping[str, str]
) -> tuple[int, bytes, list[int] | None]:
    """(status, JSON body, the columns valid for `route_by` or None) of one read."""
    if "min_position" in query:
        required = parse_min_position(query["min_position"])
        behind = node.wait_positions(required, 0.0)  # a look under the lock, no wait
        if behind:
            wait_s = min(_wait_ms(query.get("wait_ms")), MAX_WAIT_MS) / 1000
            behind = await asyncio.to_thread(node.wait_positions, required, wait_s)
        if behind:
            p, applied = min(behind.items())
            message = (
                f"partition {p} of node {node.me.name} has applied offset {applied}, "
                f"behind the requested position {required[p]}"
            )
            return 503, _native(503, "Unavailable", message), None
    route_by = tuple(k for k in query.get("route_by", "").split(",") if k) or None
    pinned = pinned_partition(route_by) if route_by else None
    if pinned is not None and pinned in node.tablets.stores:  # every row on one tablet
        read = functools.partial(_pinned_json, node, pinned, body)
    else:
        read = functools.partial(online_json, node, body, route_by)
    if len(body) <= INLINE_BODY_BYTES:  # a few entities: cheaper than a thread hop
        content, columns = read()
    else:
        content, columns = await asyncio.to_thread(read)
    return 200, content, columns


def _pinned_json(node: Node, partition: int, body: bytes) -> tuple[bytes, list[int] | None]:
    """online_json for a read of every row on tablet `partition` (route_by `@<p>`): one store
    read, no routing; every column of the answer is valid (no columns header)."""
    req = parse_online_request(body, _key_dtypes(node.tablets.any().definitions()))
    res = node.tablets.stores[partition].get_online_features(
        req.features, req.entities, req.full_feature_names
    )
    out = feast_json(res)
    if req.include_metadata:
        out["metadata"]["feature_view_metadata"] = [
            {"name": lk.read.view.name} for lk in res.lookups
        ]
    return orjson.dumps(out, option=JSON_OPTS), None


def _wait_ms(text: str | None) -> float:
    if text is None:
        return DEFAULT_WAIT_MS
    try:
        return float(text)
    except ValueError:
        raise BadRequestError(f"wait_ms must be a number, got {text[:100]!r}") from None


def _native(status: int, kind: str, message: str) -> bytes:
    """The body app/node_server.py's `_error` gives (the router passes it through)."""
    return orjson.dumps({"error": kind, "detail": message, "status_code": status})
