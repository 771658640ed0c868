"""Prometheus families of each view's freshness, from `FeatureStore.stats()["freshness"]`.

Per view (label `view`): newest event and ingest times (Unix seconds), rows, entities (the
online tree's key count, an upper bound until compaction merges levels), bytes online and
offline, the `freshness` objective and whether it is met (`rickhouse_view_fresh`, only for views
that set one), and `rickhouse_ingest_lag_seconds`, a histogram fed at ingest (ingest time minus
event time, one numpy pass per batch; store/freshness.py). Pure functions, called at scrape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from store.duration import parse_duration

_GAUGES = (
    ("newest_event_ns", "rickhouse_view_newest_event_timestamp_seconds", "Newest event time."),
    ("newest_ingest_ns", "rickhouse_view_newest_ingest_timestamp_seconds", "Newest ingest time."),
    ("rows", "rickhouse_view_rows", "Rows held offline (files and buffer)."),
    ("entities", "rickhouse_view_entities", "Online keys (upper bound until compaction)."),
    ("bytes_online", "rickhouse_view_online_bytes", "Online bytes (memtable and sstables)."),
    ("bytes_offline", "rickhouse_view_offline_bytes", "Offline Parquet bytes."),
)


def freshness_families(freshness: Mapping[str, Any]) -> list[Metric]:
    """Metric families of `stats()["freshness"]` ({view: entry}); empty without views."""
    out: list[Metric] = []
    views = sorted((str(v), e) for v, e in freshness.items() if isinstance(e, Mapping))
    if not views:
        return out
    for key, name, help_ in _GAUGES:
        family = GaugeMetricFamily(name, f"{help_} Per view.", labels=["view"])
        for view, entry in views:
            value = entry.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                family.add_metric([view], value / 1e9 if key.endswith("_ns") else float(value))
        out.append(family)
    objective = GaugeMetricFamily(
        "rickhouse_view_freshness_objective_seconds",
        "The view's freshness objective (views that set one).",
        labels=["view"],
    )
    fresh = GaugeMetricFamily(
        "rickhouse_view_fresh",
        "1 when the view received data within its freshness objective (views that set one).",
        labels=["view"],
    )
    lag = HistogramMetricFamily(
        "rickhouse_ingest_lag_seconds",
        "Ingest time minus event time of ingested rows, per view.",
        labels=["view"],
    )
    for view, entry in views:
        if "fresh" in entry:
            objective.add_metric([view], parse_duration(entry.get("freshness")) / 1e9)
            fresh.add_metric([view], 1.0 if entry["fresh"] else 0.0)
        hist = entry.get("ingest_lag_seconds") or {}
        buckets = [(_le(b), float(c)) for b, c in hist.get("buckets") or ()]
        if buckets:
            lag.add_metric([view], buckets, float(hist.get("sum") or 0.0))
    out += [objective, fresh, lag]
    return out


def _le(bound: Any) -> str:
    return "+Inf" if bound == "+Inf" else repr(float(bound))
