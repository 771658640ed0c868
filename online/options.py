"""TreeOptions: the knobs of one LSM tree. Frozen; validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from online.errors import OnlineError

__all__ = ["TreeOptions", "INDEX_MODES", "PLR_FITS"]

INDEX_MODES = ("block", "learned", "auto")
PLR_FITS = ("optimal", "greedy")


@dataclass(frozen=True)
class TreeOptions:
    """Options of an `LSMTree`.

    index: "block" (fence pointers per 4 KiB of records), "learned" (a PLR model for every sstable)
        or "auto" (Bourbon's cost-benefit analyzer decides per sstable).
    delta: PLR error bound; a smaller delta means a shorter last-mile search but more segments.
    plr_fit: how the learned index fits its segments, both within delta and read by the same
        lookup: "optimal" (the convex-hull PLA, as the PGM-index: fewer segments than Greedy-PLR,
        slower to build) or "greedy" (Bourbon's Greedy-PLR, a cone through each segment's first
        key: faster to build); measured in bench/RESULTS.md.
    memtable_bytes: memtable size that triggers a flush; larger means fewer L0 files but more memory
        and longer replay after a crash.
    l0_trigger: number of L0 sstables that triggers an L0 -> L1 compaction; more files means cheaper
        writes but more sstables per lookup.
    size_ratio: capacity ratio between consecutive levels (L(n+1) = size_ratio x Ln).
    level1_bytes: capacity of L1; deeper levels grow by `size_ratio`.
    t_wait_s: the analyzer considers an sstable only after it has lived this long (Bourbon's T_wait):
        short-lived sstables are not worth a model.
    background: run flushes, compactions and the analyzer in a background thread; when False they
        run synchronously inside write()/flush()/compact()/analyze().
    bloom_bits_per_key: bloom filter size; 10 bits give about 1% false positives.
    bloom_last_level: also consult the bloom filter of the deepest level. Off by default (RocksDB's
        optimize_filters_for_hits): a key that reaches the last level is usually there.
    verify_checksums: check every sstable's CRC32C when it is opened (costs a read of the file).
    max_immutable: writers wait while this many frozen memtables are waiting for their flush.
    l0_stop_writes: writers wait while L0 holds this many sstables (at least l0_trigger + 1), so
        that ingest faster than compaction cannot pile up L0 files that every lookup must check
        (RocksDB's level0_stop_writes_trigger, 36 there with slowdowns from 20).
    purge_ttl_ns: when > 0, a compaction that writes the deepest level drops rows whose event
        time is older than its own now - purge_ttl_ns (reads already answer them as expired);
        0 keeps them. The feature store passes the view's ttl.
    purge_keep_field: with purge_ttl_ns, the name of a field that an expired row keeps: instead
        of being dropped, the row becomes a tombstone holding only that field (its other fields
        null, their space freed). For key spaces with open addressing (the feature store's
        hashed keys, whose key text is a field), where an emptied slot would cut the probe
        chains of the keys placed after it. "" drops expired rows.
    build_ns_per_key_prior: analyzer's build-cost estimate until a model has been built (a
        typical PLR build cost, see bench/RESULTS.md).
    learned_saving_prior: analyzer's estimate of the fraction of lookup time a model saves, until
        both kinds of lookups have been measured on the level.
    """

    index: str = "auto"
    delta: int = 8
    plr_fit: str = "optimal"
    memtable_bytes: int = 64 << 20
    l0_trigger: int = 4
    size_ratio: int = 10
    level1_bytes: int = 256 << 20
    t_wait_s: float = 1.0
    background: bool = True
    bloom_bits_per_key: int = 10
    bloom_last_level: bool = False
    verify_checksums: bool = True
    max_immutable: int = 2
    l0_stop_writes: int = 20
    build_ns_per_key_prior: float = 15.0
    learned_saving_prior: float = 0.3
    purge_ttl_ns: int = 0
    purge_keep_field: str = ""

    def __post_init__(self) -> None:
        if self.index not in INDEX_MODES:
            raise OnlineError(f"TreeOptions.index must be one of {INDEX_MODES}, got {self.index!r}")
        if self.plr_fit not in PLR_FITS:
            raise OnlineError(
                f"TreeOptions.plr_fit must be one of {PLR_FITS}, got {self.plr_fit!r}"
            )
        if not 1 <= self.delta <= 1 << 20:
            raise OnlineError(f"TreeOptions.delta must be in [1, 2^20], got {self.delta}")
        if self.memtable_bytes < 1:
            raise OnlineError(
                f"TreeOptions.memtable_bytes must be positive, got {self.memtable_bytes}"
            )
        if self.l0_trigger < 1:
            raise OnlineError(f"TreeOptions.l0_trigger must be >= 1, got {self.l0_trigger}")
        if self.size_ratio < 2:
            raise OnlineError(f"TreeOptions.size_ratio must be >= 2, got {self.size_ratio}")
        if self.level1_bytes < 1:
            raise OnlineError(f"TreeOptions.level1_bytes must be positive, got {self.level1_bytes}")
        if self.t_wait_s < 0:
            raise OnlineError(f"TreeOptions.t_wait_s must be >= 0, got {self.t_wait_s}")
        if self.bloom_bits_per_key < 1:
            raise OnlineError(
                f"TreeOptions.bloom_bits_per_key must be >= 1, got {self.bloom_bits_per_key}"
            )
        if self.purge_ttl_ns < 0:
            raise OnlineError(f"TreeOptions.purge_ttl_ns must be >= 0, got {self.purge_ttl_ns}")
        if self.max_immutable < 1:
            raise OnlineError(f"TreeOptions.max_immutable must be >= 1, got {self.max_immutable}")
        if self.l0_stop_writes <= self.l0_trigger:
            raise OnlineError(
                f"TreeOptions.l0_stop_writes ({self.l0_stop_writes}) must be above l0_trigger "
                f"({self.l0_trigger})"
            )
