"""Retention of offline history: which partitions have expired, the record of what was dropped,
and how point-in-time reads null the entity rows that reach back past retention.

A view with retention R keeps the partitions (event dates) that hold any instant at or after
`now - R`: a partition is dropped only when it lies *entirely* before that cutoff. The store
drops them atomically (its manifest first, the files after, once no query pins them).

`RetentionPolicy` holds each view's retention and persists, per view, the first day still retained after the last drop
(`<root>/offline/retention.json`, replaced atomically). It is written BEFORE the manifest that
drops the files, so after any crash every day below a recorded floor is either gone or about to
be dropped by the next pass; readers that compare stores (the audit) ignore rows below it.

Reads: an entity row whose event_timestamp is before a view's cutoff is "outside retention":
its features of that view read null whatever the store still holds, so the answer does not
depend on when the background drop ran. `count_before` counts them; `null_before_sql` and
`null_before_table` apply the nulls to a join's SQL or in-memory result.

Thread-safety: the pure functions are safe from any thread; `RetentionPolicy` takes its own lock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from offline._fsio import publish_bytes
from offline.errors import OfflineCorruptionError
from offline.feature_query import FeatureQuery
from offline.manifest import FileEntry
from offline.names import EVENT_TS, literal_path, quote_ident
from offline.partition import DAY_NS
from offline.timestamps import array_to_ns

log = logging.getLogger(__name__)

RETENTION_NAME = "retention.json"  # on-disk name under <root>/offline, do not change


def first_retained_day(cutoff_ns: int) -> int:
    """The first partition (days since epoch) that holds an instant at or after `cutoff_ns`:
    every day below it ends before the cutoff."""
    return cutoff_ns // DAY_NS


def expired_files(files: Sequence[FileEntry], cutoff_ns: int) -> list[FileEntry]:
    """Files of partitions lying entirely before `cutoff_ns`, in manifest order."""
    floor = first_retained_day(cutoff_ns)
    return [f for f in files if f.day < floor]


class RetentionPolicy:
    """Each view's retention (in memory: the store sets it from the definitions on open and on
    apply) and the durable record of the first day retained by each view's last drop."""

    def __init__(self, directory: Path, fsync: bool = True) -> None:
        self._path = directory / RETENTION_NAME
        self._fsync = fsync
        self._lock = threading.Lock()
        self._retention: dict[str, int] = {}  # GUARDED_BY(_lock): view -> ns, > 0
        self._floors: dict[str, int] = self._load()  # GUARDED_BY(_lock): view -> day

    def _load(self) -> dict[str, int]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            obj = json.loads(raw)
            return {str(k): int(v) for k, v in obj["first_retained_day"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OfflineCorruptionError(
                f"offline retention record {self._path} is unreadable ({exc}); remove it "
                "(the next retention pass writes it again)",
                path=str(self._path),
            ) from exc

    def set(self, view: str, retention_ns: int) -> None:
        """`view` keeps events at or after `now - retention_ns`; 0 keeps everything."""
        if retention_ns < 0:
            raise ValueError(f"retention of view {view!r} must be >= 0, got {retention_ns}")
        with self._lock:
            if retention_ns:
                self._retention[view] = retention_ns
            else:
                self._retention.pop(view, None)

    def items(self) -> list[tuple[str, int]]:
        """(view, retention ns) of every view with a retention, by name."""
        with self._lock:
            return sorted(self._retention.items())

    def floor_ns(self, view: str, now_ns: int) -> int | None:
        """The later of the last drop's first retained day and the current cutoff's, as ns;
        None when `view` has neither a retention nor a past drop."""
        with self._lock:
            days = [d for d in (self._floors.get(view),) if d is not None]
            retention = self._retention.get(view)
        if retention:
            days.append(first_retained_day(now_ns - retention))
        return max(days) * DAY_NS if days else None

    def raise_floor(self, view: str, day: int) -> None:
        """Record (durably, before returning) that every day of `view` below `day` goes."""
        with self._lock:
            if self._floors.get(view, day - 1) >= day:
                return
            floors = dict(self._floors)
            floors[view] = day
            body = json.dumps({"first_retained_day": dict(sorted(floors.items()))}, indent=1)
            publish_bytes(self._path, body.encode(), fsync=self._fsync)
            self._floors = floors


def count_before(
    entities: pa.Table | str | os.PathLike[str],
    cutoffs: Mapping[str, int],
    con: duckdb.DuckDBPyConnection,
) -> dict[str, int]:
    """Per view of `cutoffs`, the entity rows whose event_timestamp is before its cutoff (ns).

    `entities`: an Arrow table or a Parquet path with an `event_timestamp` column (a path is
    scanned by DuckDB on `con`, one column, never loaded into Python)."""
    if not cutoffs:
        return {}
    views = list(cutoffs)
    if isinstance(entities, str | os.PathLike):
        ts = f"epoch_ns({quote_ident(EVENT_TS)})"
        sums = ", ".join(f"count(*) FILTER (WHERE {ts} < {int(cutoffs[v])})" for v in views)
        row = con.execute(
            f"SELECT {sums} FROM read_parquet($p)", {"p": literal_path(os.fspath(entities))}
        ).fetchone()
        assert row is not None
        return {v: int(n or 0) for v, n in zip(views, row, strict=True)}
    ets = array_to_ns(entities.column(EVENT_TS), f"entity column {EVENT_TS!r}")
    return {v: int(pc.sum(pc.less(ets, cutoffs[v])).as_py() or 0) for v in views}


def null_before_sql(sql: str, columns: Mapping[str, int]) -> str:
    """Wrap a join's SQL (whose output has the entity `event_timestamp`) so that each named
    output column reads null on rows before its cutoff (`columns`: output column -> ns)."""
    if not columns:
        return sql
    ts = f"epoch_ns({quote_ident(EVENT_TS)})"
    repl = ", ".join(
        f"CASE WHEN {ts} < {int(c)} THEN NULL ELSE {quote_ident(name)} END AS {quote_ident(name)}"
        for name, c in columns.items()
    )
    return f"SELECT * REPLACE ({repl}) FROM ({sql})"


def null_before_table(table: pa.Table, columns: Mapping[str, int]) -> pa.Table:
    """`table` (a join result with the entity `event_timestamp`) with each named column null
    on rows before its cutoff (`columns`: column -> ns)."""
    if not columns:
        return table
    ets = array_to_ns(table.column(EVENT_TS), f"entity column {EVENT_TS!r}")
    for name, cutoff in columns.items():
        outside = pc.less(ets, cutoff)
        i = table.schema.get_field_index(name)
        col = table.column(i)
        nulls = pa.nulls(len(col), col.type)
        table = table.set_column(i, table.field(i), pc.if_else(outside, nulls, col))
    return table


def outside_columns(
    queries: Sequence[FeatureQuery],
    fields: Sequence[pa.Field],
    null_before: Mapping[str, int] | None,
    min_ts: int | None,
) -> dict[str, int]:
    """Output column -> cutoff ns, for the features of each query whose view has a cutoff in
    `null_before` above the entity rows' earliest `min_ts` (None: no rows: nothing to null).
    `fields`: the join's output feature fields, in query order."""
    out: dict[str, int] = {}
    if not null_before or min_ts is None:
        return out
    at = 0
    for q in queries:
        mine = fields[at : at + len(q.features)]
        at += len(q.features)
        cutoff = null_before.get(q.view)
        if cutoff is not None and cutoff > min_ts:
            out.update((f.name, cutoff) for f in mine)
    return out
