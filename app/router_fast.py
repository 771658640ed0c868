"""The router's POST /get-online-features as a pure ASGI handler in front of FastAPI: the hot
path of the cluster's reads (app/fast_path.py does the same for `rickhouse serve`).

`read_online` is the endpoint's whole logic, shared with the FastAPI route of
app/router_server.py (which stays registered for /docs): parse and check the Feast request
(app/payloads.py, the same errors as a single root), take its `min_position`, and let
`Router.read` route it; a request whose rows all fall in one partition goes to one replica as
its bytes and comes back as the node's bytes. `RouterFastPath` answers the endpoint without
FastAPI's routing, Request/Response objects and exception middleware. A body that cannot be
read, a refused request (4xx naming the problem) and a partition no replica could serve (503
naming it) are answered here as the app's handlers answer them; any other exception is left to
the FastAPI app: the read is replayed through its route, so every exception handler the app
registers applies unchanged (a read has no side effect; this is the rare path). It sets scope["route"] for MetricsMiddleware. Runs on the
event loop; holds no state of its own.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.body import read_asgi_body
from app.errors import CLIENT_CLOSED, ApiError, BadRequestError, error_body, store_error_answer
from app.fast_path import send_json
from app.payloads import key_dtypes, parse_json, parse_online_request, require_object
from cluster.router import NoReplicaError, Router
from store.errors import StoreError

PATH = "/get-online-features"


class _Label:
    """What MetricsMiddleware reads from scope["route"]: the endpoint's path template."""

    path = PATH


async def read_online(router: Router, body: bytes) -> tuple[int, bytes]:
    """(status, JSON body) of one Feast read through `router`; raises the request's errors."""
    req = parse_online_request(body, key_dtypes(router.parsed))
    obj = require_object(parse_json(body))
    min_position = parse_positions(obj.get("min_position"))
    return await router.read(obj, req.features, req.entities, min_position, body)


def parse_positions(value: object) -> dict[int, int]:
    """A read's `min_position` ({"<partition>": offset}; None: none)."""
    if value is None:
        return {}
    try:
        assert isinstance(value, dict)
        return {int(p): int(off) for p, off in value.items()}
    except (AssertionError, TypeError, ValueError):
        raise BadRequestError(
            f"'min_position' must be an object {{\"<partition>\": offset}}, got {value!r}"
        ) from None


class RouterFastPath:
    """ASGI middleware answering POST /get-online-features through `router` (module doc)."""

    def __init__(self, app: ASGIApp, router: Router, max_body_bytes: int) -> None:
        self.app = app
        self.router = router
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _Label
        try:
            body = await read_asgi_body(scope, receive, self.max_body_bytes)
        except ClientDisconnect:  # nothing to answer; the status is for /metrics
            await send_json(send, CLIENT_CLOSED, b"")
            return
        except ApiError as exc:
            content = error_body(PATH, exc.status, exc.type, exc.feast_class, exc.message)
            await send_json(send, exc.status, content)
            return
        try:
            status, content = await read_online(self.router, body)
        except ApiError as exc:
            status = exc.status
            content = error_body(PATH, status, exc.type, exc.feast_class, exc.message)
        except StoreError as exc:
            status, content = store_error_answer(PATH, exc)
        except NoReplicaError as exc:
            status, content = 503, error_body(PATH, 503, "Unavailable", "FeastError", str(exc))
        except Exception:  # the app's handlers answer it, exactly as for any endpoint
            await self.app(scope, _replay(body), send)
            return
        await send_json(send, status, content)


def _replay(body: bytes) -> Receive:
    """A `receive` that yields `body` once, then waits as a connection without news does."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            message: dict[str, Any] = {"type": "http.request", "body": body, "more_body": False}
            return message
        return {"type": "http.disconnect"}

    return receive
