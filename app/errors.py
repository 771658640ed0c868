"""Errors of the server and the one place where every error becomes an HTTP response.

Two body shapes (FEAST_REST.md):
- Feast-compatible endpoints answer with a JSON *string* holding a JSON object
  `{"module": "feast.errors", "class": ..., "message": ...}`, which Feast's clients turn back into
  the Feast exception of that class.
- Native endpoints (`/v1/...`, `/metrics`) answer `{"error": {"type": ..., "message": ...}}`.

Store errors map by kind (`store_error_status`, the one table): not found -> 404, bad input or
definitions -> 422, a call overtaken by a concurrent apply -> 409, a locked or closed store ->
503, a damaged file (`store.CorruptionError`, its message naming the file and what to do) or an
engine failure -> 500 with that message in the JSON body; 5xx are logged with their traceback.
Any other exception is a bug and stays Starlette's 500, never a 200. Stateless; safe from any
thread.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from store import errors as store_errors

log = logging.getLogger(__name__)

# nginx's "client closed request": the client went away before its body arrived. The answer
# reaches no one; the status tells /metrics and the logs that this was not a server fault.
CLIENT_CLOSED = 499

# The endpoints that speak Feast's error encoding.
FEAST_PATHS = frozenset({"/get-online-features", "/write-to-online-store", "/push", "/health"})


class ApiError(Exception):
    """A request the server refuses. `status` is the HTTP status; `type` names the kind of error
    in native bodies; `feast_class` is the feast.errors class used on Feast endpoints."""

    status = 400
    type = "BadRequest"
    feast_class = "FeastError"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequestError(ApiError):
    """The body or a parameter is malformed: wrong type, missing key, unequal lists."""

    status = 422
    type = "ValidationError"


class NotFoundApiError(ApiError):
    """A named thing (view, feature, file) does not exist."""

    status = 404
    type = "NotFound"
    feast_class = "FeastObjectNotFoundException"


class UnauthorizedError(ApiError):
    status = 401
    type = "Unauthorized"
    feast_class = "FeastPermissionError"


class PayloadTooLargeError(ApiError):
    status = 413
    type = "PayloadTooLarge"


class UnsupportedMediaTypeError(ApiError):
    status = 415
    type = "UnsupportedMediaType"


class UnavailableError(ApiError):
    """The store is not open (another process holds the writer lock, or it is closing)."""

    status = 503
    type = "Unavailable"


# Store error kind -> (HTTP status, feast.errors class). Most specific first.
_STORE_MAP: tuple[tuple[type[store_errors.StoreError], int, str], ...] = (
    (store_errors.UnknownViewError, 404, "FeatureViewNotFoundException"),
    # Feast has no "unknown feature" class; the view is what its clients look up.
    (store_errors.UnknownFeatureError, 404, "FeatureViewNotFoundException"),
    (store_errors.UnknownFeatureServiceError, 404, "FeatureServiceNotFoundException"),
    (store_errors.UnknownPushSourceError, 404, "PushSourceNotFoundException"),
    (store_errors.NotFoundError, 404, "FeastObjectNotFoundException"),
    (store_errors.ValidationError, 422, "FeastError"),  # EntityKeyError included
    (store_errors.DefinitionError, 422, "FeastError"),
    # A concurrent apply overtook the call: nothing was written, retrying it is right.
    (store_errors.ConflictError, 409, "FeastError"),
    (store_errors.WriterLockedError, 503, "FeastError"),
    (store_errors.ClosedError, 503, "FeastError"),
    # A damaged file is a server fault, not the client's: 500, with the message naming the file.
    (store_errors.CorruptionError, 500, "FeastError"),
    (store_errors.EngineError, 500, "FeastError"),
)


def store_error_status(exc: store_errors.StoreError) -> tuple[int, str]:
    """(HTTP status, feast.errors class) of a store error."""
    for kind, status, feast_class in _STORE_MAP:
        if isinstance(exc, kind):
            return status, feast_class
    return 500, "FeastError"


def store_error_answer(path: str, exc: store_errors.StoreError) -> tuple[int, bytes]:
    """(HTTP status, error body) of a store error on `path`; a 5xx is logged with its traceback."""
    status, feast_class = store_error_status(exc)
    if status >= 500:
        log.error("store error on %s: %s", path, exc, exc_info=exc)
    return status, error_body(path, status, type(exc).__name__, feast_class, str(exc))


def error_body(path: str, status: int, type_: str, feast_class: str, message: str) -> bytes:
    """The error body for `path`: Feast's double encoding on Feast endpoints, else native."""
    if path in FEAST_PATHS:
        inner = orjson.dumps({"module": "feast.errors", "class": feast_class, "message": message})
        return orjson.dumps(inner.decode())
    return orjson.dumps({"error": {"type": type_, "message": message}})


def error_response(
    path: str,
    status: int,
    type_: str,
    feast_class: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(path, status, type_, feast_class, message),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        request.url.path, exc.status, exc.type, exc.feast_class, exc.message, exc.headers
    )


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, store_errors.StoreError)
    status, body = store_error_answer(request.url.path, exc)
    return Response(body, status_code=status, media_type="application/json")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    message = "; ".join(parts) or "invalid request"
    return error_response(request.url.path, 422, "ValidationError", "FeastError", message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    type_ = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return error_response(
        request.url.path,
        exc.status_code,
        type_,
        "FeastError",
        str(exc.detail),
        dict(exc.headers) if exc.headers else None,
    )


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    log.debug("client disconnected before its body arrived: %s", request.url.path)
    return Response(b"", status_code=CLIENT_CLOSED)


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on `app`. Unexpected exceptions are left to Starlette (500 + log)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(store_errors.StoreError, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
