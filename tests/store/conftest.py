"""Shared definitions and store factory for the FeatureStore tests (deterministic engines)."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import store.keys
from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore
from tests.definitions import definitions, view

HOUR = 3600 * 10**9
DEFS = definitions(
    view(
        "user_stats",
        ["user"],
        {"ctr": "float32", "country": "string", "emb": "float32[4]"},
        ttl="2h",
    ),
    view("item_stats", ["item"], {"price": "float64", "ctr": "float64"}),
    view("pair", ["user", "item"], {"score": "float64", "clicks": "int64"}),
    services={"ranking_v1": ["user_stats:ctr", "user_stats:emb"]},
    pushes={"user_stats_push": "user_stats"},
)


def engine_options(**tree: object) -> dict:
    """Synchronous engines: flushes and compactions happen only when the test calls them."""
    return {
        "tree_options": TreeOptions(background=False, t_wait_s=0.0, **tree),
        "offline_options": OfflineOptions(background=False),
    }


def open_store(root, **kwargs) -> FeatureStore:
    return FeatureStore(root, **{**engine_options(), **kwargs})


@pytest.fixture
def fs(tmp_path):
    store = open_store(tmp_path / "root")
    store.apply(DEFS)
    yield store
    store.close()


@pytest.fixture
def tiny_hash_space(monkeypatch: pytest.MonkeyPatch) -> int:
    """Stores opened during the test hash keys into 4 buckets (2 bits): nearly every key
    collides, so probing and slot claims are exercised. Returns the bucket bits."""
    monkeypatch.setattr(store.keys, "KEY_HASH_BITS", 2)
    return 2


@pytest.fixture
def now() -> int:
    return time.time_ns()


def ns(values) -> list:
    """int ns since the epoch as UTC timestamps (a plain number in a timestamp column is epoch
    seconds); None stays None. A list, so that a test can still replace one value."""
    return [None if v is None else pd.Timestamp(int(v), tz="UTC") for v in values]


def user_batch(ids, ts, ctr=None, country=None, emb=None, created=None) -> dict:
    n = len(ids)
    d = {
        "user_id": list(ids),
        "event_timestamp": ns(ts if isinstance(ts, list) else [ts] * n),
        "ctr": list(ctr) if ctr is not None else [float(i) / 10 for i in ids],
        "country": list(country) if country is not None else [f"c{i}" for i in ids],
        "emb": list(emb) if emb is not None else [[float(i)] * 4 for i in ids],
    }
    if created is not None:
        d["created"] = ns(created if isinstance(created, list) else [created] * n)
    return d
