"""Rebuilding the online event states of aggregation views from the offline store.

After recovery (and after apply reopened a tree) the offline store holds every acknowledged
event of a view; `rebuild_states` loads the recent ones (event_ts past the state's retention
before the newest event) into each AggregationTree's EventState that is not ready yet, in
version order, and marks it ready. The caller holds the store quiescent (no ingest runs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from offline import OfflineStore
from online import LSMTree
from store.aggregations import events as ev
from store.aggregations.keys import column_keys
from store.batch import CREATED_TS, EVENT_TS

log = logging.getLogger(__name__)
SEQ, ROW = "_seq", "_row"  # the offline store's stored columns (offline/names.py)


def rebuild_states(
    trees: Mapping[str, LSMTree], storage: Mapping[str, str], off: OfflineStore, hash_bits: int
) -> None:
    """Fill every not-ready event state among `trees` (view -> tree) from the offline store."""
    for name, tree in trees.items():
        if isinstance(tree, ev.AggregationTree) and not tree.events.ready:
            rebuild_state(tree, off, storage[name], hash_bits)


def _ns(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.combine_chunks().cast(pa.int64()).to_numpy(), dtype=np.int64)


def rebuild_state(
    tree: ev.AggregationTree, off: OfflineStore, storage: str, hash_bits: int
) -> None:
    state = tree.events
    view = state.view
    newest = pc.max(off.scan(storage, columns=[EVENT_TS]).read_all().column(EVENT_TS)).value
    if newest is not None:
        newest_ns = int(newest)
        start_ns = state.cutoff(newest_ns) + 1
        cols = [*view.join_keys, EVENT_TS, CREATED_TS, SEQ, ROW, *state.columns]
        table = off.scan(storage, start=start_ns, columns=cols).read_all()
        ts = _ns(table.column(EVENT_TS))
        cr = _ns(table.column(CREATED_TS))
        sq = np.asarray(table.column(SEQ).to_numpy(), dtype=np.int64)
        rw = np.asarray(table.column(ROW).to_numpy(), dtype=np.int64)
        order = np.lexsort((rw, sq, cr, ts))
        table = table.take(pa.array(order))
        key_cols = [table.column(k).to_numpy() for k in view.join_keys]
        keys, found = column_keys(view, tree, key_cols, hash_bits)
        if not found.all():  # events of an entity the tree no longer holds (deleted): skipped
            log.warning(
                "view %s: %d offline event(s) of entities the online tree does not hold",
                view.name, int((~found).sum()),
            )  # fmt: skip
            keep = np.flatnonzero(found)
            keys, order, table = keys[keep], order[keep], table.take(pa.array(keep))
        state.add(keys, ts[order], cr[order], sq[order], rw[order], table)
        state.watermark = max(state.watermark, newest_ns)
    state.ready = True
    log.info("event state of %s rebuilt: %s", view.name, state.stats())
