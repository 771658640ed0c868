"""Deleting entities from a view's Parquet files: which files hold them, and their rewrite.

`affected_files` finds, in one DuckDB pass over the key columns, the files holding rows of the
given entities and which entities were found; `rewrite_without` reads one affected partition
file and returns its rows without those entities (or None when none remain). The store
publishes the rewritten files and drops the old ones in one manifest write (OfflineStore.delete),
so a query sees either every row of an entity or none. Pure functions over published (never
modified) files; safe from any thread with a cursor of its own.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offline.compaction import read_partition
from offline.errors import query_error
from offline.manifest import FileEntry
from offline.names import literal_path, quote_ident

__all__ = ["affected_files", "files_holding", "rewrite_without"]

_DELETED = "__rh_deleted"  # the registered table of entities to delete


def _on(keys: tuple[str, ...], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote_ident(k)} = {right}.{quote_ident(k)}" for k in keys)


def affected_files(
    con: duckdb.DuckDBPyConnection,
    view_dir: Path,
    files: tuple[FileEntry, ...],
    entities: pa.Table,
    keys: tuple[str, ...],
) -> tuple[list[FileEntry], np.ndarray]:
    """(the files holding rows of `entities`, per entity row whether any file holds it).

    entities: the view's join-key columns, one row per entity, unique."""
    by_path = {literal_path(str(view_dir / f.path)): f for f in files}
    names, found = files_holding(con, list(by_path), entities, keys)
    return [f for p, f in by_path.items() if p in names], found


def files_holding(
    con: duckdb.DuckDBPyConnection,
    paths: list[str],
    entities: pa.Table,
    keys: tuple[str, ...],
) -> tuple[set[str], np.ndarray]:
    """(the Parquet `paths` (absolute, as given) holding rows of `entities`, per entity row
    whether any of them holds it), in one DuckDB pass over their key columns."""
    found = np.zeros(entities.num_rows, dtype=bool)
    if not paths or entities.num_rows == 0:
        return set(), found
    ent = entities.append_column("__rh_i", pa.array(np.arange(entities.num_rows)))
    con.register(_DELETED, ent)
    cols = ", ".join(quote_ident(k) for k in keys)
    sql = (
        f"SELECT DISTINCT p.filename, d.__rh_i FROM "
        f"(SELECT {cols}, filename FROM read_parquet($files, filename = true, "
        f"union_by_name = true, hive_partitioning = false)) p "
        f"JOIN {_DELETED} d ON {_on(keys, 'p', 'd')}"
    )
    try:
        hits = con.sql(sql, params={"files": paths}).to_arrow_table()
    except duckdb.Error as exc:
        raise query_error(exc) from exc
    finally:
        con.unregister(_DELETED)
    found[hits.column(1).to_numpy()] = True
    return set(hits.column(0).to_pylist()), found


def rewrite_without(
    con: duckdb.DuckDBPyConnection,
    view: str,
    view_dir: Path,
    entry: FileEntry,
    schema: pa.Schema,
    keys: tuple[str, ...],
    entities: pa.Table,
) -> pa.Table | None:
    """The rows of file `entry` without those of `entities`, in the file's order (None: no row
    remains). `schema`: the view's stored schema."""
    rows = read_partition(view, view_dir, entry.day, [entry], schema, keys)
    if len(keys) == 1:  # one key column: a hash-set membership test, no join or sort
        gone = pc.is_in(rows.column(keys[0]), value_set=entities.column(keys[0]))
        kept = rows.filter(pc.invert(gone))
        return kept if kept.num_rows else None
    rows = rows.append_column("__rh_pos", pa.array(np.arange(rows.num_rows)))
    con.register("__rh_rows", rows)
    con.register(_DELETED, entities)
    try:
        kept = con.sql(
            f"SELECT r.* FROM __rh_rows r ANTI JOIN {_DELETED} d ON {_on(keys, 'r', 'd')} "
            "ORDER BY r.__rh_pos"
        ).to_arrow_table()
    except duckdb.Error as exc:
        raise query_error(exc) from exc
    finally:
        con.unregister("__rh_rows")
        con.unregister(_DELETED)
    if kept.num_rows == 0:
        return None
    kept = kept.drop_columns(["__rh_pos"])
    return pa.Table.from_arrays([kept.column(f.name).cast(f.type) for f in schema], schema=schema)
