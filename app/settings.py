"""Server settings, read from the environment. The only module of rickhouse that reads it.

`Settings.from_env()` is called once per process (the CLI and the server); the result is a frozen
dataclass, safe to share between threads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "./rickhouse_data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with.

    root: the store root (one writer process per root).
    host, port: where `rickhouse serve` listens; 127.0.0.1 by default (not exposed).
    api_token: when set, every endpoint but /health requires `Authorization: Bearer <token>`.
    max_body_bytes: larger request bodies get 413 before they are parsed. Arrow ingest batches of
        ~1M narrow rows fit in the default; raise it for wider batches.
    read_threads: threads serving online lookups when `inline_lookups` is off (by default the
        event loop answers them itself). Lookups are short; a few threads keep the event loop
        free without oversubscribing 2 cores.
    write_threads: threads for ingests, exports, audits, compactions. Kept apart from the read
        pool so heavy work can never take every thread an online lookup needs.
    inline_lookups: run online lookups (parse, one batched store call, JSON) on the event loop.
        A lookup is ~1 ms of GIL-bound work; handing it to a thread makes the loop and the
        worker trade the GIL at every nogil kernel call, which cost +40% CPU per request and
        halved throughput here (bench/results/serve.md). Heavy work (ingest, export, audit,
        compaction, stats) always runs in the write pool. 0 = lookups in the read pool.
    background_nice: the nice value (Linux, per thread) of the write pool's threads and of every
        thread they start: the store opens in that pool, so DuckDB's workers and the engines'
        flush and compaction threads inherit it. Under CPU contention online requests then get
        the cores first; an export or an ingest alone still uses all of them. 0 = no change.
    background_idle: run those same threads under Linux's SCHED_IDLE policy instead (default):
        they get only CPU time no normal thread wants, and an online request that wakes up
        preempts them at once, on either core. With nice 10 an export still took a share of both
        cores: p99 during exports 2.23-2.39x alone, against 1.54-1.79x with SCHED_IDLE
        (bench/results/serve.md). An export alone still uses every core; under online load
        that keeps both cores busy, background work waits for it (an ingest's answer is later,
        never lost). 0 = nice only: background work keeps a share of the cores under load. Prefer
        0 when other busy processes share the machine: a background thread holding a lock an
        online read needs (the memtable's, for the microseconds of an insert) gets almost no CPU
        while every core is busy with normal-priority work, and the read waits for it.
    switch_interval_us: the interpreter's GIL switch interval while serving (sys.setswitchinterval).
        Python's default, 5000 us, lets a busy ingest or export thread hold the GIL for 5 ms
        before an online request gets it; a shorter interval bounds that wait. 0 keeps the default.
    online_index, delta: passed to FeatureStore (learned-index mode and PLR error bound).
    log_level: uvicorn and rickhouse logging level.
    snapshot_grace_s: seconds an offline Parquet file stays on disk after compaction or retention
        replaces it, so that an engine reading a listed snapshot (/v1/offline/{view}/files)
        finishes safely (OfflineOptions.snapshot_grace_s). Longer keeps more bytes on disk.
    """

    root: Path = Path(DEFAULT_ROOT)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_token: str | None = None
    max_body_bytes: int = 256 * 1024 * 1024
    read_threads: int = 4
    write_threads: int = 4
    inline_lookups: bool = True
    switch_interval_us: int = 0
    background_nice: int = 10
    background_idle: bool = True
    online_index: str = "auto"
    delta: int = 8
    log_level: str = "info"
    snapshot_grace_s: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from RICKHOUSE_* variables; `overrides` (not None) win over the environment."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "root": Path(env.get("RICKHOUSE_ROOT", DEFAULT_ROOT)),
            "host": env.get("RICKHOUSE_HOST", DEFAULT_HOST),
            "port": _int(env, "RICKHOUSE_PORT", DEFAULT_PORT, 1, 65535),
            "api_token": env.get("RICKHOUSE_API_TOKEN") or None,
            "max_body_bytes": _int(env, "RICKHOUSE_MAX_BODY_BYTES", cls.max_body_bytes, 1, 2**40),
            "read_threads": _int(env, "RICKHOUSE_READ_THREADS", cls.read_threads, 1, 256),
            "write_threads": _int(env, "RICKHOUSE_WRITE_THREADS", cls.write_threads, 1, 256),
            "inline_lookups": _bool(env, "RICKHOUSE_INLINE_LOOKUPS", cls.inline_lookups),
            "switch_interval_us": _int(
                env, "RICKHOUSE_SWITCH_INTERVAL_US", cls.switch_interval_us, 0, 1_000_000
            ),
            "background_nice": _int(env, "RICKHOUSE_BACKGROUND_NICE", cls.background_nice, 0, 19),
            "background_idle": _bool(env, "RICKHOUSE_BACKGROUND_IDLE", cls.background_idle),
            "online_index": env.get("RICKHOUSE_ONLINE_INDEX", cls.online_index),
            "delta": _int(env, "RICKHOUSE_DELTA", cls.delta, 1, 1 << 20),
            "log_level": env.get("RICKHOUSE_LOG_LEVEL", cls.log_level).lower(),
            "snapshot_grace_s": _int(
                env, "RICKHOUSE_SNAPSHOT_GRACE_S", cls.snapshot_grace_s, 0, 10 * 365 * 86_400
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values["root"], str):
            values["root"] = Path(values["root"])
        if values["online_index"] not in ("auto", "block", "learned"):
            raise SettingsError(
                f"RICKHOUSE_ONLINE_INDEX={values['online_index']!r}: use auto, block or learned"
            )
        return cls(**values)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside [{low}, {high}]")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")
