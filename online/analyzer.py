"""Analyzer: Bourbon's cost-benefit analyzer, which decides per sstable whether to learn it.

An sstable is considered once it has lived `t_wait_s` (short-lived L0/L1 files are not worth a
model). It is learned when the expected benefit exceeds the expected cost:

    benefit = expected lookups x (block ns/key - learned ns/key)
    cost    = keys x build ns/key

- expected lookups: the mean number of lookups that retired sstables of the same level served in
  their lifetime; with none retired yet, twice the lookups this sstable has served so far (it is
  expected to live at least as long again).
- ns/key of both kinds of lookup: running per-level statistics measured by `get_many`; until a
  level has measured learned lookups, `learned_saving_prior` x its block ns/key.
- build ns/key: running mean over the models built so far (`build_ns_per_key_prior` before).

Thread-safety: called by one thread at a time (the tree's maintenance lock); `snapshot` may be
read from any thread.
"""

from __future__ import annotations

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
    ns_block: int = 0
    keys_block: int = 0
    ns_learned: int = 0
    keys_learned: int = 0


@dataclass
class Analyzer:
    options: TreeOptions
    learned: int = 0
    skipped: int = 0
    build_ns: int = 0
    build_keys: int = 0
    levels: dict[int, _LevelStats] = field(default_factory=dict)
    decisions: deque = field(default_factory=lambda: deque(maxlen=32))
    _skipped_tables: set[str] = field(default_factory=set)

    def _level(self, level: int) -> _LevelStats:
        return self.levels.setdefault(level, _LevelStats())

    def record_build(self, keys: int, ns: int) -> None:
        self.build_keys += keys
        self.build_ns += ns

    @property
    def build_ns_per_key(self) -> float:
        if self.build_keys:
            return self.build_ns / self.build_keys
        return self.options.build_ns_per_key_prior

    def retire(self, level: int, table: SSTable) -> None:
        """`table` left `level` (compacted away): keep what it taught us."""
        s = self._level(level)
        s.retired += 1
        s.retired_lookups += table.lookups_positive + table.lookups_negative
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
                "sstable": t.name, "level": level, "keys": len(t), "lookups": served,
                "expected_lookups": round(expected), "saving_ns": round(saving, 1),
                "benefit_ns": round(benefit), "cost_ns": round(cost),
                "decision": "learn" if learn else "skip", "time": time.time(),
            }  # fmt: skip
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
