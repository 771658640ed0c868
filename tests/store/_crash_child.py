"""Child process of the crash tests: ingest deterministic batches, print each acknowledged seq.

Usage: python -m tests.store._crash_child ROOT ROUND MODE
MODE "loop": ingest forever with small engine buffers (flushes, rotations, releases happen), to be
SIGKILLed. MODE "exit:N": ingest N batches with large buffers, then die without closing.
"""

from __future__ import annotations

import os
import sys

from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore
from tests.store.conftest import DEFS, ns

T0 = 3_786_912_000_000_000_000  # 2090: far from any ttl, so online rows never age out
HOT = 10  # entities rewritten by every batch


def batch(rnd: int, i: int) -> tuple[str, dict]:
    """Batch i of round rnd: 60 new entities (never rewritten) + the HOT entities."""
    ids = [(rnd + 1) * 1_000_000 + i * 100 + r for r in range(60)] + list(range(HOT))
    ts = ns([T0 + rnd * 10**12 + i * 10**6] * len(ids))
    marker = float(rnd * 100_000 + i)
    if i % 2 == 0:
        return "user_stats", {
            "user_id": ids,
            "event_timestamp": ts,
            "ctr": [marker] * len(ids),
            "country": [f"r{rnd}b{i}"] * len(ids),
            "emb": [[marker, float(r), 0.0, 1.0] for r in range(len(ids))],
        }
    return "pair", {
        "user_id": ids,
        "item_id": [f"item-{r % 7}" for r in range(len(ids))],
        "event_timestamp": ts,
        "score": [marker] * len(ids),
        "clicks": list(range(len(ids))),
    }


def main() -> None:
    root, rnd, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "loop":
        opts = {
            "tree_options": TreeOptions(memtable_bytes=48 << 10, t_wait_s=0.0),
            "offline_options": OfflineOptions(buffer_rows=1500, buffer_age_s=0.2),
            "segment_bytes": 96 << 10,
        }
        limit = 10**9
    else:
        opts = {
            "tree_options": TreeOptions(background=False),
            "offline_options": OfflineOptions(background=False),
        }
        limit = int(mode.split(":")[1])
    fs = FeatureStore(root, **opts)
    fs.apply(DEFS)
    print("READY", flush=True)
    for i in range(limit):
        view, data = batch(rnd, i)
        seq = fs.ingest(view, data)
        print(f"ACK {seq} {i}", flush=True)
    os._exit(0)  # die without closing: nothing is flushed


if __name__ == "__main__":
    main()
