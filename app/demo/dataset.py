"""A deterministic recommendation data set for the demo: users, items, user x item interactions.

Everything follows from (rows, seed): the same arguments give the same tables, batch for batch,
on any machine (numpy's PCG64 generator seeded per view and batch). Events span the 30 days
before END (a fixed date, so the data set never changes with the clock). Generation is vectorized
and batched, so a 1.2M-row data set takes about a second to generate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

DEFINITIONS_PATH = Path(__file__).with_name("recsys.yaml")
START = np.datetime64("2025-01-01T00:00:00", "ns")
DAYS = 30
END = START + np.timedelta64(DAYS, "D")
FIRST_USER_ID = 1000
EMBEDDING_DIM = 16  # must match item_stats:embedding in recsys.yaml
COUNTRIES = np.array(["US", "NL", "DE", "FR", "GB", "BR", "IN", "JP"])
COUNTRY_P = np.array([0.30, 0.08, 0.14, 0.10, 0.12, 0.09, 0.12, 0.05])
CATEGORIES = np.array(["books", "music", "games", "garden", "kitchen", "sports", "toys", "tech"])
ACTIONS = np.array(["view", "click", "add_to_cart", "purchase"])
ACTION_P = np.array([0.55, 0.30, 0.10, 0.05])
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class DemoPlan:
    """How many rows each view gets, and the population behind them."""

    rows: int
    users: int
    items: int
    view_rows: dict[str, int]
    batch_rows: int
    seed: int

    def batches(self, view: str) -> int:
        return -(-self.view_rows[view] // self.batch_rows)


def plan(rows: int = 1_200_000, seed: int = 42, batch_rows: int = 200_000) -> DemoPlan:
    """Split `rows` over the three views: 25% user_profile, 5% item_stats, 70% user_item."""
    if rows < 100:
        raise ValueError(f"--rows {rows}: the demo needs at least 100 rows")
    users = max(10, rows // 60)
    items = max(10, rows // 600)
    view_rows = {
        "user_profile": rows // 4,
        "item_stats": rows // 20,
        "user_item": rows - rows // 4 - rows // 20,
    }
    return DemoPlan(rows, users, items, view_rows, max(1, batch_rows), seed)


def item_ids(n: int) -> pa.Array:
    return pa.array([f"item_{i:06d}" for i in range(n)], pa.string())


def generate(p: DemoPlan) -> Iterator[tuple[str, pa.Table]]:
    """Yields (view, batch) in ingest order: user_profile, item_stats, user_item."""
    names = item_ids(p.items)
    base_rng = np.random.default_rng([p.seed, 0])
    embeddings = base_rng.standard_normal((p.items, EMBEDDING_DIM)).astype(np.float32)
    prices = np.round(np.exp(base_rng.normal(3.0, 0.8, p.items)), 2).astype(np.float32)
    for view_no, (view, make) in enumerate(
        (("user_profile", _user_profile), ("item_stats", _item_stats), ("user_item", _user_item)),
        start=1,
    ):
        total = p.view_rows[view]
        for batch_no in range(p.batches(view)):
            n = min(p.batch_rows, total - batch_no * p.batch_rows)
            rng = np.random.default_rng([p.seed, view_no, batch_no])
            yield view, make(rng, n, p, names, embeddings, prices)


def _event_ts(rng: np.random.Generator, n: int) -> np.ndarray:
    offsets = rng.integers(0, DAYS * _NS_PER_DAY, n, dtype=np.int64)
    return START.astype(np.int64) + offsets


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype("datetime64[ns]"), pa.timestamp("ns")).cast(
        pa.timestamp("ns", tz="UTC")
    )


def _user_profile(rng, n, p, names, embeddings, prices) -> pa.Table:  # noqa: ANN001
    user = rng.integers(0, p.users, n)
    ts = _event_ts(rng, n)
    # Stable per-user attributes derive from the user id, so every row of a user agrees.
    country = COUNTRIES[np.searchsorted(np.cumsum(COUNTRY_P), (user * 2654435761 % 1000) / 1000.0)]
    age = (18 + user * 40503 % 58).astype(np.int32)
    premium = (user * 11 % 7) == 0
    sessions = rng.poisson(9, n).astype(np.int64)
    ctr = rng.beta(2, 30, n).astype(np.float32)
    avg_session = rng.gamma(2.0, 90.0, n)
    missing = rng.random(n) < 0.02  # some users never reported a session length: NULL_VALUE
    last_active = ts - rng.integers(0, 3 * 3600 * 10**9, n, dtype=np.int64)
    return pa.table(
        {
            "user_id": pa.array(user + FIRST_USER_ID, pa.int64()),
            "event_timestamp": _ts(ts),
            "country": pa.array(country, pa.string()),
            "age": pa.array(age, pa.int32()),
            "is_premium": pa.array(premium, pa.bool_()),
            "sessions_7d": pa.array(sessions, pa.int64()),
            "ctr_7d": pa.array(ctr, pa.float32()),
            "avg_session_s": pa.array(avg_session, pa.float64(), mask=missing),
            "last_active": _ts(last_active),
        }
    )


def _item_stats(rng, n, p, names, embeddings, prices) -> pa.Table:  # noqa: ANN001
    item = rng.integers(0, p.items, n)
    ts = _event_ts(rng, n)
    drift = rng.standard_normal((n, EMBEDDING_DIM)).astype(np.float32) * np.float32(0.05)
    emb = (embeddings[item] + drift).reshape(-1)
    return pa.table(
        {
            "item_id": names.take(pa.array(item)),
            "event_timestamp": _ts(ts),
            "category": pa.array(CATEGORIES[item % len(CATEGORIES)], pa.string()),
            "price": pa.array(prices[item], pa.float32()),
            "views_7d": pa.array(rng.poisson(250, n), pa.int64()),
            "ctr_7d": pa.array(rng.beta(2, 40, n).astype(np.float32), pa.float32()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(emb, pa.float32()), EMBEDDING_DIM
            ),
        }
    )


def _user_item(rng, n, p, names, embeddings, prices) -> pa.Table:  # noqa: ANN001
    user = rng.integers(0, p.users, n)
    # Popular items get most interactions (a truncated geometric popularity curve).
    item = np.minimum(rng.geometric(min(1.0, 8.0 / p.items), n) - 1, p.items - 1)
    ts = _event_ts(rng, n)
    clicks = rng.poisson(2.5, n).astype(np.int32)
    purchases = rng.binomial(clicks, 0.08).astype(np.int32)
    action = ACTIONS[np.searchsorted(np.cumsum(ACTION_P), rng.random(n))]
    return pa.table(
        {
            "user_id": pa.array(user + FIRST_USER_ID, pa.int64()),
            "item_id": names.take(pa.array(item)),
            "event_timestamp": _ts(ts),
            "clicks_30d": pa.array(clicks, pa.int32()),
            "purchases_30d": pa.array(purchases, pa.int32()),
            "dwell_s": pa.array(rng.gamma(1.5, 20.0, n).astype(np.float32), pa.float32()),
            "affinity": pa.array(rng.beta(2, 5, n), pa.float64()),
            "last_action": pa.array(action, pa.string()),
        }
    )


# ---- transactions: the events of the aggregation view user_txn --------------------------------

TXN_VIEW = "user_txn"
MERCHANTS = np.array([f"merchant_{i:02d}" for i in range(40)])


def transaction_rows(p: DemoPlan) -> int:
    """Transactions ingested beside the plan's rows: one per 4 rows."""
    return max(10, p.rows // 4)


def generate_transactions(p: DemoPlan, now_ns: int) -> Iterator[pa.Table]:
    """Batches of user_txn events over the 30 days before `now_ns` (so that online windows,
    taken at the request time, hold some): amounts (3% null) and merchants, deterministic for
    a seed and a `now_ns`."""
    total = transaction_rows(p)
    for batch_no in range(-(-total // p.batch_rows)):
        n = min(p.batch_rows, total - batch_no * p.batch_rows)
        rng = np.random.default_rng([p.seed, 9, batch_no])
        ts = now_ns - rng.integers(1, DAYS * _NS_PER_DAY, n, dtype=np.int64)
        amount = np.round(rng.gamma(2.0, 25.0, n), 2)
        yield pa.table(
            {
                "user_id": pa.array(rng.integers(0, p.users, n) + FIRST_USER_ID, pa.int64()),
                "event_timestamp": _ts(ts),
                "amount": pa.array(amount, pa.float64(), mask=rng.random(n) < 0.03),
                "merchant": pa.array(MERCHANTS[rng.integers(0, len(MERCHANTS), n)], pa.string()),
            }
        )
