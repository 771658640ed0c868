"""Arrow IPC stream request bodies (`application/vnd.apache.arrow.stream`) -> Arrow tables.

What is checked here is the wire: the body is one whole IPC stream (framing, schema, UTF-8 field
names, no bytes after its end), and what it decodes to stays under the body limit
(RICKHOUSE_MAX_BODY_BYTES counts compressed buffers decoded and dictionary columns expanded,
both measured before anything is materialized; app/_ipc_size.py). Column data is not validated
here: an ingested table is validated in full by `store.batch.convert_batch`, the one owner of
that rule; `validate_columns` serves bodies that do not go through it (export entity rows).
Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from app._ipc_size import dictionary_expansion_bytes, stream_decoded_bytes
from app.errors import BadRequestError, PayloadTooLargeError

__all__ = ["ARROW_STREAM", "read_arrow_stream", "validate_columns"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def read_arrow_stream(body: bytes, limit: int) -> pa.Table:
    """An Arrow IPC stream body as a table (422 when it is not one stream; 413 when it decodes
    to more than `limit` bytes, checked before decoding). Dictionary columns are validated in
    full (their expansion is measured here); other columns are the caller's to validate."""
    if not body:
        raise BadRequestError("the request body is empty: send an Arrow IPC stream")
    try:
        decoded = stream_decoded_bytes(body, limit)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadRequestError(f"the body is not a valid Arrow IPC stream: {exc}") from None
    if decoded > limit:
        raise PayloadTooLargeError(
            f"the Arrow IPC stream decodes to more than {limit} bytes "
            "(RICKHOUSE_MAX_BODY_BYTES counts its compressed buffers decoded); send smaller "
            "batches"
        )
    source = pa.BufferReader(body)
    try:
        table = pa.ipc.open_stream(source).read_all()
        names = table.column_names  # decodes the field names: UnicodeDecodeError when not UTF-8
        read = source.tell()
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the body is not a valid Arrow IPC stream: {exc}") from None
    if read != len(body):  # e.g. two streams concatenated: the rows after the first would be lost
        raise BadRequestError(
            f"the body holds {len(body) - read} bytes after the end of its Arrow IPC stream; "
            "send one stream (one schema, then its record batches)"
        )
    dictionaries = [
        (name, column)
        for name, column in zip(names, table.columns, strict=True)
        if pa.types.is_dictionary(column.type)
    ]
    if dictionaries:  # measured below: their indices and values must be sound first
        _validate(dictionaries)
        if decoded + dictionary_expansion_bytes(table) > limit:
            raise PayloadTooLargeError(
                f"the Arrow IPC stream's dictionary-encoded columns decode to more than {limit} "
                "bytes (RICKHOUSE_MAX_BODY_BYTES); send smaller batches or plain strings"
            )
    return table


def validate_columns(table: pa.Table) -> None:
    """Every column of a table read from a body holds valid Arrow data (offsets in range,
    strings UTF-8), else 422 naming the column. Reading a stream checks its framing, not its
    data: a damaged or hostile body can declare buffers longer than it holds."""
    _validate(zip(table.column_names, table.columns, strict=True))


def _validate(columns: Iterable[tuple[str, pa.ChunkedArray]]) -> None:
    for name, column in columns:
        try:
            column.validate(full=True)
        except pa.ArrowException as exc:
            raise BadRequestError(
                f"the body is not a valid Arrow IPC stream: column {name!r} holds invalid data "
                f"({exc})"
            ) from None
