"""POST /v1/training-export: request parsing, path safety, and the result as file or stream.

The entity rows arrive as JSON columns, as an Arrow IPC stream body, or as the path of a Parquet
file that must resolve under the store root (no `..`, no symlink out of it). Feature refs are
checked against the applied definitions before anything reaches the offline store, so hostile
names never get near a query. The result is written by `FeatureStore.export_training` under
`<root>/exports/`; it is then returned as that path (JSON), or streamed back as Parquet or Arrow
IPC and deleted. Every answer names the seq the export was taken at.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app._ipc_size import dictionary_expansion_bytes, stream_decoded_bytes
from app.catalog import Catalog
from app.errors import ApiError, BadRequestError, NotFoundApiError, PayloadTooLargeError
from app.payloads import check_columns, check_refs, coerce_keys, parse_features, require_object
from store.errors import UnknownFeatureServiceError, short_repr

PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"
EXPORTS_DIR = "exports"
_OUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.parquet$")
_SEQ_TEXT = re.compile(r"^[0-9]{1,19}$")  # ASCII only: str.isdigit() also takes "²"
ENTITY_TS = "event_timestamp"


class ExportExistsError(ApiError):
    status = 409
    type = "Conflict"


@dataclass(frozen=True)
class ExportRequest:
    entities: pa.Table | str  # a table, or an absolute Parquet path under the root
    features: list[str]
    as_of_seq: int | None
    mode: str  # "file" | "parquet" | "arrow"
    out_name: str | None = None


def choose_mode(accept: str, output: Any) -> str:
    """'file' when asked (output='file') or when the client accepts neither binary format."""
    if output is not None and output not in ("file", "stream"):
        raise BadRequestError(f"'output' = {output!r} is not 'file' or 'stream'")
    accept = accept.lower()
    if output == "file":
        return "file"
    if ARROW in accept:
        return "arrow"
    if PARQUET in accept or "application/octet-stream" in accept or output == "stream":
        return "parquet"
    return "file"


def resolve_features(obj: Mapping[str, Any], catalog: Catalog) -> list[str]:
    """Feature refs of the request (a service is expanded), each checked against the definitions."""
    features, refs = parse_features(dict(obj), catalog)
    if isinstance(features, str):
        if features not in catalog.services:
            raise UnknownFeatureServiceError(features)
        refs = list(catalog.services[features])
    check_refs(refs, catalog)
    return refs


def parse_as_of_seq(value: Any) -> int | None:
    """A JSON integer or a decimal string of ASCII digits (a query parameter), >= 0."""
    if value is None:
        return None
    if isinstance(value, str) and _SEQ_TEXT.fullmatch(value):
        value = int(value)
    if type(value) is not int or value < 0:
        raise BadRequestError(f"'as_of_seq' must be a non-negative integer, got {short_repr(value)}")
    return value


def safe_entities_path(path: Any, root: Path) -> str:
    """An existing Parquet file under `root` (relative paths are relative to it), else 4xx."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise BadRequestError("'entities_path' must be a non-empty string")
    base = root.resolve()
    try:
        candidate = (base / path).resolve()
        if not candidate.is_relative_to(base):
            raise BadRequestError(
                f"'entities_path' {short_repr(path)} resolves outside the store root; "
                "entity files must be under the store root"
            )
        if candidate.suffix.lower() != ".parquet":
            raise BadRequestError(f"'entities_path' {short_repr(path)} is not a .parquet file")
        is_file = candidate.is_file()
    except OSError as exc:  # a name too long, a loop of symlinks, ...
        raise BadRequestError(
            f"'entities_path' {short_repr(path)} is not a usable path: {exc.strerror}"
        ) from None
    if not is_file:
        raise NotFoundApiError(f"'entities_path' {short_repr(path)}: no such file under the store root")
    return str(candidate)


def check_entity_file(path: str, shown: str, refs: list[str], catalog: Catalog) -> None:
    """The Parquet file at `path` is readable and has the columns the export needs (its footer
    only; the rows are streamed by the offline store). `shown` names it in messages."""
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"'entities_path' {shown!r} is not a readable Parquet file: {exc}"
        ) from None
    check_entity_columns(names, refs, catalog)


