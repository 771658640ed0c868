"""FeatureStore.offline_files: a listed snapshot reads the same through pyarrow.dataset, Polars
and Ray Data as through DuckDB, after the `_seq <= N` filter, across schema evolution and
compaction; the listing is complete up to its seq and survives a compaction for the grace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from store.errors import UnknownViewError, ValidationError
from tests.store.published_data import (
    build_store,
    canonical,
    pair_batch,
    read_duckdb,
    read_polars,
    read_pyarrow,
    read_ray,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    fs, seqs = build_store(tmp_path_factory.mktemp("published") / "root")
    yield fs, seqs
    fs.close()


def snapshots(seqs: list[int]) -> list[tuple[str, int | None]]:
    """(view, as_of_seq): before the added feature, mid-way, and the latest."""
    return [("user_stats", seqs[2]), ("user_stats", seqs[7]), ("user_stats", None), ("pair", None)]


def test_listing_describes_the_view(built) -> None:
    fs, seqs = built
    listing = fs.offline_files("user_stats")
    assert listing["view"] == "user_stats" and listing["as_of_seq"] == fs.last_seq
    assert listing["complete_to_seq"] >= listing["as_of_seq"]
    assert listing["keys"] == ["user_id"] and listing["ttl_s"] == 6 * 3600
    assert listing["features"] == ["ctr", "country", "emb", "visits"]
    names = [c["name"] for c in listing["schema"]]
    assert names[:3] == ["user_id", "event_timestamp", "created_timestamp"]
    assert names[-2:] == ["_seq", "_row"] and "visits" in names
    assert listing["version_order"] == ["event_timestamp", "created_timestamp", "_seq", "_row"]
    json.dumps(listing)
    # the last batch was only buffered: listing flushed it
    assert any(f["max_seq"] == seqs[-1] for f in listing["files"])


@pytest.mark.parametrize("reader", [read_pyarrow, read_polars], ids=["pyarrow", "polars"])
def test_engines_read_a_listed_snapshot_like_duckdb(built, reader) -> None:
    fs, seqs = built
    for view, as_of in snapshots(seqs):
        listing = fs.offline_files(view, as_of_seq=as_of)
        want = canonical(read_duckdb(listing), listing)
        assert want.num_rows > 0
        assert int(max(want.column("_seq").to_pylist())) <= listing["as_of_seq"]
        got = canonical(reader(listing), listing)
        assert got.equals(want), (view, as_of)


def test_an_early_snapshot_reads_the_added_feature_as_null(built) -> None:
    fs, seqs = built
    early = fs.offline_files("user_stats", as_of_seq=seqs[2])
    table = read_pyarrow(early)
    assert table.column("visits").null_count == table.num_rows > 0
    assert early["filter_needed"]  # compaction merged later seqs into these files


@pytest.mark.slow
def test_ray_data_reads_a_listed_snapshot_like_duckdb(built) -> None:
    ray = pytest.importorskip("ray")
    fs, seqs = built
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        # one read (Ray schedules tasks: seconds each on a busy machine): the snapshot with
        # schema evolution and rows of later seqs to filter out
        listing = fs.offline_files("user_stats", as_of_seq=seqs[7])
        assert listing["filter_needed"]
        want = canonical(read_duckdb(listing), listing)
        assert canonical(read_ray(listing), listing).equals(want)
    finally:
        ray.shutdown()


def test_bad_requests_are_refused(built) -> None:
    fs, _ = built
    with pytest.raises(UnknownViewError):
        fs.offline_files("nope")
    with pytest.raises(ValidationError):
        fs.offline_files("user_stats", as_of_seq=fs.last_seq + 1)
    with pytest.raises(ValidationError):
        fs.offline_files("user_stats", as_of_seq=-1)


def test_a_listed_snapshot_survives_compaction_for_the_grace_period(tmp_path) -> None:
    fs, _ = build_store(tmp_path / "root")  # grace 3600 s
    listing = fs.offline_files("pair")
    want = canonical(read_duckdb(listing), listing)
    rng = np.random.default_rng(3)
    for day in (0, 1):  # one more file in partitions the listing names, then merge
        fs.ingest("pair", pair_batch(rng, 5, day))
        fs.flush()
    fs.compact()
    after = fs.offline_files("pair")
    assert not {f["path"] for f in after["files"]} >= {f["path"] for f in listing["files"]}
    assert canonical(read_pyarrow(listing), listing).equals(want)
    fs.close()
