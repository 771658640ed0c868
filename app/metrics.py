"""Request metrics and the Prometheus text exposition of /metrics.

`MetricsMiddleware` (pure ASGI, cheap) counts requests by endpoint (the route's path template,
never the raw path, so the label set stays bounded), method and status, and records latency in a
fixed-bucket histogram per endpoint. It runs on the event loop thread only, so the counters need
no lock. Store-side figures (ingested rows, lookups, compactions, commit log, learned-index
statistics) come from `FeatureStore.stats()` at scrape time.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Latency buckets in seconds (upper bounds); +Inf is implicit.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """Per-endpoint counters and latency histograms. Event-loop thread only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, method, status)] += 1
        counts = self.buckets.get(endpoint)
        if counts is None:
            counts = self.buckets[endpoint] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[endpoint] += seconds
        self.counts[endpoint] += 1

    def render(self) -> list[str]:
        lines = [
            "# HELP rickhouse_http_requests_total HTTP requests by endpoint, method and status.",
            "# TYPE rickhouse_http_requests_total counter",
        ]
        for (endpoint, method, status), n in sorted(self.requests.items()):
            lines.append(
                f'rickhouse_http_requests_total{{endpoint="{_esc(endpoint)}",method="{method}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP rickhouse_http_request_duration_seconds Request latency by endpoint.",
            "# TYPE rickhouse_http_request_duration_seconds histogram",
        ]
        for endpoint, counts in sorted(self.buckets.items()):
            label = f'endpoint="{_esc(endpoint)}"'
            cumulative = 0
            for bound, n in zip(BUCKETS, counts, strict=False):
                cumulative += n
                lines.append(
                    f'rickhouse_http_request_duration_seconds_bucket{{{label},le="{bound}"}} {cumulative}'
                )
            cumulative += counts[-1]
            lines.append(
                f'rickhouse_http_request_duration_seconds_bucket{{{label},le="+Inf"}} {cumulative}'
            )
            lines.append(
                f"rickhouse_http_request_duration_seconds_sum{{{label}}} {self.sums[endpoint]}"
            )
            lines.append(
                f"rickhouse_http_request_duration_seconds_count{{{label}}} {self.counts[endpoint]}"
            )
        return lines


