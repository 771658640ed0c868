"""Tuning knobs of the offline store: one frozen dataclass, each default a stated trade-off."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OfflineOptions:
    """Options of `OfflineStore`; immutable, safe to share between threads."""

    # Rows buffered per view before a flush to Parquet. Larger means fewer, bigger files
    # (faster scans, fewer compactions) but more memory and more commit log to replay.
    buffer_rows: int = 1_000_000
    # A buffer older than this is flushed by the background thread (or at the next append
    # when `background` is off), so the commit log below it can be trimmed.
    buffer_age_s: float = 60.0
    # A partition with at least this many files is merged into one by compact().
    compact_min_files: int = 8
    # Run age flushes and compaction in a daemon thread; off for fully deterministic tests.
    background: bool = True
    # How often the background thread wakes up to look for old buffers and small files.
    background_interval_s: float = 1.0
    # A writer may run this many times `buffer_rows` ahead of the background flush before
    # append() flushes inline (backpressure bounds the buffer's memory).
    backpressure_factor: int = 4
    # Parquet compression (zstd per DESIGN.md) and level: higher is smaller and slower to write.
    compression: str = "zstd"
    compression_level: int = 1
    # Threads encoding the partitions of one flush in parallel (each file is one thread's).
    flush_threads: int = 2
    # Row group size of written files: smaller groups prune better, larger ones scan faster.
    row_group_rows: int = 256 * 1024
    # DuckDB per query: threads (None = all cores) and memory limit before it spills to disk
    # under <root>/offline/_duckdb_tmp; this is what bounds export memory.
    duckdb_threads: int | None = None
    duckdb_memory_limit: str = "320MB"
    # Point-in-time join plan: "auto" matches views with one int64 key in numba (memory
    # O(entity rows), files streamed) and others with DuckDB ASOF JOIN; "asof" uses DuckDB
    # ASOF for every view (the baseline the benchmark compares against).
    join_plan: str = "auto"
    # The numba matcher holds ~90-350 bytes per entity row (more with its dense key table);
    # above this many entity rows "auto" uses DuckDB ASOF, whose memory is bounded by
    # duckdb_memory_limit (it spills to disk).
    matcher_max_entities: int = 3_000_000
    # Entities per bucket of a whole-view latest-row query (the audit, latest_per_entity): the
    # view's rows are spilled once into buckets of about this many rows, then aggregated one
    # bucket at a time, so memory is bounded by a bucket (~100-200 bytes per row held, plus
    # the caller's copy), not by the view. Smaller buckets cost more queries.
    latest_bucket_entities: int = 1 << 19
    # fsync files, directories and the manifest. Off only for benchmarks of the CPU path.
    fsync: bool = True
    # Seconds a Parquet file stays on disk after compaction or retention replaces it: a
    # snapshot listed by `snapshot_files` names absolute paths that another engine (Spark,
    # Polars, Ray) may read for that long. Longer keeps more replaced bytes on disk.
    snapshot_grace_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.buffer_rows < 1:
            raise ValueError(f"buffer_rows must be >= 1, got {self.buffer_rows}")
        if self.compact_min_files < 2:
            raise ValueError(f"compact_min_files must be >= 2, got {self.compact_min_files}")
        if self.backpressure_factor < 1:
            raise ValueError(f"backpressure_factor must be >= 1, got {self.backpressure_factor}")
        if self.join_plan not in ("auto", "asof"):
            raise ValueError(f"join_plan must be 'auto' or 'asof', got {self.join_plan!r}")
        if self.flush_threads < 1:
            raise ValueError(f"flush_threads must be >= 1, got {self.flush_threads}")
        if self.latest_bucket_entities < 1:
            raise ValueError(
                f"latest_bucket_entities must be >= 1, got {self.latest_bucket_entities}"
            )
        if self.row_group_rows < 1:
            raise ValueError(f"row_group_rows must be >= 1, got {self.row_group_rows}")
        if not self.snapshot_grace_s >= 0:
            raise ValueError(f"snapshot_grace_s must be >= 0, got {self.snapshot_grace_s}")
