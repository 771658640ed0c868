"""Entity keys -> the online engine's uint64 keys.

- One int64 join key maps order-preserving: flip the sign bit (`int_to_key`, `key_to_int`).
- String and composite keys: the canonical text of the key tuple (`canonical_keys`, a prefix
  code, so distinct tuples never share a text) is hashed with xxhash64; the low `hash_bits` bits
  of the hash form the bucket and the key is `bucket << PROBE_BITS | probe`. The canonical text
  is stored online in the `_entity_key` field and compared on every lookup; new entities of a
  bucket claim its first free probe slot (`resolve_keys`), so a collision never returns or
  overwrites another entity's row. Slots are claimed in order and never freed, so the slots of a
  bucket are always 0..k-1 and a probe sequence stops at the first empty slot.

Pure functions plus `PendingClaims`, which store/key_resolution.py `KeyResolver` guards with
its claims lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xxhash

from store.errors import ValidationError

PROBE_BITS = 8  # low bits of a hashed key: the probe index — on-disk format, do not change
MAX_PROBE = (1 << PROBE_BITS) - 1
KEY_HASH_BITS = (
    56  # bucket bits of a hashed key (64 - PROBE_BITS); read when a store opens: tests shrink it
)
ENTITY_KEY_FIELD = "_entity_key"  # online field holding the canonical key text
_SIGN = np.uint64(1 << 63)

# lookup(keys) -> (found, canonical texts stored at those keys (object array; None if absent))
Lookup = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def int_to_key(values: np.ndarray) -> np.ndarray:
    """int64 join key values -> uint64 keys with the same order (a new array)."""
    return np.ascontiguousarray(values, dtype=np.int64).view(np.uint64) ^ _SIGN


def key_to_int(keys: np.ndarray) -> np.ndarray:
    """Inverse of int_to_key."""
    return (np.ascontiguousarray(keys, dtype=np.uint64) ^ _SIGN).view(np.int64)


def canonical_keys(columns: Sequence[Sequence[Any]], dtypes: Sequence[str]) -> np.ndarray:
    """The canonical text of each key tuple: `i<int>;` or `s<len>:<text>` per component.

    columns: one sequence per join key, equal lengths, values already of the key's dtype.
    Returns an object array of str.
    """
    parts = []
    for col, dtype in zip(columns, dtypes, strict=True):
        if dtype == "int64":
            parts.append([f"i{int(v)};" for v in col])
        else:
            parts.append([f"s{len(v)}:{v}" for v in col])
    if len(parts) == 1:
        texts = parts[0]
    else:
        texts = ["".join(t) for t in zip(*parts, strict=True)]
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out


def bucket_keys(canon: np.ndarray, hash_bits: int = KEY_HASH_BITS) -> np.ndarray:
    """The probe-0 key (`bucket << PROBE_BITS`) of each canonical text, as uint64."""
    if not 1 <= hash_bits <= 64 - PROBE_BITS:
        raise ValueError(f"hash_bits must be in [1, {64 - PROBE_BITS}], got {hash_bits}")
    mask = (1 << hash_bits) - 1
    digest = xxhash.xxh64_intdigest
    return np.fromiter(
        ((digest(c.encode()) & mask) << PROBE_BITS for c in canon),
        dtype=np.uint64,
        count=len(canon),
    )


def probe_keys(
    canon: np.ndarray, base: np.ndarray, lookup: Lookup
) -> tuple[np.ndarray, np.ndarray]:
    """Find each entity's slot: (keys, found); where not found, keys holds the first empty slot.

    canon: canonical texts; base: their probe-0 keys. One batched lookup per probe round; the
    common case (no collision) is one round.
    """
    n = len(canon)
    keys = base.copy()
    found = np.zeros(n, dtype=bool)
    todo = np.arange(n)
    for probe in range(MAX_PROBE + 1):
        cand = base[todo] | np.uint64(probe)
        hit, stored = lookup(cand)
        match = hit & (stored == canon[todo])
        keys[todo] = cand
        found[todo[match]] = True
        todo = todo[hit & ~match]
        if todo.size == 0:
            return keys, found
    # every slot of these buckets holds another entity: they are not stored
    keys[todo] = base[todo] | np.uint64(MAX_PROBE)
    return keys, found


class PendingClaims:
    """Probe slots claimed by batches that are in the commit log but not yet applied online.

    One entry per such batch (few: only concurrent ingests leave more than one in flight):
    its claims (canonical text -> key) and, per bucket it claimed in, the next free slot.
    """

    def __init__(self) -> None:
        self._batches: dict[int, tuple[dict[str, int], dict[int, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._batches)

    def key_of(self, canon: str) -> int | None:
        for claims, _ in self._batches.values():
            key = claims.get(canon)
            if key is not None:
                return key
        return None

    def next_free(self, base: int) -> int:
        return max((nxt.get(base, 0) for _, nxt in self._batches.values()), default=0)

    def claim(
        self, seq: int, canon: list[str], keys: np.ndarray, bases: np.ndarray, nxt: np.ndarray
    ) -> None:
        """Record the batch `seq`'s new entities and, per bucket base, its next free slot."""
        self._batches[seq] = (
            dict(zip(canon, keys.tolist(), strict=True)),
            dict(zip(bases.tolist(), nxt.tolist(), strict=True)),
        )

    def release(self, seq: int) -> None:
        """The batch `seq` is applied online (or abandoned): its claims are now the tree's."""
        self._batches.pop(seq, None)


