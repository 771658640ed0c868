"""Reading request bodies under the configured size limit (RICKHOUSE_MAX_BODY_BYTES).

A declared Content-Length over the limit is refused (413) before a byte is read; a chunked body
is counted while it streams and refused as soon as it passes the limit, so a huge body never
sits in memory whole. Arrow IPC bodies are decoded by app/arrow_body.py. Stateless; safe from any
thread or task.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from app.errors import BadRequestError, PayloadTooLargeError


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 when it is larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequestError(f"invalid Content-Length {declared!r}") from None
        if size > limit:
            raise PayloadTooLargeError(
                f"request body of {size} bytes exceeds the limit of {limit} bytes "
                "(RICKHOUSE_MAX_BODY_BYTES); send smaller batches"
            )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(
                f"request body exceeds the limit of {limit} bytes (RICKHOUSE_MAX_BODY_BYTES); "
                "send smaller batches"
            )
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def media_type(request: Request) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """`read_body` for a raw ASGI handler (the online fast path): same limits, same errors."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                raise BadRequestError(f"invalid Content-Length {value!r}") from None
            if size > limit:
                raise PayloadTooLargeError(
                    f"request body of {size} bytes exceeds the limit of {limit} bytes "
                    "(RICKHOUSE_MAX_BODY_BYTES); send smaller batches"
                )
            break
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(
                f"request body exceeds the limit of {limit} bytes (RICKHOUSE_MAX_BODY_BYTES); "
                "send smaller batches"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
