"""cluster/node_client.py against a scripted loopback HTTP server: keep-alive reuse, a
connection the server closed while idle, chunked bodies, timeouts, refused connections."""

from __future__ import annotations

import asyncio

import pytest

from cluster.broker import free_port
from cluster.node_client import NodeCallError, NodeClient

pytestmark = pytest.mark.timeout(30)


async def _server(port: int, script: list[str], seen: list[int]) -> asyncio.Server:
    """Answers each request with the next `script` entry: "ok", "chunked", "close" (answer,
    then close), "drop" (close without answering), "hang" (never answer)."""
    conns = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns[0] += 1
        me = conns[0]
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed it
                return
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )  # fmt: skip
            body = await reader.readexactly(length)
            seen.append(me)
            what = script.pop(0)
            if what == "drop":
                writer.close()
                return
            if what == "hang":
                await asyncio.sleep(10)
            if what == "chunked":
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                writer.write(b"3\r\nabc\r\n" + f"{len(body):x}".encode() + b"\r\n" + body)
                writer.write(b"\r\n0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 201 Created\r\nX-Cols: 1,2\r\ncontent-length: ")
                writer.write(str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
            if what == "close":
                writer.close()
                return

    return await asyncio.start_server(handle, "127.0.0.1", port)


def test_keep_alive_reuse_resend_chunked_and_errors() -> None:
    async def main() -> None:
        port = free_port()
        seen: list[int] = []
        script = ["ok", "ok", "close", "drop", "ok", "chunked", "hang"]
        server = await _server(port, script, seen)
        client = NodeClient()
        try:
            r = await client.request("POST", "127.0.0.1", port, "/x?a=1", b"hello")
            assert (r.status, r.headers["x-cols"], r.body) == (201, "1,2", b"hello")
            r = await client.request("POST", "127.0.0.1", port, "/x", b"again")
            assert r.body == b"again" and seen == [1, 1]  # the same connection
            r = await client.request("POST", "127.0.0.1", port, "/x", b"last")
            assert r.body == b"last"  # then the server closed it
            # a new connection, dropped by the server without an answer: an error, no resend
            with pytest.raises(NodeCallError):
                await client.request("POST", "127.0.0.1", port, "/x", b"dropped")
            r = await client.request("POST", "127.0.0.1", port, "/x", b"fresh")
            assert r.body == b"fresh"
            r = await client.request("POST", "127.0.0.1", port, "/x", b"chunks")
            assert r.body == b"abcchunks"
            with pytest.raises(TimeoutError):
                await client.request("POST", "127.0.0.1", port, "/x", b"slow", timeout_s=0.2)
        finally:
            await client.close()
            server.close()
        with pytest.raises(NodeCallError):  # nobody listens any more
            await NodeClient().request("POST", "127.0.0.1", port, "/x", b"", timeout_s=2)

    asyncio.run(main())


def test_a_kept_connection_the_server_dropped_is_resent_on_a_new_one() -> None:
    async def main() -> None:
        port = free_port()
        seen: list[int] = []
        server = await _server(port, ["ok", "drop", "ok"], seen)
        client = NodeClient()
        try:
            await client.request("POST", "127.0.0.1", port, "/x", b"1")
            r = await client.request("POST", "127.0.0.1", port, "/x", b"2")
            assert r.body == b"2" and seen == [1, 1, 2]  # dropped on the kept one, resent
        finally:
            await client.close()
            server.close()

    asyncio.run(main())
