"""Child process of test_crash: writes deterministic batches into an LSMTree until killed.

Usage: python -m tests.online.crash_writer DIR [CRASH_AT]. With CRASH_AT = n, the process
SIGKILLs itself at the n-th file rename of the engine after opening (an sstable or the manifest), i.e. in the
middle of a flush or a compaction. Prints "acked <seq>" after every write.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pyarrow as pa

from online import Field, LSMTree, TreeOptions

FIELDS = [Field("v", "int64"), Field("s", "string")]
OPTIONS = TreeOptions(
    index="learned",
    memtable_bytes=8_000,
    l0_trigger=2,
    level1_bytes=30_000,
    size_ratio=2,
    background=True,
    t_wait_s=0.0,
)
BATCHES = 400


def batch(seq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.RecordBatch]:
    """Batch `seq`: 40 keys that overlap earlier batches, event times out of order."""
    j = np.arange(40)
    keys = ((seq * 37 + j * 13) % 700).astype(np.uint64)
    ev = np.full(40, (seq * 7) % 11, np.int64)
    cr = np.full(40, seq, np.int64)
    v = seq * 1000 + j
    return (
        keys,
        ev,
        cr,
        pa.RecordBatch.from_arrays(
            [pa.array(v), pa.array([f"{x}" for x in v.tolist()])], names=["v", "s"]
        ),
    )


def expected(upto: int) -> dict[int, tuple[tuple[int, int, int, int], int]]:
    """key -> (version, v) after batches 1..upto."""
    model: dict[int, tuple[tuple[int, int, int, int], int]] = {}
    for seq in range(1, upto + 1):
        keys, ev, cr, b = batch(seq)
        vals = b.column("v").to_pylist()
        for r, k in enumerate(keys.tolist()):
            ver = (int(ev[r]), int(cr[r]), seq, r)
            if k not in model or ver >= model[k][0]:
                model[k] = (ver, vals[r])
    return model


def _arm(crash_at: int) -> None:
    calls = [0]
    real = os.replace

    def replace(src, dst):  # noqa: ANN001 — os.replace's signature
        calls[0] += 1
        if calls[0] == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst)

    os.replace = replace


def main() -> None:
    path = sys.argv[1]
    tree = LSMTree(path, FIELDS, OPTIONS)
    if len(sys.argv) > 2:
        _arm(int(sys.argv[2]))
    for seq in range(1, BATCHES + 1):
        tree.write(seq, *batch(seq))
        print(f"acked {seq}", flush=True)
    tree.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
