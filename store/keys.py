"""Entity keys -> the online engine's uint64 keys.

- One int64 join key maps order-preserving: flip the sign bit (`int_to_key`, `key_to_int`).
- String and composite keys: the canonical text of the key tuple (`canonical_keys`, a prefix
  code, so distinct tuples never share a text) is hashed with xxhash64; the low `hash_bits` bits
  of the hash form the bucket and the key is `bucket << PROBE_BITS | probe`. The canonical text
  is stored online in the `_entity_key` field and compared on every lookup; new entities of a
  bucket claim its first free probe slot (`resolve_keys`), so a collision never returns or
  overwrites another entity's row. Slots are claimed in order and never freed, so the slots of a
  bucket are always 0..k-1 and a probe sequence stops at the first empty slot.

Pure functions plus `PendingClaims`, which the FeatureStore guards with its ingest lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xxhash

from store.errors import ValidationError

PROBE_BITS = 8  # low bits of a hashed key: the probe index — on-disk format, do not change
MAX_PROBE = (1 << PROBE_BITS) - 1
KEY_HASH_BITS = 56  # bucket bits of a hashed key (64 - PROBE_BITS); tests shrink it
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
    """Probe slots claimed by batches that are in the commit log but not yet applied online."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, int]] = {}  # canon -> (key, seq)
        self.next_free: dict[int, tuple[int, int]] = {}  # bucket base -> (next slot, seq)
        self.by_seq: dict[int, list[tuple[str, int]]] = {}

    def claim(self, canon: str, base: int, slot: int, seq: int) -> int:
        key = base | slot
        self.keys[canon] = (key, seq)
        self.next_free[base] = (slot + 1, seq)
        self.by_seq.setdefault(seq, []).append((canon, base))
        return key

    def release(self, seq: int) -> None:
        """The batch `seq` is applied online (or abandoned): its claims are now the tree's."""
        for canon, base in self.by_seq.pop(seq, ()):
            if self.keys.get(canon, (0, -1))[1] == seq:
                del self.keys[canon]
            if self.next_free.get(base, (0, -1))[1] == seq:
                del self.next_free[base]


def resolve_keys(
    canon: np.ndarray, base: np.ndarray, lookup: Lookup, pending: PendingClaims, seq: int, view: str
) -> np.ndarray:
    """uint64 keys of unique entities for the batch `seq`, claiming free slots for new ones.

    Deterministic: new entities claim slots in input order. Raises ValidationError when a bucket
    has no free slot left (only possible with a tiny hash space).
    """
    n = len(canon)
    out = np.zeros(n, dtype=np.uint64)
    known = np.zeros(n, dtype=bool)
    for i, c in enumerate(canon):
        hit = pending.keys.get(c)
        if hit is not None:
            out[i] = hit[0]
            known[i] = True
    todo = np.flatnonzero(~known)
    if todo.size == 0:
        return out
    keys, found = probe_keys(canon[todo], base[todo], lookup)
    out[todo[found]] = keys[found]
    for i, key in zip(todo[~found].tolist(), keys[~found].tolist(), strict=True):
        b = int(base[i])
        slot = max(key & MAX_PROBE, pending.next_free.get(b, (0, 0))[0])
        if slot > MAX_PROBE or (key & MAX_PROBE == MAX_PROBE and found_full(key, lookup)):
            raise ValidationError(
                f"view {view!r}: no free key slot for entity {canon[i]!r}: {MAX_PROBE + 1} "
                "entities share its hash bucket",
                view=view,
            )
        out[i] = pending.claim(canon[i], b, slot, seq)
    return out


def found_full(key: int, lookup: Lookup) -> bool:
    """True when the last slot of a bucket is taken (so the bucket is full)."""
    hit, _ = lookup(np.array([key], dtype=np.uint64))
    return bool(hit[0])
