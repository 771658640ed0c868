"""The record format of the cluster log: Arrow IPC values with headers naming view and kind.

One Kafka record holds one Arrow IPC stream (a table of rows of one view for one partition) or
a control payload. Headers (frozen wire format: nodes of other versions read them):
- `view`: the view name, UTF-8;
- `kind`: `data` (an IPC table of rows) or `control` (e.g. a definitions change), or `delete`
  (entities to delete, cluster/deletes.py);
- `chunk`: `i/n`, present on every record: the slice was cut into n records, this is the i-th
  (0-based). All n are produced in the same transaction, in order, to the same partition.
- `batch` (optional): `<router>/<session>/<n>`; records with it are applied only once the
  batch's `commit` record is read from the commits topic (cluster/commits.py,
  cluster/staging.py). Records without it are applied in offset order as they arrive.

`encode_chunks` cuts a table into IPC chunks of at most `max_bytes` each (the broker's message
limit). Pure functions and frozen values; safe from any thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from cluster.errors import ProduceError

VIEW = "view"  # header names: wire format, do not change
KIND = "kind"
CHUNK = "chunk"
BATCH = "batch"
DATA = "data"  # `kind` values
CONTROL = "control"
COMMIT = "commit"
Kind = Literal["data", "control", "commit", "session", "delete"]


@dataclass(frozen=True)
class Slice:
    """What one transaction writes to one partition for one view: a table or control bytes."""

    partition: int
    view: str
    kind: Kind
    payload: pa.Table | bytes  # a table for kind=data; opaque bytes for kind=control
    batch: str | None = None  # the `batch` header, see the module docstring
    topic: str | None = None  # None: the producer's topic (else e.g. the commits topic)


@dataclass(frozen=True)
class LogRecord:
    """One consumed record. offset: Kafka's offset in its partition (offsets have gaps)."""

    partition: int
    offset: int
    headers: Mapping[str, bytes]
    value: bytes

    @property
    def view(self) -> str:
        return self.headers.get(VIEW, b"").decode()

    @property
    def kind(self) -> str:
        return self.headers.get(KIND, b"").decode()

    @property
    def chunk(self) -> tuple[int, int]:
        """(i, n): this record is chunk i of the n records of its slice."""
        i, _, n = self.headers.get(CHUNK, b"0/1").decode().partition("/")
        return int(i), int(n)

    def table(self) -> pa.Table:
        """The Arrow table of a data record (a new table over the record's bytes)."""
        return decode_table(self.value)


def headers_of(
    view: str, kind: Kind, chunk: int, chunks: int, batch: str | None = None
) -> list[tuple[str, str | bytes | None]]:
    out: list[tuple[str, str | bytes | None]] = [
        (VIEW, view.encode()),
        (KIND, kind.encode()),
        (CHUNK, f"{chunk}/{chunks}".encode()),
    ]
    if batch is not None:
        out.append((BATCH, batch.encode()))
    return out


def encode_table(table: pa.Table) -> bytes:
    """One Arrow IPC stream holding `table`."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_table(value: bytes) -> pa.Table:
    """Inverse of encode_table."""
    return pa.ipc.open_stream(pa.py_buffer(value)).read_all()


def encode_chunks(table: pa.Table, max_bytes: int) -> list[bytes]:
    """`table` as IPC streams of at most max_bytes each, rows in order (one if it fits).

    Raises ProduceError if a single row does not fit: raise the broker's and the producer's
    message limit (message.max.bytes) or make the row smaller.
    """
    whole = encode_table(table)
    if len(whole) <= max_bytes:
        return [whole]
    pieces = max(2, math.ceil(len(whole) * 1.1 / max_bytes))
    return _encode_pieces(table, pieces, max_bytes)


def _encode_pieces(table: pa.Table, pieces: int, max_bytes: int) -> list[bytes]:
    n = table.num_rows
    if n <= 1:
        raise ProduceError(
            f"one row encodes to more than the record limit of {max_bytes} bytes; "
            "raise message.max.bytes on the broker and the producer"
        )
    step = math.ceil(n / min(pieces, n))
    out: list[bytes] = []
    for start in range(0, n, step):
        part = table.slice(start, step)
        blob = encode_table(part)
        out.extend([blob] if len(blob) <= max_bytes else _encode_pieces(part, 2, max_bytes))
    return out


def chunked(slices: Sequence[Slice], max_bytes: int) -> list[tuple[Slice, bytes, int, int]]:
    """Each slice's records as (slice, value, chunk index, chunk count), in slice order."""
    out: list[tuple[Slice, bytes, int, int]] = []
    for s in slices:
        if s.kind == DATA:
            if not isinstance(s.payload, pa.Table):
                raise ProduceError(f"view {s.view!r}: a data slice must hold an Arrow table")
            values = encode_chunks(s.payload, max_bytes)
        else:
            if not isinstance(s.payload, bytes):
                raise ProduceError(f"view {s.view!r}: a control slice must hold bytes")
            if len(s.payload) > max_bytes:
                raise ProduceError(
                    f"view {s.view!r}: control record of {len(s.payload)} bytes exceeds the "
                    f"record limit of {max_bytes}"
                )
            values = [s.payload]
        out.extend((s, v, i, len(values)) for i, v in enumerate(values))
    return out
