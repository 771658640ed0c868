"""POST /v1/training-export: request parsing, path safety, and the result as file or stream.

The entity rows arrive as JSON columns, as an Arrow IPC stream body, or as the path of a Parquet
file that must resolve under the store root (no `..`, no symlink out of it). What is checked here
is the request: its JSON shape, the paths and names it gives, and the decoding of JSON columns
and Arrow bodies into an entity table (join keys by `store.entities.parse_entities`, timestamps by
`store.timestamps.parse_iso8601`). The feature refs are resolved by `store.features.plan_features`
before anything reaches the offline store, so hostile names never get near a query; the entity
table's columns (join keys present, event_timestamp, no repeated or empty names) are checked by
the store's export. The result is written by `FeatureStore.export_training` under
`<root>/exports/`; it is then returned as that path (JSON), or streamed back as Parquet or Arrow
IPC and deleted. Every answer names the seq the export was taken at. Pure functions but for
`run_export` (writes under the root) and `arrow_chunks` (deletes what it streamed).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.arrow_body import ARROW_STREAM, read_arrow_stream, validate_columns
from app.errors import ApiError, BadRequestError, NotFoundApiError
from app.payloads import check_columns, parse_features, require_object, wire_keys
from app.service import DefinitionsSnapshot
from store import FeatureStore
from store.dtypes import arrow_type
from store.entities import parse_entities
from store.errors import short_repr
from store.features import FeaturePlan, plan_features
from store.timestamps import parse_iso8601

PARQUET = "application/vnd.apache.parquet"
EXPORTS_DIR = "exports"
_OUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.parquet$")
_SEQ_TEXT = re.compile(r"^[0-9]{1,19}$")  # ASCII only: str.isdigit() also takes "²"
ENTITY_TS = "event_timestamp"


class ExportExistsError(ApiError):
    status = 409
    type = "Conflict"


@dataclass(frozen=True)
class ExportRequest:
    entities: pa.Table | str | None  # a table, an absolute Parquet path under the root, or
    # None with `entities_as_of`
    features: list[str] | str  # refs, or a feature service name (resolved: they exist)
    as_of_seq: int | None
    mode: str  # "file" | "parquet" | "arrow"
    out_name: str | None = None
    # instead of entities: the latest row of every entity at this instant (ISO 8601 text or
    # epoch seconds; the store validates it)
    entities_as_of: Any = None


def choose_mode(accept: str, output: Any) -> str:
    """'file' when asked (output='file') or when the client accepts neither binary format."""
    if output is not None and output not in ("file", "stream"):
        raise BadRequestError(f"'output' = {output!r} is not 'file' or 'stream'")
    accept = accept.lower()
    if output == "file":
        return "file"
    if ARROW_STREAM in accept:
        return "arrow"
    if PARQUET in accept or "application/octet-stream" in accept or output == "stream":
        return "parquet"
    return "file"


def resolve_features(
    obj: Mapping[str, Any], snap: DefinitionsSnapshot
) -> tuple[list[str] | str, FeaturePlan]:
    """The request's `features` or `feature_service` and its read plan: the shape is checked
    here (422), whether the refs exist by the store's planner (404 naming the first that does
    not)."""
    features = parse_features(dict(obj))
    return features, plan_features(snap.definitions, features, False)


def parse_as_of_seq(value: Any) -> int | None:
    """A JSON integer or a decimal string of ASCII digits (a query parameter), >= 0."""
    if value is None:
        return None
    if isinstance(value, str) and _SEQ_TEXT.fullmatch(value):
        value = int(value)
    if type(value) is not int or value < 0:
        raise BadRequestError(
            f"'as_of_seq' must be a non-negative integer, got {short_repr(value)}"
        )
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
        raise NotFoundApiError(
            f"'entities_path' {short_repr(path)}: no such file under the store root"
        )
    return str(candidate)


def check_entity_file(path: str, shown: str) -> None:
    """The Parquet file at `path` has a readable footer (the rows are streamed by the offline
    store, which checks its columns). `shown` names it in messages."""
    try:
        pq.read_schema(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"'entities_path' {shown!r} is not a readable Parquet file: {exc}"
        ) from None


def check_out_name(name: Any) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not _OUT_NAME.fullmatch(name) or ".." in name:
        raise BadRequestError(
            f"'out' = {name!r} must be a plain file name ending in .parquet "
            "(letters, digits, '_', '-', '.'); it is written under <root>/exports/"
        )
    return name


def entities_from_columns(columns: Any, plan: FeaturePlan, snap: DefinitionsSnapshot) -> pa.Table:
    """JSON entity columns -> Arrow: join keys typed by their entity, event_timestamp parsed
    (RFC 3339 / ISO 8601; naive = UTC), any other column (labels) inferred and passed through.
    A missing event_timestamp is left for the store's export to name."""
    check_columns(columns, "'entities'")
    keys, _n = parse_entities(wire_keys(columns, snap.key_dtypes), plan.join_keys)
    key_types = dict(plan.join_keys)
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if name in keys:
            arrays[name] = pa.array(keys[name], arrow_type(key_types[name]))
        elif name == ENTITY_TS:
            arrays[name] = _timestamps(values)
        else:
            try:
                arrays[name] = pa.array(values)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                raise BadRequestError(
                    f"'entities'[{name!r}]: mixed or unsupported values ({exc})"
                ) from None
    return pa.table(arrays)


