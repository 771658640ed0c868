"""app/metrics.py: Prometheus text exposition of request metrics and store statistics
(prometheus_client writes values as floats: a count of 6 reads "6.0"; labels sorted by name)."""

import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from app.metrics import BUCKETS, RequestMetrics, StoreStatsCollector, store_stats_families

LINE = re.compile(r'^[a-z_][a-z0-9_]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+Inf-]+$')


def _check_exposition(lines: list[str]) -> dict[str, str]:
    """Every line is a comment or a sample; TYPE precedes samples; returns name -> type."""
    types: dict[str, str] = {}
    for line in lines:
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            types[name] = kind
        elif not line.startswith("# HELP"):
            assert LINE.match(line), line
            name = line.split("{")[0].split(" ")[0]
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or base in types, f"sample before TYPE: {line}"
    return types


def test_histogram_is_cumulative_and_counts_every_request() -> None:
    m = RequestMetrics()
    for seconds in (0.0001, 0.0007, 0.003, 0.2, 50.0):
        m.observe("/get-online-features", "POST", 200, seconds)
    m.observe("/get-online-features", "POST", 422, 0.0001)
    lines = m.render()
    types = _check_exposition(lines)
    assert types["rickhouse_http_request_duration_seconds"] == "histogram"
    buckets = [ln for ln in lines if "_bucket" in ln]
    values = [float(ln.rsplit(" ", 1)[1]) for ln in buckets]
    assert values == sorted(values) and values[-1] == 6 and len(buckets) == len(BUCKETS) + 1
    assert 'status="422"} 1' in "\n".join(lines)
    assert (
        'rickhouse_http_request_duration_seconds_count{endpoint="/get-online-features"} 6.0'
        in lines
    )


def test_store_statistics_become_labelled_samples() -> None:
    stats = {
        "last_seq": 12,
        "commit_log": {"segments": 2, "bytes": 4096},
        "counters": {"ingested_rows": 100, "ingest_batches": 3, "online_lookups": 9, "exports": 1},
        "online": {
            "v": {
                "compactions": 4,
                "flushes": 5,
                "memtable": {"rows": 7, "bytes": 70},
                "analyzer": {"learned": 2, "skipped": 1, "pending": 0},
                "levels": [
                    {
                        "level": 0,
                        "sstables": 1,
                        "keys": 10,
                        "bytes": 100,
                        "plr_segments": 3,
                        "model_bytes": 48,
                        "lookups_positive": 5,
                        "lookups_negative": 6,
                        "index_modes": {"learned": 1},
                    },
                ],
            }
        },
        "offline": {"v": {"files": 2, "bytes": 300, "buffer_rows": 4, "durable_seq": 11}},
    }
    lines = render_store_stats(stats)
    types = _check_exposition(lines)
    assert types["rickhouse_ingested_rows_total"] == "counter"
    assert types["rickhouse_level_lookups_negative_total"] == "counter"
    assert types["rickhouse_commit_log_bytes"] == "gauge"
    text = "\n".join(lines)
    for sample in (
        "rickhouse_ingested_rows_total 100",
        "rickhouse_commit_log_bytes 4096",
        'rickhouse_compactions_total{view="v"} 4',
        'rickhouse_level_plr_segments{level="0",view="v"} 3',
        'rickhouse_level_lookups_negative_total{level="0",view="v"} 6',
        'rickhouse_learned_index_decisions{decision="learned",view="v"} 2',
        'rickhouse_level_index_modes{level="0",mode="learned",view="v"} 1',
        'rickhouse_offline_files{view="v"} 2',
    ):
        assert sample in text, sample


def test_absent_statistics_are_skipped_not_invented() -> None:
    assert store_stats_families({}) == []
    assert render_store_stats({}) == []


def test_store_collector_reports_up_and_reads_stats_at_scrape_time() -> None:
    calls: list[int] = []

    def stats() -> dict | None:
        calls.append(1)
        return {"last_seq": 3} if len(calls) > 1 else None

    registry = CollectorRegistry()
    registry.register(StoreStatsCollector(stats))
    calls.clear()
    first = generate_latest(registry).decode()
    assert "rickhouse_up 0.0" in first and "rickhouse_last_seq" not in first
    second = generate_latest(registry).decode()
    assert "rickhouse_up 1.0" in second and "rickhouse_last_seq 3.0" in second


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render_store_stats(stats: dict) -> list[str]:
    """The exposition lines of the store's families alone."""
    registry = CollectorRegistry()
    registry.register(_Fixed(store_stats_families(stats)))
    return generate_latest(registry).decode().splitlines()
