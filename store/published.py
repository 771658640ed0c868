"""Published snapshots: a feature view's offline Parquet files listed for other engines.

`offline_files` maps a feature view to its offline storage, takes the seq (the last applied
one by default), has the offline store flush the view's buffer and list the files that hold the
view's rows up to that seq (offline/snapshot_files.py describes the listing), then adds what
only the store knows: the view's name, ttl and feature columns. Pure function of its inputs;
safe from any thread.
"""

from __future__ import annotations

from typing import Any

from offline import OfflineStore
from store.snapshot import Snapshot
from store.training import as_of


def offline_files(
    off: OfflineStore, snap: Snapshot, view: str, as_of_seq: int | None, last_seq: int
) -> dict[str, Any]:
    """The listing of feature view `view` as of `as_of_seq` (0..`last_seq`; default `last_seq`).

    Keys: view, storage, as_of_seq, complete_to_seq (>= as_of_seq: the files hold every row up
    to it), keys, features, ttl_s, files (absolute paths, rows, bytes, min/max seq, columns),
    rows, schema (every stored column with its Arrow type, `_seq` and `_row` included),
    arrow_schema, row_filter, filter_needed, version_order, timestamps, grace_s.
    Raises UnknownViewError or ValidationError (as_of_seq out of range).
    """
    fv = snap.view(view)
    seq = as_of(as_of_seq, last_seq)
    storage = snap.storage[view]
    listing = off.snapshot_files(storage, seq)
    listing["complete_to_seq"] = max(listing["complete_to_seq"], seq)
    return {
        "view": view,
        "storage": storage,
        **{k: v for k, v in listing.items() if k != "view"},
        "features": [f.name for f in fv.features],
        "ttl_s": fv.ttl_ns / 1e9,
    }
