"""Entity key columns of an aggregation view -> the engine keys its event state is indexed by.

One int64 join key maps order-preserving (store.keys.int_to_key). String and composite keys map
to the slot the view's online tree gave the entity (hash bucket + probe, store/keys.py): the
tree holds the latest event of every entity, so probing it finds the slot; an entity it does not
hold gets found=False (it has no events). Safe from any thread (the tree's reads are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from online import LSMTree
from store.definitions import FeatureView
from store.keys import ENTITY_KEY_FIELD, bucket_keys, canonical_keys, int_to_key, probe_keys


def engine_keys(
    view: FeatureView, tree: LSMTree, keys: Mapping[str, Any], hash_bits: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """(engine keys, found) of the entities whose join key columns are `keys` (parsed to their
    dtypes); found is None for an int64 view (every key maps, known or not)."""
    if not view.hashed:
        return int_to_key(np.asarray(keys[view.keys[0][0]], dtype=np.int64)), None
    canon = canonical_keys([keys[k] for k, _ in view.keys], [t for _, t in view.keys])
    return hashed_keys(tree, canon, hash_bits)


def hashed_keys(tree: LSMTree, canon: np.ndarray, hash_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Slots of canonical key texts in `tree`: probe 0 in one call, then only collisions."""
    base = bucket_keys(canon, hash_bits)
    res = tree.get_many(base)
    stored = res.values(ENTITY_KEY_FIELD)
    match = res.found & (stored == canon)
    if not (res.found & ~match).any():
        return base, match

    def lookup(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = tree.get_many(k)
        return r.found, r.values(ENTITY_KEY_FIELD)

    return probe_keys(canon, base, lookup)


def column_keys(
    view: FeatureView, tree: LSMTree, columns: Sequence[np.ndarray], hash_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Engine keys of many rows given as join key columns (numpy, in view key order): distinct
    entities are resolved once. Returns (keys, found)."""
    if not view.hashed:
        return int_to_key(np.asarray(columns[0], dtype=np.int64)), np.ones(len(columns[0]), bool)
    canon = canonical_keys([c.tolist() for c in columns], [t for _, t in view.keys])
    uniq, inverse = np.unique(canon, return_inverse=True)
    keys, found = hashed_keys(tree, uniq, hash_bits)
    return keys[inverse], found[inverse]
