"""The entity side of a point-in-time join: an Arrow table or a Parquet file, validated.

An entity input holds the key columns of every queried view, `event_timestamp` (any unit,
naive = UTC) and any other columns, which pass through unchanged. A Parquet input is never
loaded into Python for an export: DuckDB streams it. Immutable; thread-safe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offline.errors import OfflineError, SchemaMismatchError
from offline.names import EVENT_TS, INTERNAL_PREFIX, literal_path, quote_ident
from offline.pit_join import ENTITY_ID, ENTITY_TS
from offline.timestamps import array_to_ns

_FILE_ROW = "file_row_number"  # column DuckDB adds with file_row_number = true


@dataclass(frozen=True)
class EntityInput:
    """Validated entities: exactly one of `table` and `path` is set."""

    schema: pa.Schema
    num_rows: int
    min_ts: int | None  # int64 ns UTC; None when there are no rows
    max_ts: int | None
    table: pa.Table | None = None
    ets: pa.Array | None = None  # event_timestamp as int64 ns, for `table`
    path: str | None = None

    def register(
        self,
        con: duckdb.DuckDBPyConnection,
        columns: list[str],
        params: dict,
        extra: dict[str, pa.Array],
    ) -> str:
        """Make the entity rows readable on `con`; returns SQL yielding `columns`, id and ts.

        `extra`: more columns aligned with the entity rows (precomputed matches).
        """
        if self.table is not None:
            narrow = pa.table(
                {c: self.table.column(c) for c in columns}
                | {ENTITY_ID: np.arange(self.num_rows, dtype=np.int64), ENTITY_TS: self.ets}
                | extra
            )
            con.register("__rh_entities", narrow)
            return "__rh_entities"
        assert self.path is not None  # exactly one of table and path is set
        params["__rh_entity_path"] = literal_path(self.path)
        cols = ", ".join(quote_ident(c) for c in columns)
        source = (
            f"(SELECT {cols}{', ' if cols else ''}{_FILE_ROW} AS {ENTITY_ID}, "
            f"epoch_ns({quote_ident(EVENT_TS)}) AS {ENTITY_TS} "
            f"FROM read_parquet($__rh_entity_path, file_row_number = true))"
        )
        if not extra:
            return source
        ids = {ENTITY_ID: np.arange(self.num_rows, dtype=np.int64)}
        con.register("__rh_matches", pa.table(ids | extra))
        names = ", ".join(f"__rh_x.{quote_ident(c)}" for c in extra)
        return (
            f"(SELECT __rh_y.*, {names} FROM {source} AS __rh_y "
            f"LEFT JOIN __rh_matches AS __rh_x ON __rh_y.{ENTITY_ID} = __rh_x.{ENTITY_ID})"
        )

    def key_and_ts(self, key: str) -> tuple[pa.ChunkedArray, pa.Array]:
        """The entity column `key` and event_timestamp as int64 ns, in input order."""
        if self.table is not None:
            assert self.ets is not None
            return self.table.column(key), self.ets
        assert self.path is not None
        try:
            table = pq.read_table(self.path, columns=[key, EVENT_TS])
        except (OSError, pa.ArrowInvalid) as exc:
            raise OfflineError(f"entity file {self.path!r} is not readable: {exc}") from exc
        return table.column(key), array_to_ns(table.column(EVENT_TS), "entity event_timestamp")


def _check_schema(schema: pa.Schema, where: str) -> None:
    if EVENT_TS not in schema.names:
        raise SchemaMismatchError(f"entity {where} lacks the {EVENT_TS!r} column")
    if not pa.types.is_timestamp(schema.field(EVENT_TS).type):
        raise SchemaMismatchError(
            f"entity {where}: {EVENT_TS!r} must be a timestamp (any unit; naive means UTC), "
            f"got {schema.field(EVENT_TS).type}"
        )
    for name in schema.names:
        if name.startswith(INTERNAL_PREFIX):
            raise SchemaMismatchError(f"entity {where}: column name {name!r} is reserved")
    if len(set(schema.names)) != len(schema.names):
        raise SchemaMismatchError(f"entity {where} has duplicate column names {schema.names}")


def load_entities(
    entities: pa.Table | pa.RecordBatch | str | os.PathLike[str],
    con: duckdb.DuckDBPyConnection,
    read_path: bool,
) -> EntityInput:
    """Validate an entity table, or a Parquet file (read into Arrow only when `read_path`)."""
    if isinstance(entities, str | os.PathLike):
        path = os.fspath(entities)
        if not os.path.isfile(path):
            raise OfflineError(f"entity file {path!r} does not exist or is not a file")
        if read_path:
            return load_entities(pq.read_table(path), con, read_path)
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise OfflineError(f"entity file {path!r} is not readable Parquet: {exc}") from exc
        _check_schema(schema, f"file {path!r}")
        if _FILE_ROW in schema.names:
            raise SchemaMismatchError(f"entity file {path!r}: column {_FILE_ROW!r} is reserved")
        ts = quote_ident(EVENT_TS)
        row = con.execute(
            f"SELECT count(*), count({ts}), min(epoch_ns({ts})), max(epoch_ns({ts})) "
            "FROM read_parquet($p)",
            {"p": literal_path(path)},
        ).fetchall()
        n, valid, lo, hi = row[0]
        if valid != n:
            raise SchemaMismatchError(f"entity file {path!r}: {EVENT_TS!r} has null rows")
        return EntityInput(schema, int(n), lo, hi, path=path)
    if isinstance(entities, pa.RecordBatch):
        entities = pa.Table.from_batches([entities])
    if not isinstance(entities, pa.Table):
        raise OfflineError(
            f"entities must be an Arrow table or a Parquet path, got {type(entities).__name__}"
        )
    _check_schema(entities.schema, "table")
    ets = array_to_ns(entities.column(EVENT_TS), f"entity column {EVENT_TS!r}")
    if len(ets):
        bounds = pc.min_max(ets)
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    else:
        lo = hi = None
    return EntityInput(entities.schema, entities.num_rows, lo, hi, table=entities, ets=ets)


def check_keys(ent: EntityInput, view: str, keys: tuple[str, ...], schema: pa.Schema) -> None:
    """Each key of `view` is an entity column of a compatible type (integer / string)."""
    for key in keys:
        if key not in ent.schema.names:
            raise SchemaMismatchError(f"entities lack key column {key!r} of view {view!r}")
        have, want = ent.schema.field(key).type, schema.field(key).type
        is_str = pa.types.is_string(have) or pa.types.is_large_string(have)
        ok = pa.types.is_integer(have) if pa.types.is_integer(want) else is_str
        if not ok:
            raise SchemaMismatchError(
                f"entity key column {key!r} has type {have}, view {view!r} needs {want}"
            )
