"""Analyzer: Bourbon's cost-benefit analyzer, which decides per sstable whether to learn it.

An sstable is considered once it has lived `t_wait_s` (short-lived L0/L1 files are not worth a
model). It is learned when the expected benefit exceeds the expected cost:

    benefit = expected lookups x (block ns/key - learned ns/key)
    cost    = keys x build ns/key

- expected lookups: the mean number of lookups that retired sstables of the same level served in
  their lifetime; with none retired yet, twice the lookups this sstable has served so far (it is
  expected to live at least as long again).
- ns/key of both kinds of lookup: running per-level statistics measured by `get_many`; until a
  level has measured learned lookups, `learned_saving_prior` x its block ns/key. The first calls
  of each sstable in each mode are not timed (sstable.WARMUP_CALLS): they pay numba's compilation
  and page faults, which no later call pays and which no model saves.
- build ns/key: running mean over the models built so far (`build_ns_per_key_prior` before).

Thread-safety: `evaluate` and `retire` are called by one thread at a time (the tree's
_compact_lock); `record_build` may be called from any thread (flushes learn too): `_build_lock`
guards the build statistics; `snapshot` may be read from any thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from online.options import TreeOptions
from online.sstable import SSTable

__all__ = ["Analyzer"]


@dataclass
class _LevelStats:
    retired: int = 0
    retired_lookups: int = 0
    retired_positive: int = 0
    retired_negative: int = 0
    ns_block: int = 0
    keys_block: int = 0
    ns_learned: int = 0
    keys_learned: int = 0


@dataclass
class Analyzer:
    """Decisions and the statistics they rest on; see the module docstring."""

    options: TreeOptions
    learned: int = 0  # GUARDED_BY(the tree's _compact_lock), as every field not named below
    skipped: int = 0
    build_ns: int = 0  # GUARDED_BY(_build_lock)
    build_keys: int = 0  # GUARDED_BY(_build_lock)
    levels: dict[int, _LevelStats] = field(default_factory=dict)
    decisions: deque = field(default_factory=lambda: deque(maxlen=32))
    _skipped_tables: set[str] = field(default_factory=set)
    _build_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _level(self, level: int) -> _LevelStats:
        return self.levels.setdefault(level, _LevelStats())

    def record_build(self, keys: int, ns: int) -> None:
        """A model of `keys` keys was built in `ns` ns."""
        with self._build_lock:
            self.build_keys += keys
            self.build_ns += ns

    @property
    def build_ns_per_key(self) -> float:
        with self._build_lock:
            if self.build_keys:
                return self.build_ns / self.build_keys
        return self.options.build_ns_per_key_prior

    def retire(self, level: int, table: SSTable) -> None:
        """`table` left `level` (compacted away): keep what it taught us."""
        s = self._level(level)
        s.retired += 1
        s.retired_lookups += table.lookups_positive + table.lookups_negative
        s.retired_positive += table.lookups_positive
        s.retired_negative += table.lookups_negative
        self._add_timings(s, table)
        self._skipped_tables.discard(table.name)

    @staticmethod
    def _add_timings(s: _LevelStats, t: SSTable) -> None:
        s.ns_block += t.ns_block
        s.keys_block += t.keys_block
        s.ns_learned += t.ns_learned
        s.keys_learned += t.keys_learned

    def _ns_per_key(self, level: int, live: list[SSTable]) -> tuple[float, float | None]:
        s = _LevelStats(**vars(self._level(level)))
        for t in live:
            self._add_timings(s, t)
        block = s.ns_block / s.keys_block if s.keys_block else 0.0
        learned = s.ns_learned / s.keys_learned if s.keys_learned else None
        return block, learned

    def evaluate(self, tables: list[tuple[int, SSTable]]) -> list[SSTable]:
        """Decide for every block-mode sstable old enough; returns those to learn now."""
        by_level: dict[int, list[SSTable]] = {}
        for level, t in tables:
            by_level.setdefault(level, []).append(t)
        todo = []
        for level, t in tables:
            if t.model is not None or t.age() < self.options.t_wait_s:
                continue
            block, learned = self._ns_per_key(level, by_level[level])
            saving = (
                block - learned
                if learned is not None
                else block * self.options.learned_saving_prior
            )
            s = self._level(level)
            served = t.lookups_positive + t.lookups_negative
            expected = s.retired_lookups / s.retired if s.retired else 2.0 * served
            benefit = expected * max(saving, 0.0)
            cost = len(t) * self.build_ns_per_key
            learn = benefit > cost
            decision = {
                "sstable": t.name,
                "level": level,
                "keys": len(t),
                "lookups": served,
                "expected_lookups": round(expected),
                "saving_ns": round(saving, 1),
                "benefit_ns": round(benefit),
                "cost_ns": round(cost),
                "decision": "learn" if learn else "skip",
                "time": time.time(),
            }
            if learn:
                self.learned += 1
                self._skipped_tables.discard(t.name)
                self.decisions.append(decision)
                todo.append(t)
            elif t.name not in self._skipped_tables:
                self._skipped_tables.add(t.name)
                self.skipped += 1
                self.decisions.append(decision)
        return todo

    def retired_lookups(self, level: int) -> tuple[int, int]:
        """(positive, negative) lookups served by the sstables retired from `level`."""
        s = self.levels.get(level)
        return (s.retired_positive, s.retired_negative) if s else (0, 0)

    def snapshot(self, tables: list[tuple[int, SSTable]]) -> dict[str, Any]:
        pending = sum(1 for _, t in tables if t.model is None and t.age() < self.options.t_wait_s)
        return {
            "learned": self.learned,
            "skipped": self.skipped,
            "waiting_for_benefit": sum(
                1 for _, t in tables if t.model is None and t.name in self._skipped_tables
            ),
            "pending": pending,
            "build_ns_per_key": round(self.build_ns_per_key, 2),
            "decisions": list(self.decisions),
        }