def _timestamps(values: list[Any]) -> pa.Array:
    try:
        return parse_iso8601(values)
    except ValueError as exc:
        raise BadRequestError(
            f"'entities'[{ENTITY_TS!r}]: {exc} (timestamps must lie within 1677-09-21 and "
            "2262-04-11)"
        ) from None


def parse_json_request(
    obj: Any, accept: str, snap: DefinitionsSnapshot, root: Path
) -> ExportRequest:
    obj = require_object(obj)
    features, plan = resolve_features(obj, snap)
    has_cols, has_path = "entities" in obj, "entities_path" in obj
    entities: pa.Table | str | None = None
    entities_as_of: Any = None
    if "entities_as_of" in obj:
        if has_cols or has_path:
            raise BadRequestError(
                "send 'entities_as_of' instead of 'entities' or 'entities_path', not with them"
            )
        entities_as_of = obj["entities_as_of"]
        if isinstance(entities_as_of, bool) or not isinstance(entities_as_of, str | int | float):
            raise BadRequestError(
                "'entities_as_of' must be ISO 8601 text or epoch seconds, got "
                f"{short_repr(entities_as_of)}"
            )
    elif has_cols == has_path:
        raise BadRequestError("send exactly one of 'entities' (JSON columns) or 'entities_path'")
    elif has_cols:
        entities = entities_from_columns(obj["entities"], plan, snap)
    else:
        entities = safe_entities_path(obj["entities_path"], root)
        check_entity_file(entities, obj["entities_path"])
    return ExportRequest(
        entities=entities,
        features=features,
        as_of_seq=parse_as_of_seq(obj.get("as_of_seq")),
        mode=choose_mode(accept, obj.get("output")),
        out_name=check_out_name(obj.get("out")),
        entities_as_of=entities_as_of,
    )


def parse_arrow_request(
    body: bytes, params: Mapping[str, Any], accept: str, snap: DefinitionsSnapshot, limit: int
) -> ExportRequest:
    """Arrow IPC stream body = entity rows; features etc. as query parameters."""
    table = read_arrow_stream(body, limit)
    # entity tables reach the offline store without store.batch.convert_batch: validated here
    validate_columns(table)
    query: dict[str, Any] = {}
    if params.get("features"):
        query["features"] = [r for item in params["features"] for r in item.split(",") if r]
    if params.get("feature_service"):
        query["feature_service"] = params["feature_service"]
    features, _plan = resolve_features(query, snap)
    if table.num_rows == 0:
        raise BadRequestError("the entity rows are empty")
    return ExportRequest(
        entities=table,
        features=features,
        as_of_seq=parse_as_of_seq(params.get("as_of_seq")),
        mode=choose_mode(accept, params.get("output")),
        out_name=check_out_name(params.get("out")),
    )


def run_export(fs: FeatureStore, req: ExportRequest) -> dict[str, Any]:
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
        if req.entities_as_of is not None:
            info = fs.export_training(
                None,
                req.features,
                str(out),
                as_of_seq=req.as_of_seq,
                entities_as_of=req.entities_as_of,
            )
        else:
            info = fs.export_training(req.entities, req.features, str(out), as_of_seq=req.as_of_seq)
    except BaseException:
        out.unlink(missing_ok=True)  # ours: reserved or written by this request
        raise
    answer = {
        "seq": int(info["seq"]),
        "rows": int(info["rows"]),
        "path": str(info.get("path", out)),
    }
    if "outside_retention" in info:  # entity rows before a view's retention, read as nulls
        answer["outside_retention"] = dict(info["outside_retention"])
    if "entities_as_of" in info:  # the instant of a batch-scoring export, ns since the epoch
        answer["entities_as_of"] = int(info["entities_as_of"])
    return answer


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
