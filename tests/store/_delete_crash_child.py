"""Child process of the delete crash test: ingest batches, delete half of the previous batch's
entities after every other batch, purge (compact) now and then; print what was acknowledged.

Usage: python -m tests.store._delete_crash_child ROOT ROUND. Runs until SIGKILLed. Lines:
"READY", "ACK seq i" (batch i acknowledged), "DELGO i" (delete of batch i's first DELETED
entities started), "DELACK seq i" (acknowledged), "PURGE" / "PURGED".
"""

from __future__ import annotations

import os
import sys

from offline import OfflineOptions
from online import TreeOptions
from store import FeatureStore
from tests.store.conftest import DEFS, ns

T0 = 3_786_912_000_000_000_000  # 2090: far from any ttl
PER_BATCH = 40
DELETED = 20  # the first DELETED entities of a batch are deleted after the next batch


def ids(rnd: int, i: int) -> list[int]:
    return [(rnd + 1) * 1_000_000 + i * 100 + r for r in range(PER_BATCH)]


def batch(rnd: int, i: int) -> dict:
    k = ids(rnd, i)
    marker = float(rnd * 100_000 + i)
    return {
        "user_id": k,
        "event_timestamp": ns([T0 + rnd * 10**12 + i * 10**6] * len(k)),
        "ctr": [marker] * len(k),
        "country": [f"r{rnd}b{i}"] * len(k),
        "emb": [[marker, float(r), 0.0, 1.0] for r in range(len(k))],
    }


def main() -> None:
    root, rnd = sys.argv[1], int(sys.argv[2])
    fs = FeatureStore(
        root,
        tree_options=TreeOptions(memtable_bytes=48 << 10, t_wait_s=0.0),
        offline_options=OfflineOptions(buffer_rows=600, buffer_age_s=0.2),
        segment_bytes=64 << 10,
    )
    fs.apply(DEFS)
    print("READY", flush=True)
    i = 0
    while True:
        seq = fs.ingest("user_stats", batch(rnd, i))
        print(f"ACK {seq} {i}", flush=True)
        if i % 2 == 1:
            print(f"DELGO {i - 1}", flush=True)
            out = fs.delete("user_stats", {"user_id": ids(rnd, i - 1)[:DELETED]})
            print(f"DELACK {out['seq']} {i - 1}", flush=True)
        if i % 7 == 6:
            print("PURGE", flush=True)
            fs.compact()
            print("PURGED", flush=True)
        i += 1
    os._exit(0)


if __name__ == "__main__":
    main()
