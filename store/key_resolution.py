"""Key resolution of ingested batches: join keys -> the uint64 engine keys of the commit-log payload.

An int64 join key maps to its key directly (store/keys.py `int_to_key`). Other keys are hashed:
`prepare` computes each row's canonical text and probe-0 key outside any lock; `payload`, under
the write path's sequencing lock, finds each entity's slot in the online tree or claims a free
one. Slots claimed by batches that are logged but not yet applied online are held in
`PendingClaims` per view, so concurrent batches never claim one slot for two entities.

The bucket width of hashed keys is read from `store.keys.KEY_HASH_BITS` when a store opens;
tests shrink that constant (tests/store/conftest.py) to force collisions.

Thread-safety: `prepare` is pure. `payload` must be called in seq order under the sequencing
lock; `release` and `forget` may be called from any thread (they take the claims lock).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from online import LSMTree
from store import keys as keys_module
from store.definitions import FeatureView
from store.keys import (
    ENTITY_KEY_FIELD,
    PendingClaims,
    bucket_keys,
    canonical_keys,
    int_to_key,
    resolve_keys,
)
from store.online_read import entity_lookup

KEY_COLUMN = (
    "_key"  # resolved uint64 key column of a commit-log payload — on-disk format, do not change
)


@dataclass(frozen=True)
class HashedKeys:
    """The rows' canonical key texts (object array of str) and their probe-0 keys (uint64)."""

    canon: np.ndarray
    base: np.ndarray


class KeyResolver:
    """Resolves the keys of one store's batches; holds the pending slot claims of hashed views."""

    def __init__(self) -> None:
        self.hash_bits: int = keys_module.KEY_HASH_BITS  # fixed for the store's lifetime
        self._lock = threading.Lock()  # the claims lock: innermost of the store's locks
        self._claims: dict[str, PendingClaims] = {}  # GUARDED_BY(_lock)

    def prepare(self, view: FeatureView, table: pa.Table) -> HashedKeys | None:
        """The canonical texts and probe-0 keys of a hashed view's batch (None for int keys).

        table: validated by store.batch.convert_batch."""
        if not view.hashed:
            return None
        cols = [table.column(k).to_pylist() for k, _ in view.keys]
        canon = canonical_keys(cols, [t for _, t in view.keys])
        return HashedKeys(canon, bucket_keys(canon, self.hash_bits))

    def payload(
        self, view: FeatureView, seq: int, table: pa.Table, hashed: HashedKeys | None, tree: LSMTree
    ) -> pa.Table:
        """The commit-log payload of batch `seq`: the KEY_COLUMN of resolved keys, the batch, and
        for hashed views the canonical key text (ENTITY_KEY_FIELD, stored online).

        Caller holds the sequencing lock. Raises ValidationError when a bucket has no free slot;
        its claims are then released by `release(view, seq)`."""
        if hashed is None:
            keys = int_to_key(table.column(0).combine_chunks().to_numpy())
            return table.add_column(0, KEY_COLUMN, pa.array(keys, pa.uint64()))
        canon = hashed.canon
        index: dict[str, int] = {}
        inverse = np.fromiter(
            (index.setdefault(c, len(index)) for c in canon), dtype=np.int64, count=len(canon)
        )
        first = np.full(len(index), -1, dtype=np.int64)
        first[inverse[::-1]] = np.arange(len(canon) - 1, -1, -1)  # first row of each entity
        with self._lock:
            claims = self._claims.setdefault(view.name, PendingClaims())
            # unique entities in first-appearance order: new ones claim slots deterministically
            resolved = resolve_keys(
                canon[first], hashed.base[first], entity_lookup(tree), claims, seq, view.name
            )
        keys = resolved[inverse]
        table = table.add_column(0, KEY_COLUMN, pa.array(keys, pa.uint64()))
        return table.append_column(ENTITY_KEY_FIELD, pa.array(canon.tolist(), pa.string()))

    def release(self, view: str, seq: int) -> None:
        """Batch `seq` is applied online (or abandoned): its claims are now the tree's."""
        with self._lock:
            claims = self._claims.get(view)
            if claims is not None:
                claims.release(seq)

    def forget(self, view: str) -> None:
        """The view's data was dropped (forced apply): its pending claims mean nothing now."""
        with self._lock:
            self._claims.pop(view, None)
