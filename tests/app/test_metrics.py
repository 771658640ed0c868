"""app/metrics.py: Prometheus text exposition of request metrics and store statistics."""

import re

from app.metrics import BUCKETS, RequestMetrics, render_store_stats

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
    values = [int(ln.rsplit(" ", 1)[1]) for ln in buckets]
    assert values == sorted(values) and values[-1] == 6 and len(buckets) == len(BUCKETS) + 1
    assert 'status="422"} 1' in "\n".join(lines)
    assert (
        'rickhouse_http_request_duration_seconds_count{endpoint="/get-online-features"} 6' in lines
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
    _check_exposition(lines)
    text = "\n".join(lines)
    for sample in (
        "rickhouse_ingested_rows_total 100",
        "rickhouse_commit_log_bytes 4096",
        'rickhouse_compactions_total{view="v"} 4',
        'rickhouse_level_plr_segments{view="v",level="0"} 3',
        'rickhouse_level_lookups_negative_total{view="v",level="0"} 6',
        'rickhouse_learned_index_decisions{view="v",decision="learned"} 2',
        'rickhouse_offline_files{view="v"} 2',
    ):
        assert sample in text, sample


def test_absent_statistics_are_skipped_not_invented() -> None:
    assert render_store_stats({}) == []