class MetricsMiddleware:
    """Times every HTTP request from arrival to the last byte of its response."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(endpoint, scope["method"], status, time.perf_counter() - start)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _gauge(
    lines: list[str], name: str, help_: str, kind: str, samples: Iterable[tuple[str, Any]]
) -> None:
    rows = [(labels, _num(v)) for labels, v in samples]
    rows = [(labels, v) for labels, v in rows if v is not None]
    if not rows:
        return
    lines.append(f"# HELP {name} {help_}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, v in rows:
        lines.append(f"{name}{{{labels}}} {v:g}" if labels else f"{name} {v:g}")


def render_store_stats(stats: Mapping[str, Any]) -> list[str]:
    """Prometheus lines from `FeatureStore.stats()` (INTERNAL_API.md shape; absent parts skipped)."""
    lines: list[str] = []
    counters = stats.get("counters") or {}
    _gauge(
        lines,
        "rickhouse_ingested_rows_total",
        "Rows ingested.",
        "counter",
        [("", counters.get("ingested_rows"))],
    )
    _gauge(
        lines,
        "rickhouse_ingest_batches_total",
        "Batches ingested.",
        "counter",
        [("", counters.get("ingest_batches"))],
    )
    _gauge(
        lines,
        "rickhouse_online_lookups_total",
        "Online lookup calls.",
        "counter",
        [("", counters.get("online_lookups"))],
    )
    _gauge(
        lines,
        "rickhouse_exports_total",
        "Training exports.",
        "counter",
        [("", counters.get("exports"))],
    )
    _gauge(
        lines,
        "rickhouse_last_seq",
        "Highest committed seq.",
        "gauge",
        [("", stats.get("last_seq"))],
    )
    log_stats = stats.get("commit_log") or {}
    _gauge(
        lines,
        "rickhouse_commit_log_segments",
        "Commit log segments on disk.",
        "gauge",
        [("", log_stats.get("segments"))],
    )
    _gauge(
        lines,
        "rickhouse_commit_log_bytes",
        "Commit log size on disk.",
        "gauge",
        [("", log_stats.get("bytes"))],
    )

    online = stats.get("online") or {}
    per_view: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for view, tree in sorted(online.items()):
        if not isinstance(tree, Mapping):
            continue
        v = f'view="{_esc(str(view))}"'
        per_view["compactions"].append((v, tree.get("compactions")))
        per_view["flushes"].append((v, tree.get("flushes")))
        per_view["durable_seq"].append((v, tree.get("durable_seq")))
        memtable = tree.get("memtable") or {}
        per_view["memtable_rows"].append((v, memtable.get("rows")))
        analyzer = tree.get("analyzer") or {}
        for key in ("learned", "skipped", "pending"):
            per_view["analyzer"].append((f'{v},decision="{key}"', analyzer.get(key)))
        for level in tree.get("levels") or ():
            lv = f'{v},level="{level.get("level")}"'
            for key in (
                "sstables",
                "keys",
                "bytes",
                "plr_segments",
                "model_bytes",
                "lookups_positive",
                "lookups_negative",
            ):
                per_view[f"level_{key}"].append((lv, level.get(key)))
            for mode, n in (level.get("index_modes") or {}).items():
                per_view["level_index_modes"].append((f'{lv},mode="{_esc(str(mode))}"', n))
    _gauge(
        lines,
        "rickhouse_compactions_total",
        "Online compactions per view.",
        "counter",
        per_view["compactions"],
    )
    _gauge(
        lines,
        "rickhouse_flushes_total",
        "Online memtable flushes per view.",
        "counter",
        per_view["flushes"],
    )
    _gauge(
        lines,
        "rickhouse_online_durable_seq",
        "Online durable seq per view.",
        "gauge",
        per_view["durable_seq"],
    )
    _gauge(
        lines,
        "rickhouse_memtable_rows",
        "Rows in the online memtable per view.",
        "gauge",
        per_view["memtable_rows"],
    )
    _gauge(
        lines,
        "rickhouse_learned_index_decisions",
        "Cost-benefit analyzer decisions.",
        "gauge",
        per_view["analyzer"],
    )
    helps = {
        "sstables": "Sstables per level.",
        "keys": "Keys per level.",
        "bytes": "Sstable bytes per level.",
        "plr_segments": "Learned-index (PLR) segments per level.",
        "model_bytes": "Learned-index model bytes per level.",
        "lookups_positive": "Lookups that found their key, per level.",
        "lookups_negative": "Lookups that missed, per level.",
    }
    for key, help_ in helps.items():
        kind = "counter" if key.startswith("lookups") else "gauge"
        suffix = "_total" if kind == "counter" else ""
        _gauge(lines, f"rickhouse_level_{key}{suffix}", help_, kind, per_view[f"level_{key}"])
    _gauge(
        lines,
        "rickhouse_level_index_modes",
        "Sstables per index mode, per level.",
        "gauge",
        per_view["level_index_modes"],
    )

    offline = stats.get("offline") or {}
    off: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for view, s in sorted(offline.items()):
        if isinstance(s, Mapping):
            v = f'view="{_esc(str(view))}"'
            for key in ("files", "bytes", "buffer_rows", "durable_seq"):
                off[key].append((v, s.get(key)))
    for key in ("files", "bytes", "buffer_rows", "durable_seq"):
        _gauge(
            lines,
            f"rickhouse_offline_{key}",
            f"Offline store {key.replace('_', ' ')} per view.",
            "gauge",
            off[key],
        )
    return lines
