"""Online lookups of one view: entity keys -> engine keys -> a ViewLookup.

One `get_many` per view per request for int keys; hashed keys add a probe round only for rows
whose first slot holds another entity. Safe from any thread (the engine's reads are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from online import LSMTree
from store.features import ViewRead
from store.keys import (
    ENTITY_KEY_FIELD,
    Lookup,
    bucket_keys,
    canonical_keys,
    int_to_key,
    probe_keys,
)
from store.online_response import ViewLookup


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
