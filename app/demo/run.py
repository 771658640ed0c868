"""`rickhouse demo`: load the demo data set into a store and print curl examples against it.

`load` applies app/demo/recsys.yaml and ingests the generated batches (unless the demo is loaded
already) with a progress bar; `example_requests` are ready-to-paste curl commands for a server
on 127.0.0.1, printed by `print_examples`. Runs in the CLI's thread; holds no state.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from app.demo.dataset import (
    DEFINITIONS_PATH,
    FIRST_USER_ID,
    TXN_VIEW,
    DemoPlan,
    generate,
    generate_transactions,
    transaction_rows,
)
from store import Definitions, FeatureStore

DEMO_VIEW = "user_item"  # present once the demo definitions are applied


def load(fs: FeatureStore, p: DemoPlan, console: Console, force: bool = False) -> None:
    """Apply the demo definitions and ingest the data of `p` into `fs`; a store that holds the
    demo already is left as it is unless `force`."""
    loaded = fs.last_seq > 0 and DEMO_VIEW in Definitions.from_dict(fs.definitions()).feature_views
    fs.apply(str(DEFINITIONS_PATH))
    if loaded and not force:
        console.print(
            f"demo data already in {fs.root} (seq {fs.last_seq}); --force ingests it again"
        )
        return
    console.print(
        f"demo: {p.rows:,} rows ({p.users:,} users, {p.items:,} items, 30 days), "
        f"definitions app/demo/recsys.yaml"
    )
    start = time.perf_counter()
    with progress_bar(console) as progress:
        tasks = {view: progress.add_task(f"{view:<13}", total=n) for view, n in p.view_rows.items()}
        for view, batch in generate(p):
            fs.ingest(view, batch)
            progress.advance(tasks[view], batch.num_rows)
        # the aggregation view's events: the 30 days before now, so online windows hold some
        txn = progress.add_task(f"{TXN_VIEW:<13}", total=transaction_rows(p))
        for batch in generate_transactions(p, time.time_ns()):
            fs.ingest(TXN_VIEW, batch)
            progress.advance(txn, batch.num_rows)
    elapsed = time.perf_counter() - start
    console.print(
        f"ingested {p.rows:,} rows + {transaction_rows(p):,} transactions in {elapsed:.1f} s ({p.rows / max(elapsed, 1e-9):,.0f} rows/s, "
        f"durable); last seq {fs.last_seq}"
    )


def progress_bar(console: Console) -> Progress:
    """A rich progress bar counting rows."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
    )


def example_requests(port: int) -> list[tuple[str, str]]:
    """(title, ready-to-paste curl command) against a demo server on 127.0.0.1:`port`."""
    url = f"http://127.0.0.1:{port}"
    u1, u2 = FIRST_USER_ID, FIRST_USER_ID + 1

    def post(path: str, body: dict[str, Any]) -> str:
        return f"curl -s {url}{path} -H 'Content-Type: application/json' -d '{json.dumps(body)}'"

    profile = ["user_profile:country", "user_profile:ctr_7d", "user_profile:avg_session_s"]
    return [
        (
            "online features (Feast shape)",
            post("/get-online-features", {"entities": {"user_id": [u1, u2]}, "features": profile}),
        ),
        (
            "a feature service over a composite key (user x item)",
            post(
                "/get-online-features",
                {
                    "entities": {"user_id": [u1, u2], "item_id": ["item_000000", "item_000001"]},
                    "feature_service": "ranking_v1",
                },
            ),
        ),
        (
            "write one row (Feast remote client shape; null where unknown), then read it back",
            post(
                "/write-to-online-store",
                {
                    "feature_view_name": "user_profile",
                    "df": {
                        "user_id": [u1],
                        "country": ["NL"],
                        "age": [33],
                        "is_premium": [True],
                        "sessions_7d": [12],
                        "ctr_7d": [0.5],
                        "avg_session_s": [None],
                        "last_active": ["2025-02-01T00:00:00"],
                        "event_timestamp": ["2025-02-01T00:00:00"],
                    },
                },
            ),
        ),
        (
            "push through a push source (to both stores)",
            post(
                "/push",
                {
                    "push_source_name": "user_item_push",
                    "df": {
                        "user_id": [u1],
                        "item_id": ["item_000000"],
                        "clicks_30d": [7],
                        "purchases_30d": [1],
                        "dwell_s": [42.5],
                        "affinity": [0.9],
                        "last_action": ["purchase"],
                        "event_timestamp": ["2025-02-01T00:00:00Z"],
                    },
                    "to": "online_and_offline",
                },
            ),
        ),
        (
            "point-in-time training export (written under <root>/exports/; names its seq)",
            post(
                "/v1/training-export",
                {
                    "entities": {
                        "user_id": [u1, u2],
                        "event_timestamp": ["2025-01-15T00:00:00Z", "2025-01-31T00:00:00Z"],
                    },
                    "features": ["user_profile:country", "user_profile:sessions_7d"],
                },
            ),
        ),
        (
            "time-window aggregates of transactions (user_txn), taken at the request time",
            post(
                "/get-online-features",
                {
                    "entities": {"user_id": [u1, u2]},
                    "features": [
                        "user_txn:amount_sum_1h",
                        "user_txn:amount_sum_1d",
                        "user_txn:amount_count_7d",
                        "user_txn:amount_mean_7d",
                        "user_txn:merchant_last_7d",
                    ],
                },
            ),
        ),
        (
            "the same aggregates in a training export, at each entity row's time",
            post(
                "/v1/training-export",
                {
                    "entities": {
                        "user_id": [u1, u1],
                        "event_timestamp": [
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400)),
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        ],
                    },
                    "features": ["user_txn:amount_sum_1d", "user_txn:amount_count_7d"],
                },
            ),
        ),
        (
            "on-demand features: a transaction's amount (sent with the keys) against the aggregates",
            post(
                "/get-online-features",
                {
                    "entities": {"user_id": [u1, u2], "amount": [120.0, 5000.0]},
                    "features": ["txn_risk:amount_vs_week", "txn_risk:big_spender"],
                },
            ),
        ),
        (
            "store statistics and Prometheus metrics",
            f"curl -s {url}/v1/stats; curl -s {url}/metrics | head -40",
        ),
    ]


def print_examples(console: Console, port: int) -> None:
    console.print(
        f"\n[bold]Try it[/] (server: rickhouse serve --port {port}; "
        f"API docs http://127.0.0.1:{port}/docs):"
    )
    for title, cmd in example_requests(port):
        console.print(f"\n# {title}", style="dim", highlight=False)
        console.print(cmd, highlight=False, soft_wrap=True, markup=False)