def check_out_name(name: Any) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not _OUT_NAME.fullmatch(name) or ".." in name:
        raise BadRequestError(
            f"'out' = {name!r} must be a plain file name ending in .parquet "
            "(letters, digits, '_', '-', '.'); it is written under <root>/exports/"
        )
    return name


def entities_from_columns(columns: Any, catalog: Catalog) -> pa.Table:
    """JSON entity columns -> Arrow: join keys typed by their entity, event_timestamp parsed
    (RFC 3339 / ISO 8601; naive = UTC), any other column (labels) inferred and passed through."""
    check_columns(columns, "'entities'")
    columns = coerce_keys(columns, catalog)
    if ENTITY_TS not in columns:
        raise BadRequestError(f"'entities' has no {ENTITY_TS!r} column (ISO 8601 timestamps)")
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if name == ENTITY_TS:
            arrays[name] = _timestamps(values)
        elif catalog.key_dtypes.get(name) == "int64":
            arrays[name] = pa.array(values, pa.int64())
        elif catalog.key_dtypes.get(name) == "string":
            arrays[name] = pa.array(values, pa.string())
        else:
            try:
                arrays[name] = pa.array(values)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                raise BadRequestError(
                    f"'entities'[{name!r}]: mixed or unsupported values ({exc})"
                ) from None
    return pa.table(arrays)


def _timestamps(values: list[Any]) -> pa.Array:
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise BadRequestError(
                f"'entities'[{ENTITY_TS!r}] row {i}: {v!r} is not an ISO 8601 timestamp string"
            )
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
        return pa.array(parsed).cast(pa.timestamp("ns", tz="UTC"))
    except (ValueError, TypeError, pa.ArrowInvalid) as exc:  # ArrowInvalid: out of ns range
        raise BadRequestError(
            f"'entities'[{ENTITY_TS!r}]: {exc} (timestamps must lie within 1677-09-21 and "
            "2262-04-11)"
        ) from None


def check_entity_keys(table: pa.Table | None, refs: list[str], catalog: Catalog) -> None:
    """The entity table carries every join key the requested views need, and event_timestamp."""
    if table is None:
        return
    check_entity_columns(table.column_names, refs, catalog)
    if table.num_rows == 0:
        raise BadRequestError("the entity rows are empty")


def check_entity_columns(column_names: list[str], refs: list[str], catalog: Catalog) -> None:
    """Entity column names: unique, non-empty, event_timestamp and every needed join key."""
    names = set(column_names)
    if len(names) != len(column_names):
        dup = next(n for n in column_names if column_names.count(n) > 1)
        raise BadRequestError(f"the entity rows repeat column {dup!r}")
    if "" in names:
        raise BadRequestError("an entity column has an empty name")
    if ENTITY_TS not in names:
        raise BadRequestError(f"the entity rows have no {ENTITY_TS!r} column")
    for view in catalog.views_of(refs):
        missing = [k for k in catalog.views[view].join_keys if k not in names]
        if missing:
            raise BadRequestError(
                f"the entity rows lack join key(s) {missing} needed by feature view {view!r}"
            )


def parse_json_request(obj: Any, accept: str, catalog: Catalog, root: Path) -> ExportRequest:
    obj = require_object(obj)
    refs = resolve_features(obj, catalog)
    has_cols, has_path = "entities" in obj, "entities_path" in obj
    if has_cols == has_path:
        raise BadRequestError("send exactly one of 'entities' (JSON columns) or 'entities_path'")
    if has_cols:
        entities: pa.Table | str = entities_from_columns(obj["entities"], catalog)
        check_entity_keys(entities, refs, catalog)
    else:
        entities = safe_entities_path(obj["entities_path"], root)
        check_entity_file(entities, obj["entities_path"], refs, catalog)
    return ExportRequest(
        entities=entities,
        features=refs,
        as_of_seq=parse_as_of_seq(obj.get("as_of_seq")),
        mode=choose_mode(accept, obj.get("output")),
        out_name=check_out_name(obj.get("out")),
    )


