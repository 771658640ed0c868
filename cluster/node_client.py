"""A lean keep-alive HTTP/1.1 client for the router's calls to its nodes (the read hot path).

`NodeClient.request` sends one request on an idle pooled connection to (host, port), or a new
one, and returns the status, the response headers (lower-case names) and the body. It speaks the
subset the nodes' uvicorn servers answer with: a Content-Length body, a chunked body, or a body
up to the close. Connections are reused while the server keeps them open; one closed by the
server while idle (keep-alive timeout) is detected on its next use, and the request is resent
once on a new connection when nothing of the answer had arrived (the router only resends
idempotent reads through it). Errors: `NodeCallError` (a ConnectionError) for a refused, reset
or garbled connection, TimeoutError when no full answer came within the timeout; the connection
is then closed, never reused.

Why not aiohttp: a general client's per-request machinery (URL objects, cookie jar, tracing,
multidicts, stream readers) costs several times a loopback round trip.

Threading: one event loop. A connection serves one request at a time; the pool is a dict of
lists touched by the event loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import cast

_MAX_HEAD = 64 << 10  # bytes of status line and headers a node may send


class NodeCallError(ConnectionError):
    """A node could not be reached, closed the connection, or answered what is not HTTP."""


class Reply:
    """One HTTP answer: status, headers (lower-case names), body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class _Conn(asyncio.Protocol):
    """One keep-alive connection; `answer` completes with the Reply of the request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = True
        self.keep = True  # False once the server said `Connection: close`
        self.answer: asyncio.Future[Reply] | None = None
        self._buf = bytearray()
        self._head: tuple[int, dict[str, str]] | None = None
        self._start = 0  # offset of the body in _buf
        self.received = False  # any byte of the current answer arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.answer is not None and not self.answer.done():
            if self._head is not None and self._length() is None and not self._chunked():
                self._finish(bytes(self._buf[self._start :]))  # a body delimited by the close
            else:
                why = f": {exc}" if exc else ""
                self.answer.set_exception(NodeCallError(f"connection closed by the node{why}"))

    def data_received(self, data: bytes) -> None:
        self.received = True
        self._buf += data
        if self.answer is None or self.answer.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parse()
        except NodeCallError as e:
            self.answer.set_exception(e)
            self.close()

    def send(self, data: bytes, answer: asyncio.Future[Reply]) -> None:
        self.answer, self._head, self._start, self.received = answer, None, 0, False
        self._buf.clear()
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise NodeCallError("the node's response head is too long")
                return
            self._head = _parse_head(bytes(self._buf[:end]))
            self._start = end + 4
            if self._head[1].get("connection", "").lower() == "close":
                self.keep = False
        length = self._length()
        if length is not None:
            if len(self._buf) - self._start >= length:
                self._finish(bytes(self._buf[self._start : self._start + length]))
        elif self._chunked():
            body = _dechunk(self._buf, self._start)
            if body is not None:
                self._finish(body)

    def _length(self) -> int | None:
        assert self._head is not None
        value = self._head[1].get("content-length")
        if value is None:
            return 0 if self._head[0] in (204, 304) or 100 <= self._head[0] < 200 else None
        try:
            return int(value)
        except ValueError:
            raise NodeCallError(f"invalid Content-Length {value!r} from the node") from None

    def _chunked(self) -> bool:
        assert self._head is not None
        return "chunked" in self._head[1].get("transfer-encoding", "").lower()

    def _finish(self, body: bytes) -> None:
        assert self._head is not None and self.answer is not None
        self.answer.set_result(Reply(self._head[0], self._head[1], body))


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise NodeCallError(f"not an HTTP/1.1 answer from the node: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise NodeCallError(f"a malformed header line from the node: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _dechunk(buf: bytearray, at: int) -> bytes | None:
    """The body of a complete chunked message in buf[at:], or None while it is incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[at:eol]).split(b";", 1)[0], 16)
        except ValueError:
            raise NodeCallError("a malformed chunk size from the node") from None
        if size == 0:
            return bytes(out) if buf.find(b"\r\n\r\n", eol) >= 0 else None
        if len(buf) < eol + 2 + size + 2:
            return None
        out += buf[eol + 2 : eol + 2 + size]
        at = eol + 2 + size + 2


class NodeClient:
    """Pooled keep-alive connections per (host, port) (module docstring)."""

    def __init__(self, max_idle: int = 32) -> None:
        self.max_idle = max_idle  # idle connections kept per (host, port)
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._closed = False

    async def request(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> Reply:
        """Send `method target` with `body`; the node's Reply (any status)."""
        head = [f"{method} {target} HTTP/1.1\r\nhost: {host}:{port}\r\n"]
        if headers:
            head += [f"{k}: {v}\r\n" for k, v in headers.items()]
        head.append(f"content-length: {len(body)}\r\n\r\n")
        data = "".join(head).encode("latin-1") + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for attempt in (0, 1):
            conn, reused = await self._connection(host, port, deadline)
            answer: asyncio.Future[Reply] = loop.create_future()
            timer = loop.call_at(deadline, _expire, answer, conn)
            conn.send(data, answer)
            try:
                reply = await answer
            except NodeCallError:
                conn.close()
                if reused and not conn.received and attempt == 0:
                    continue  # the node had closed the idle connection: resend on a new one
                raise
            except BaseException:  # timeout or cancellation: the connection is out of step
                conn.close()
                raise
            finally:
                timer.cancel()
            self._release(host, port, conn)
            return reply
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()

    async def _connection(self, host: str, port: int, deadline: float) -> tuple[_Conn, bool]:
        idle = self._idle.get((host, port))
        while idle:
            conn = idle.pop()
            if conn.open:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Conn, host, port), max(0.0, deadline - loop.time())
            )
        except TimeoutError:
            raise
        except OSError as e:  # refused, unreachable
            raise NodeCallError(f"cannot connect to {host}:{port}: {e}") from e
        return conn, False

    def _release(self, host: str, port: int, conn: _Conn) -> None:
        idle = self._idle.setdefault((host, port), [])
        if self._closed or not conn.open or not conn.keep or len(idle) >= self.max_idle:
            conn.close()
        else:
            idle.append(conn)


def _expire(answer: asyncio.Future[Reply], conn: _Conn) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError("the node did not answer in time"))
        conn.close()
