"""Request metrics and /metrics, with prometheus_client: one CollectorRegistry per app.

`RequestMetrics` holds a Counter of requests by endpoint (the route's path template, never the
raw path, so the label set stays bounded), method and status, and a Histogram of latency per
endpoint; `MetricsMiddleware` (pure ASGI) feeds them once per request. Each label set's children
are looked up once and cached, so a request costs two lock-guarded increments, not a label
resolution. prometheus_client's metrics are thread-safe; the child cache is written on the event
loop thread only (a dict insert, atomic for readers in other threads).

`StoreStatsCollector` turns `FeatureStore.stats()` into metric families at scrape time:
ingested rows, lookups, exports, commit log, compactions and flushes, and the per-level
learned-index statistics (sstables, keys, PLR segments, model bytes, lookups, index modes),
plus `rickhouse_up`. Scrapes call `render` off the event loop: `stats()` may take a moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.freshness_metrics import freshness_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets in seconds (upper bounds); +Inf is implicit.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """Per-endpoint request counts and latency histograms, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "rickhouse_http_requests",
            "HTTP requests by endpoint, method and status.",
            ("endpoint", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "rickhouse_http_request_duration_seconds",
            "Request latency by endpoint.",
            ("endpoint",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        # (endpoint, method, status) -> (counter child, histogram child); event loop writes only
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        children = self._children.get((endpoint, method, status))
        if children is None:
            children = self._children[(endpoint, method, status)] = (
                self.requests.labels(endpoint, method, str(status)),
                self.latency.labels(endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> list[str]:
        """The registry's exposition, line by line (what /metrics answers)."""
        return generate_latest(self.registry).decode().splitlines()


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


class StoreStatsCollector(Collector):
    """The store's figures at scrape time. `stats` returns `FeatureStore.stats()`, or None when
    the store is not open (then only `rickhouse_up 0` is reported)."""

    def __init__(self, stats: Callable[[], Mapping[str, Any] | None]) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        """Nothing: registering must not read the store (the names vary with its contents)."""
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is not None:
            yield from store_stats_families(stats)
        yield GaugeMetricFamily(
            "rickhouse_up", "1 when the store is open and serving.", value=int(stats is not None)
        )


def _num(value: Any) -> float | None:
    if isinstance(value, bool | int | float):
        return float(value)
    return None


class _Families:
    """Metric families being filled from a stats dict; a family without samples is dropped."""

    def __init__(self) -> None:
        self.out: list[Metric] = []

    def add(
        self,
        name: str,
        help_: str,
        counter: bool,
        labels: tuple[str, ...],
        samples: list[tuple[tuple[str, ...], Any]],
    ) -> None:
        rows = [(values, _num(v)) for values, v in samples]
        rows = [(values, v) for values, v in rows if v is not None]
        if not rows:
            return
        if counter:  # exposed as <name>_total
            family: Metric = CounterMetricFamily(name.removesuffix("_total"), help_, labels=labels)
        else:
            family = GaugeMetricFamily(name, help_, labels=labels)
        for values, v in rows:
            family.add_metric(list(values), v)  # type: ignore[attr-defined]
        self.out.append(family)


_LEVEL_HELP = {
    "sstables": "Sstables per level.",
    "keys": "Keys per level.",
    "bytes": "Sstable bytes per level.",
    "plr_segments": "Learned-index (PLR) segments per level.",
    "model_bytes": "Learned-index model bytes per level.",
    "lookups_positive": "Lookups that found their key, per level.",
    "lookups_negative": "Lookups that missed, per level.",
}
_OFFLINE_KEYS = ("files", "bytes", "buffer_rows", "durable_seq")


def store_stats_families(stats: Mapping[str, Any]) -> list[Metric]:
    """Metric families from `FeatureStore.stats()` (INTERNAL_API.md shape; absent parts skipped)."""
    f = _Families()
    counters = stats.get("counters") or {}
    for key, name, help_ in (
        ("ingested_rows", "rickhouse_ingested_rows_total", "Rows ingested."),
        ("ingest_batches", "rickhouse_ingest_batches_total", "Batches ingested."),
        ("online_lookups", "rickhouse_online_lookups_total", "Online lookup calls."),
        ("exports", "rickhouse_exports_total", "Training exports."),
    ):
        f.add(name, help_, True, (), [((), counters.get(key))])
    f.add("rickhouse_last_seq", "Highest committed seq.", False, (), [((), stats.get("last_seq"))])
    log_stats = stats.get("commit_log") or {}
    f.add(
        "rickhouse_commit_log_segments",
        "Commit log segments on disk.",
        False,
        (),
        [((), log_stats.get("segments"))],
    )
    f.add(
        "rickhouse_commit_log_bytes",
        "Commit log size on disk.",
        False,
        (),
        [((), log_stats.get("bytes"))],
    )
    _online_families(f, stats.get("online") or {})
    offline: dict[str, list[tuple[tuple[str, ...], Any]]] = {k: [] for k in _OFFLINE_KEYS}
    for view, s in sorted((stats.get("offline") or {}).items()):
        if isinstance(s, Mapping):
            for key in _OFFLINE_KEYS:
                offline[key].append(((str(view),), s.get(key)))
    for key in _OFFLINE_KEYS:
        f.add(
            f"rickhouse_offline_{key}",
            f"Offline store {key.replace('_', ' ')} per view.",
            False,
            ("view",),
            offline[key],
        )
    f.out += freshness_families(stats.get("freshness") or {})  # app/freshness_metrics.py
    return f.out


def _online_families(f: _Families, online: Mapping[str, Any]) -> None:
    per: dict[str, list[tuple[tuple[str, ...], Any]]] = {}

    def put(key: str, labels: tuple[str, ...], value: Any) -> None:
        per.setdefault(key, []).append((labels, value))

    for view, tree in sorted(online.items()):
        if not isinstance(tree, Mapping):
            continue
        v = str(view)
        put("compactions", (v,), tree.get("compactions"))
        put("flushes", (v,), tree.get("flushes"))
        put("durable_seq", (v,), tree.get("durable_seq"))
        put("memtable_rows", (v,), (tree.get("memtable") or {}).get("rows"))
        analyzer = tree.get("analyzer") or {}
        for decision in ("learned", "skipped", "pending"):
            put("analyzer", (v, decision), analyzer.get(decision))
        for level in tree.get("levels") or ():
            lv = (v, str(level.get("level")))
            for key in _LEVEL_HELP:
                put(f"level_{key}", lv, level.get(key))
            for mode, n in (level.get("index_modes") or {}).items():
                put("level_index_modes", (*lv, str(mode)), n)
    by_view = ("view",)
    f.add(
        "rickhouse_compactions_total",
        "Online compactions per view.",
        True,
        by_view,
        per.get("compactions", []),
    )
    f.add(
        "rickhouse_flushes_total",
        "Online memtable flushes per view.",
        True,
        by_view,
        per.get("flushes", []),
    )
    f.add(
        "rickhouse_online_durable_seq",
        "Online durable seq per view.",
        False,
        by_view,
        per.get("durable_seq", []),
    )
    f.add(
        "rickhouse_memtable_rows",
        "Rows in the online memtable per view.",
        False,
        by_view,
        per.get("memtable_rows", []),
    )
    f.add(
        "rickhouse_learned_index_decisions",
        "Cost-benefit analyzer decisions.",
        False,
        ("view", "decision"),
        per.get("analyzer", []),
    )
    for key, help_ in _LEVEL_HELP.items():
        counter = key.startswith("lookups")
        name = f"rickhouse_level_{key}{'_total' if counter else ''}"
        f.add(name, help_, counter, ("view", "level"), per.get(f"level_{key}", []))
    f.add(
        "rickhouse_level_index_modes",
        "Sstables per index mode, per level.",
        False,
        ("view", "level", "mode"),
        per.get("level_index_modes", []),
    )


def app_registry(
    request_metrics: RequestMetrics, stats: Callable[[], Mapping[str, Any] | None]
) -> CollectorRegistry:
    """`request_metrics`' registry with the store's collector added (one registry per app)."""
    request_metrics.registry.register(StoreStatsCollector(stats))
    return request_metrics.registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of `registry` (blocking: collectors read the store)."""
    return generate_latest(registry)
