"""Freshness of each feature view: newest event and ingest times, the ingest-lag histogram, the
view's size, and whether it meets its `freshness` objective.

`Freshness.observe` is called once per acknowledged batch (the write path's observer) with the
batch's event times: one numpy pass (max, and a histogram of `ingest time - event time` by
`np.searchsorted` over LAG_BUCKETS_S), never per-row Python.

Staleness is judged on INGEST time: a view with `freshness: F` is stale when no batch was
ingested for longer than F (`now - newest ingest > F`), so a view that stops receiving data turns
stale after its objective, and a backfill of old events still shows the pipeline is alive (the
lag histogram shows how old the events were). A view that has never received data counts from
when this store started tracking it (open, or the apply that added it).

Persistence: the newest event and ingest times per view are written to `<root>/freshness.json`
(temp + rename, no fsync: statistics, not data) at most once per SAVE_INTERVAL_S while ingesting,
and at flush and close; they are read back on open, so staleness survives a restart. After a
crash up to SAVE_INTERVAL_S of updates may be missing: a view then looks staler, never fresher.
The lag histogram counts since open (a Prometheus histogram may reset with the process).

Thread-safety: every method may be called from any thread; `_lock` guards the per-view state,
`_save_lock` serializes saves (an ingest that finds it taken skips its save).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from store.definitions import Definitions
from store.duration import format_duration

log = logging.getLogger(__name__)

FRESHNESS_FILE = "freshness.json"  # under the store root; on-disk name, do not change
SAVE_INTERVAL_S = 1.0
# Upper bounds (seconds) of the ingest-lag histogram's buckets; +Inf is implicit.
LAG_BUCKETS_S = (0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)
_EDGES_NS = np.array([int(b * 1e9) for b in LAG_BUCKETS_S], dtype=np.int64)

Clock = Callable[[], int]  # wall clock, ns since the epoch


@dataclass
class _ViewState:
    """GUARDED_BY(Freshness._lock), every field."""

    since_ns: int  # when tracking began (open or apply): a view with no data counts from here
    newest_event_ns: int | None = None
    newest_ingest_ns: int | None = None
    lag_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(_EDGES_NS) + 1, np.int64))
    lag_sum_s: float = 0.0


class Freshness:
    """Per-view freshness state of one store root; see the module docstring."""

    def __init__(self, root: Path, clock: Clock = time.time_ns) -> None:
        """`clock`: the wall clock in ns (a test seam: staleness is judged against it)."""
        self._path = Path(root) / FRESHNESS_FILE
        self._clock = clock
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._views: dict[str, _ViewState] = {}  # GUARDED_BY(_lock)
        self._dirty = False  # GUARDED_BY(_lock)
        self._saved_at = 0.0  # GUARDED_BY(_save_lock); time.monotonic()
        self._load()

    def _load(self) -> None:
        now = self._clock()
        try:
            obj = json.loads(self._path.read_bytes())
            views = obj["views"]
            for name, v in views.items():
                self._views[str(name)] = _ViewState(
                    since_ns=int(v.get("since_ns", now)),
                    newest_event_ns=_opt_int(v.get("newest_event_ns")),
                    newest_ingest_ns=_opt_int(v.get("newest_ingest_ns")),
                )
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # statistics only: a torn write after a crash loses them, never the store
            log.warning("freshness record %s is unreadable (%s); starting afresh", self._path, e)
            self._views.clear()

    def track(self, defs: Definitions) -> None:
        """Start tracking the views of `defs` not tracked yet (their 'no data' clock starts)."""
        now = self._clock()
        with self._lock:
            for name in defs.feature_views:
                if name not in self._views:
                    self._views[name] = _ViewState(since_ns=now)
                    self._dirty = True

    def forget(self, view: str) -> None:
        """A view's data was dropped (forced apply): its history starts over."""
        with self._lock:
            self._views.pop(view, None)
            self._dirty = True

    def observe(self, view: str, event_ns: np.ndarray) -> None:
        """One acknowledged batch of `view` with event times `event_ns` (int64 ns)."""
        if len(event_ns) == 0:
            return
        now = self._clock()
        lags = now - event_ns
        counts = np.bincount(
            np.searchsorted(_EDGES_NS, lags, side="left"), minlength=len(_EDGES_NS) + 1
        )
        lag_sum = float(lags.sum(dtype=np.float64)) / 1e9
        newest = int(event_ns.max())
        with self._lock:
            st = self._views.get(view)
            if st is None:
                st = self._views[view] = _ViewState(since_ns=now)
            if st.newest_event_ns is None or newest > st.newest_event_ns:
                st.newest_event_ns = newest
            st.newest_ingest_ns = (
                now if st.newest_ingest_ns is None else max(now, st.newest_ingest_ns)
            )
            st.lag_counts += counts
            st.lag_sum_s += lag_sum
            self._dirty = True
        if time.monotonic() - self._saved_at >= SAVE_INTERVAL_S:
            self.save(blocking=False)

    def save(self, blocking: bool = True) -> None:
        """Write the newest times of every view to FRESHNESS_FILE if they changed."""
        if not self._save_lock.acquire(blocking=blocking):
            return
        try:
            with self._lock:
                if not self._dirty:
                    return
                body = {
                    name: {
                        "since_ns": st.since_ns,
                        "newest_event_ns": st.newest_event_ns,
                        "newest_ingest_ns": st.newest_ingest_ns,
                    }
                    for name, st in sorted(self._views.items())
                }
                self._dirty = False
            tmp = self._path.with_name(f".{FRESHNESS_FILE}.tmp")
            tmp.write_bytes(json.dumps({"version": 1, "views": body}, indent=1).encode())
            os.replace(tmp, self._path)
            self._saved_at = time.monotonic()
        except OSError as e:
            log.warning("cannot save freshness record %s: %s", self._path, e)
        finally:
            self._save_lock.release()

    def stale(self, defs: Definitions) -> list[str]:
        """Names of the views of `defs` with a freshness objective they do not meet, sorted."""
        now = self._clock()
        out = []
        with self._lock:
            for name, view in defs.feature_views.items():
                st = self._views.get(name)
                if view.freshness_ns and st is not None:
                    last = st.newest_ingest_ns if st.newest_ingest_ns is not None else st.since_ns
                    if now - last > view.freshness_ns:
                        out.append(name)
        return sorted(out)

    def stats(
        self,
        defs: Definitions,
        online: Mapping[str, Mapping[str, Any]],
        offline: Mapping[str, Mapping[str, Any]],
        rows: Mapping[str, int],
    ) -> dict[str, dict[str, Any]]:
        """Per view: newest event/ingest times (ns and ISO 8601), ingest lag histogram, rows,
        entities, bytes online and offline, and the objective with `fresh`.

        `online`/`offline`: each view's engine stats (LSMTree.stats, OfflineStore.stats);
        `rows`: each view's offline rows (files and buffer)."""
        stale = set(self.stale(defs))
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            states = {n: self._views.get(n) for n in defs.feature_views}
            lags = {n: (st.lag_counts.copy(), st.lag_sum_s) for n, st in states.items() if st}
        for name, view in defs.feature_views.items():
            st = states[name]
            on, off = online.get(name) or {}, offline.get(name) or {}
            levels = on.get("levels") or ()
            mem = on.get("memtable") or {}
            entry: dict[str, Any] = {
                "newest_event_time": _iso(st.newest_event_ns if st else None),
                "newest_ingest_time": _iso(st.newest_ingest_ns if st else None),
                "newest_event_ns": st.newest_event_ns if st else None,
                "newest_ingest_ns": st.newest_ingest_ns if st else None,
                "ingest_lag_seconds": _histogram(*lags.get(name, (None, 0.0))),
                "rows": rows.get(name, 0),
                # the online tree's keys summed over memtable and levels: exact after a full
                # compaction, an over-estimate while a key lives in several levels
                "entities": int(mem.get("rows", 0)) + sum(int(lv.get("keys", 0)) for lv in levels),
                "entities_estimate": "online keys over memtable and levels (upper bound)",
                "bytes_online": int(mem.get("bytes", 0))
                + sum(int(lv.get("bytes", 0)) for lv in levels),
                "bytes_offline": off.get("bytes"),
            }
            if view.retention_ns:
                entry["retention"] = format_duration(view.retention_ns)
            if view.freshness_ns:
                entry["freshness"] = format_duration(view.freshness_ns)
                entry["fresh"] = name not in stale
            out[name] = entry
        return out


def _histogram(counts: np.ndarray | None, total_s: float) -> dict[str, Any]:
    """Cumulative buckets as Prometheus wants them: [[le, count], ..., ["+Inf", count]]."""
    if counts is None:
        counts = np.zeros(len(_EDGES_NS) + 1, np.int64)
    cum = np.cumsum(counts).tolist()
    buckets: list[list[Any]] = [[b, c] for b, c in zip(LAG_BUCKETS_S, cum[:-1], strict=True)]
    buckets.append(["+Inf", cum[-1]])
    return {"buckets": buckets, "count": cum[-1], "sum": round(total_s, 6)}


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    sec, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac // 1000:06d}Z"


def _opt_int(v: object) -> int | None:
    return None if v is None else int(v)  # type: ignore[call-overload]
