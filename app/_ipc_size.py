"""What an Arrow IPC stream body decodes to, read from its message headers before decoding.

A body under the size limit can still decode to far more: IPC buffers may be LZ4 or ZSTD
compressed, and 25 KB of ZSTD decode to 800 MB of zeros. pyarrow offers no cap on what it
allocates while decoding, so the decoded size is summed from the record batch headers first
(each compressed buffer starts with its decoded length, an int64), and a body that decodes to
more than the limit is refused before a byte of it is decoded.

The headers are FlatBuffers (Arrow's format/Message.fbs, frozen since Arrow 1.0); only the few
fields needed are read, by hand.

Decoded, a dictionary-encoded string column can still grow when the store materializes it:
3000 indices to one 1 MB value cast to 3 GB (Arrow gives up at 2 GB, after 4 s).
`dictionary_expansion_bytes` says what that would take, without materializing it.
Pure functions; safe from any thread.
"""

from __future__ import annotations

import struct

import pyarrow as pa
import pyarrow.compute as pc

# Message.fbs: Message {version, header_type, header, bodyLength, custom_metadata}
_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 1, 2
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # MessageHeader union tags
_DICTIONARY_DATA = 1  # DictionaryBatch {id, data: RecordBatch, isDelta}
_BATCH_BUFFERS, _BATCH_COMPRESSION = 2, 3  # RecordBatch {length, nodes, buffers, compression}
_BUFFER = struct.Struct("<qq")  # Buffer {offset: long, length: long}
_UNCOMPRESSED = -1  # a compressed body's buffer prefix meaning "stored as is"


class _Table:
    """A FlatBuffers table at `pos` of `buf`: field lookup through its vtable."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return None
        offset = struct.unpack_from("<H", self.buf, self.vtable + entry)[0]
        return self.pos + offset if offset else None

    def u8(self, index: int) -> int:
        at = self._field(index)
        return 0 if at is None else self.buf[at]

    def table(self, index: int) -> _Table | None:
        at = self._field(index)
        return (
            None if at is None else _Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0])
        )

    def structs(self, index: int, layout: struct.Struct) -> list[tuple]:
        at = self._field(index)
        if at is None:
            return []
        vec = at + struct.unpack_from("<I", self.buf, at)[0]
        count = struct.unpack_from("<I", self.buf, vec)[0]
        return [layout.unpack_from(self.buf, vec + 4 + i * layout.size) for i in range(count)]


def message_decoded_bytes(message: pa.ipc.Message) -> int:
    """Bytes the buffers of one IPC message decode to (its body size when not compressed).

    Raises ValueError (struct.error included) when the header is not a valid message."""
    body = message.body
    body_size = 0 if body is None else body.size
    meta = message.metadata.to_pybytes()
    root = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
    kind = root.u8(_MESSAGE_HEADER_TYPE)
    batch = root.table(_MESSAGE_HEADER)
    if batch is not None and kind == _DICTIONARY_BATCH:
        batch = batch.table(_DICTIONARY_DATA)
    if batch is None or kind not in (_RECORD_BATCH, _DICTIONARY_BATCH):
        return body_size
    if batch.table(_BATCH_COMPRESSION) is None:
        return body_size
    assert body is not None
    total = 0
    for offset, length in batch.structs(_BATCH_BUFFERS, _BUFFER):
        if length == 0:
            continue
        if not (0 <= offset and offset + 8 <= body_size and length >= 8):
            raise ValueError(f"buffer at {offset} (+{length}) is outside the message body")
        decoded = struct.unpack_from("<q", body, offset)[0]
        if decoded < 0 and decoded != _UNCOMPRESSED:
            raise ValueError(f"buffer at {offset} declares a negative length {decoded}")
        total += length - 8 if decoded == _UNCOMPRESSED else decoded
    return total


def stream_decoded_bytes(body: bytes, limit: int) -> int:
    """Bytes an IPC stream body decodes to, summed message by message; stops counting past
    `limit`. Raises pa.ArrowInvalid / OSError / ValueError when the body is not a stream."""
    reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(body))
    total = 0
    while total <= limit:
        try:
            message = reader.read_next_message()
        except StopIteration:
            break
        total += message_decoded_bytes(message)
    return total


def dictionary_expansion_bytes(table: pa.Table) -> int:
    """Bytes the dictionary-encoded string and binary columns of `table` take once decoded
    (the length of each row's value, summed in C++; nothing is materialized)."""
    total = 0
    for column in table.columns:
        t = column.type
        if not (pa.types.is_dictionary(t) and _is_binary(t.value_type)):
            continue
        for chunk in column.chunks:
            lengths = pc.binary_length(chunk.dictionary).cast(pa.int64())
            total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
    return total


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )
