"""Online reads: entity keys -> engine keys -> one ViewLookup per view -> an OnlineResponse.

`read_online` serves `FeatureStore.get_online_features` from one snapshot: the cached plan, the
entities parsed once (store.entities.parse_entities), then one `get_many` per view for int keys;
hashed keys add a probe round only for rows whose first slot holds another entity. Safe from any
thread (the engine's reads are); a tree closed under a read raises online.ClosedError, which the
FeatureStore retries on the next snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from online import LSMTree
from store.aggregations.online import lookup_aggregates
from store.entities import parse_entities
from store.features import ViewRead
from store.keys import (
    ENTITY_KEY_FIELD,
    Lookup,
    bucket_keys,
    canonical_keys,
    int_to_key,
    probe_keys,
)
from store.on_demand_read import read_on_demand
from store.online_response import OnlineResponse, ViewLookup
from store.snapshot import Snapshot


def read_online(
    snap: Snapshot,
    features: str | Sequence[str],
    entities: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    full_feature_names: bool,
    hash_bits: int,
    now_ns: int | None = None,
) -> OnlineResponse:
    """The latest feature values of `entities` in the trees of `snap`. `now_ns`: the request
    time (default: the clock): ttl expiry and aggregation windows (T - w, T] are taken at it."""
    plan = snap.plan(features, full_feature_names)
    keys, n = parse_entities(entities, plan.join_keys)
    now = time.time_ns() if now_ns is None else now_ns
    lookups = [
        lookup_aggregates(snap.trees[r.view.name], r, keys, hash_bits, now)  # type: ignore[arg-type]
        if r.view.aggregations
        else lookup_view(snap.trees[r.view.name], r, keys, hash_bits, now)
        for r in plan.reads
    ]
    if plan.on_demand is not None:  # computed features, after the reads they use
        od = plan.on_demand
        computed, n = read_on_demand(snap, od, entities, keys, n, lookups, hash_bits, now)
        lookups += computed
    return OnlineResponse(keys, dict(plan.join_keys), lookups, n)


def entity_lookup(tree: LSMTree) -> Lookup:
    """A keys.Lookup over `tree`: (found, canonical key text stored at each key)."""

    def lookup(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = tree.get_many(keys)
        return res.found, res.values(ENTITY_KEY_FIELD)

    return lookup


def lookup_hashed(tree: LSMTree, canon: np.ndarray, base: np.ndarray) -> tuple[Any, np.ndarray]:
    """Read hashed keys: probe 0 in one call; re-probe only rows whose slot holds another entity."""
    res = tree.get_many(base)
    stored = res.values(ENTITY_KEY_FIELD)
    match = res.found & (stored == canon)
    if not (res.found & ~match).any():
        return res, match
    keys, found = probe_keys(canon, base, entity_lookup(tree))
    return tree.get_many(keys), found


def lookup_view(
    tree: LSMTree, read: ViewRead, keys: Mapping[str, Any], hash_bits: int, now_ns: int
) -> ViewLookup:
    """Look up the entities `keys` (parsed join key columns) in one view's tree."""
    view = read.view
    if view.hashed:
        canon = canonical_keys([keys[k] for k, _ in view.keys], [t for _, t in view.keys])
        res, found = lookup_hashed(tree, canon, bucket_keys(canon, hash_bits))
    else:
        res = tree.get_many(int_to_key(keys[view.keys[0][0]]))
        found = res.found
    expired = None
    if view.ttl_ns:
        expired = found & (res.event_ts < now_ns - view.ttl_ns)
    return ViewLookup(read, res, found, expired)
