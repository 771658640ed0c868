"""Optional bearer-token authentication (RICKHOUSE_API_TOKEN), as a pure ASGI middleware.

When a token is configured, every HTTP request but `GET /health` must carry
`Authorization: Bearer <token>`; otherwise it gets 401 before any handler runs. The comparison is
constant-time. Stateless; safe on any thread.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_body

OPEN_PATHS = frozenset({"/health"})


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        scheme, _, credentials = given.partition(b" ")
        if scheme.lower() == b"bearer":  # the scheme is case-insensitive (RFC 7235)
            given = b"Bearer " + credentials
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        message = (
            "missing bearer token: send 'Authorization: Bearer <RICKHOUSE_API_TOKEN>'"
            if not given
            else "invalid bearer token"
        )
        body = error_body(scope["path"], 401, "Unauthorized", "FeastPermissionError", message)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
