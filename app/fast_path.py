"""POST /get-online-features as a pure ASGI handler in front of FastAPI: the serving hot path.

FastAPI's per-request machinery (routing, dependency solving, Request and Response objects,
exception middleware) cost a large share of a 1-entity lookup. This handler answers the one hot
endpoint directly: read the body under the size limit, parse it with orjson, one batched store
call, orjson out, with the same error mapping as every other endpoint (app/errors.py). All other
requests pass through untouched. The FastAPI route stays registered, so /docs and
/openapi.json still document the endpoint. Runs on the event loop; stateless.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from app.body import read_asgi_body
from app.errors import CLIENT_CLOSED, ApiError, error_body, store_error_answer
from app.feast_api import online_features_json
from app.service import StoreService
from store.errors import StoreError

PATH = "/get-online-features"
_JSON = [(b"content-type", b"application/json")]


class _Label:
    """What MetricsMiddleware reads from scope["route"]: the endpoint's path template."""

    path = PATH


class OnlineFastPath:
    def __init__(self, app: ASGIApp, service: StoreService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _Label
        svc = self.service
        try:
            body = await read_asgi_body(scope, receive, svc.settings.max_body_bytes)
            if svc.settings.inline_lookups:
                content = online_features_json(svc, body)
            else:
                content = await svc.run_read(online_features_json, svc, body)
            status = 200
        except ClientDisconnect:  # nothing to answer; the status is for /metrics
            status, content = CLIENT_CLOSED, b""
        except ApiError as exc:
            status = exc.status
            content = error_body(PATH, status, exc.type, exc.feast_class, exc.message)
        except StoreError as exc:
            status, content = store_error_answer(PATH, exc)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON, (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})


async def send_json(
    send: Send, status: int, content: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send one whole JSON answer (the raw ASGI fast paths of the router and the nodes)."""
    head = [*_JSON, (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": content})