def parse_arrow_request(
    body: bytes, params: Mapping[str, Any], accept: str, catalog: Catalog, limit: int
) -> ExportRequest:
    """Arrow IPC stream body = entity rows; features etc. as query parameters."""
    table = read_arrow_stream(body, limit)
    query: dict[str, Any] = {}
    if params.get("features"):
        query["features"] = [r for item in params["features"] for r in item.split(",") if r]
    if params.get("feature_service"):
        query["feature_service"] = params["feature_service"]
    refs = resolve_features(query, catalog)
    check_entity_keys(table, refs, catalog)
    return ExportRequest(
        entities=table,
        features=refs,
        as_of_seq=parse_as_of_seq(params.get("as_of_seq")),
        mode=choose_mode(accept, params.get("output")),
        out_name=check_out_name(params.get("out")),
    )


def read_arrow_stream(body: bytes, limit: int) -> pa.Table:
    """An Arrow IPC stream body as a table, fully validated (422 when it is not one; 413 when
    its compressed buffers decode to more than `limit` bytes, checked before decoding).

    Reading a stream checks its framing, not its data: a damaged or hostile body can declare
    buffers longer than it holds, bad offsets or strings that are not UTF-8. Such columns would
    fail later, deep in a store (the online engine cannot read a non-UTF-8 string), so every
    column is validated here, where untrusted bytes become Arrow arrays (C++; ~1 ms per 200k rows).
    """
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
    for name, column in zip(names, table.columns, strict=True):
        try:
            column.validate(full=True)
        except pa.ArrowException as exc:
            raise BadRequestError(
                f"the body is not a valid Arrow IPC stream: column {name!r} holds invalid data "
                f"({exc})"
            ) from None
    if decoded + dictionary_expansion_bytes(table) > limit:
        raise PayloadTooLargeError(
            f"the Arrow IPC stream's dictionary-encoded columns decode to more than {limit} "
            "bytes (RICKHOUSE_MAX_BODY_BYTES); send smaller batches or plain strings"
        )
    return table


def run_export(fs: Any, req: ExportRequest) -> dict[str, Any]:
    """Blocking: write the export under <root>/exports/; returns {"seq", "rows", "path"}."""
    out_dir = Path(fs.root) / EXPORTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    if req.as_of_seq is not None and req.as_of_seq > fs.last_seq:
        raise BadRequestError(
            f"'as_of_seq' {req.as_of_seq} is ahead of the last committed seq {fs.last_seq}"
        )
    if req.mode == "file" and req.out_name:
        out = out_dir / req.out_name
        try:  # reserve the name atomically: of concurrent exports to one name, one wins
            out.touch(exist_ok=False)
        except FileExistsError:
            raise ExportExistsError(
                f"export {req.out_name!r} already exists under {out_dir}"
            ) from None
    elif req.mode == "file":
        out = out_dir / f"export-{uuid.uuid4().hex[:12]}.parquet"
    else:
        out = out_dir / f".stream-{uuid.uuid4().hex}.parquet"
    try:  # the offline store writes a temp file and renames it over `out`
        info = fs.export_training(req.entities, req.features, str(out), as_of_seq=req.as_of_seq)
    except BaseException:
        out.unlink(missing_ok=True)  # ours: reserved or written by this request
        raise
    return {"seq": int(info["seq"]), "rows": int(info["rows"]), "path": str(info.get("path", out))}


class _Chunks:
    """A write-only file object collecting what the IPC writer writes, taken chunk by chunk."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def arrow_chunks(path: str, batch_rows: int = 65536) -> Iterator[bytes]:
    """Stream a Parquet file as Arrow IPC stream bytes, one record batch at a time; deletes it."""
    try:
        pf = pq.ParquetFile(path)
        sink = _Chunks()
        writer = pa.ipc.new_stream(sink, pf.schema_arrow)
        for batch in pf.iter_batches(batch_size=batch_rows):
            writer.write_batch(batch)
            yield sink.take()
        writer.close()
        yield sink.take()
    finally:
        remove_quietly(path)


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