def _full_bucket(view: str, canon: object) -> ValidationError:
    return ValidationError(
        f"view {view!r}: no free key slot for entity {canon!r}: {MAX_PROBE + 1} entities share "
        "its hash bucket",
        view=view,
    )


def resolve_keys(
    canon: np.ndarray, base: np.ndarray, lookup: Lookup, pending: PendingClaims, seq: int, view: str
) -> np.ndarray:
    """uint64 keys of unique entities for the batch `seq`, claiming free slots for new ones.

    Deterministic: the new entities of a bucket take its free slots in input order. Vectorized
    but for pending claims of other in-flight batches. Raises ValidationError when a bucket has
    no free slot left (only possible with a tiny hash space).
    """
    n = len(canon)
    out = np.zeros(n, dtype=np.uint64)
    known = np.zeros(n, dtype=bool)
    if pending:
        for i, c in enumerate(canon.tolist()):
            key = pending.key_of(c)
            if key is not None:
                out[i] = key
                known[i] = True
    todo = np.flatnonzero(~known)
    if todo.size == 0:
        return out
    keys, found = probe_keys(canon[todo], base[todo], lookup)
    out[todo[found]] = keys[found]
    new = todo[~found]
    if new.size == 0:
        return out
    first_free = (keys[~found] & np.uint64(MAX_PROBE)).astype(np.int64)
    new_base = base[new]
    last = first_free == MAX_PROBE  # the last slot may be taken too: then the bucket is full
    if last.any():
        hit, _ = lookup(new_base[last] | np.uint64(MAX_PROBE))
        if hit.any():
            raise _full_bucket(view, canon[new[last][hit][0]])
    order = np.lexsort((new, new_base))  # by bucket, then input order
    sorted_base = new_base[order]
    start = np.ones(len(order), dtype=bool)
    start[1:] = sorted_base[1:] != sorted_base[:-1]
    group_start = np.flatnonzero(start)
    group = np.cumsum(start) - 1
    free = first_free[order][group_start]  # every new entity of a bucket met the same slot
    if pending:
        claimed = [pending.next_free(int(b)) for b in sorted_base[group_start].tolist()]
        free = np.maximum(free, np.asarray(claimed, dtype=np.int64))
    slot = free[group] + (np.arange(len(order)) - group_start[group])
    if (slot > MAX_PROBE).any():
        raise _full_bucket(view, canon[new[order][np.argmax(slot > MAX_PROBE)]])
    new_keys = sorted_base | slot.astype(np.uint64)
    out[new[order]] = new_keys
    sizes = np.diff(np.append(group_start, len(order)))
    pending.claim(seq, canon[new[order]].tolist(), new_keys, sorted_base[group_start], free + sizes)
    return out
