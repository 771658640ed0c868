"""The store's error boundary (store/boundary.py): no engine error class reaches a caller; a
damaged file is a CorruptionError naming the file and what to do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import offline
import online
from store import FeatureStore
from store.boundary import store_error
from store.errors import (
    ClosedError,
    CorruptionError,
    DefinitionError,
    EngineError,
    StoreError,
)
from tests.store.conftest import DEFS, open_store, user_batch

ENGINE_ERRORS = (online.OnlineError, offline.OfflineError)


def _store_with_files(root: Path, now: int) -> None:
    """A closed store with one sstable and one Parquet file of user_stats."""
    fs = open_store(root)
    fs.apply(DEFS)
    fs.ingest("user_stats", user_batch([1, 2, 3], now))
    fs.flush()
    fs.close()


def _one(pattern: str, root: Path) -> Path:
    (path,) = root.glob(pattern)
    return path


def _open_refused(root: Path, damaged: Path) -> CorruptionError:
    with pytest.raises(CorruptionError) as info:
        open_store(root)
    err = info.value
    assert not isinstance(err, ENGINE_ERRORS)
    assert str(damaged) in str(err)
    assert "restore" in str(err).lower()
    return err


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_sstable_refuses_the_open_naming_the_file(tmp_path, now) -> None:
    root = tmp_path / "root"
    _store_with_files(root, now)
    sst = _one("online/user_stats/*.sst", root)
    _flip_middle(sst)
    err = _open_refused(root, sst)
    assert err.path == str(sst)
    assert str(root / "online" / "user_stats") in str(err)  # the directory to rebuild
    with pytest.raises(CorruptionError):  # the failed open released the writer lock
        open_store(root)


def test_a_damaged_online_manifest_refuses_the_open_naming_the_file(tmp_path, now) -> None:
    root = tmp_path / "root"
    _store_with_files(root, now)
    manifest = root / "online" / "user_stats" / "MANIFEST"
    _flip_middle(manifest)
    _open_refused(root, manifest)


def test_a_damaged_offline_manifest_refuses_the_open_naming_the_file(tmp_path, now) -> None:
    root = tmp_path / "root"
    _store_with_files(root, now)
    manifest = root / "offline" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    _open_refused(root, manifest)


def test_a_missing_parquet_file_refuses_the_open_naming_the_file(tmp_path, now) -> None:
    root = tmp_path / "root"
    _store_with_files(root, now)
    parquet = _one("offline/user_stats/*/*.parquet", root)
    parquet.unlink()
    _open_refused(root, parquet)


def test_a_damaged_parquet_file_fails_reads_naming_the_file(tmp_path, now) -> None:
    root = tmp_path / "root"
    _store_with_files(root, now)
    parquet = _one("offline/user_stats/*/*.parquet", root)
    parquet.write_bytes(parquet.read_bytes()[:100])  # the footer is gone
    entities = pd.DataFrame({"user_id": [1], "event_timestamp": [pd.Timestamp(now + 1, tz="UTC")]})
    with open_store(root) as fs:  # the offline store reads its files' contents only in queries
        for call in (
            lambda: fs.get_historical_features(entities, ["user_stats:ctr"]),
            lambda: fs.export_training(entities, ["user_stats:ctr"], tmp_path / "out.parquet"),
            fs.audit,
        ):
            with pytest.raises(CorruptionError) as info:
                call()
            assert not isinstance(info.value, ENGINE_ERRORS)
            assert str(parquet) in str(info.value)
            assert "restore" in str(info.value).lower()
        # online reads and ingests are not affected
        assert fs.get_online_features(["user_stats:ctr"], {"user_id": [1]}).to_dict()["ctr"][0]
        fs.ingest("user_stats", user_batch([4], now))


def test_an_engine_failure_on_ingest_is_a_store_error_naming_the_engine(
    fs: FeatureStore, now: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = fs._snap.trees["user_stats"]

    def broken_write(*args: object, **kwargs: object) -> None:
        raise online.OnlineError("simulated engine fault")

    monkeypatch.setattr(tree, "write", broken_write)
    with pytest.raises(EngineError, match="online store: simulated engine fault"):
        fs.ingest("user_stats", user_batch([1], now))
    monkeypatch.undo()
    with pytest.raises(StoreError, match="reopen it"):  # the failure latch holds
        fs.ingest("user_stats", user_batch([2], now))


@pytest.mark.parametrize(
    ("engine_error", "store_class", "text"),
    [
        (
            online.OnlineCorruptionError("/r/online/v/000001.sst", "CRC32C mismatch"),
            CorruptionError,
            "/r/online/v",
        ),
        (
            offline.OfflineCorruptionError("manifest unreadable", path="/r/offline/manifest.json"),
            CorruptionError,
            "/r/offline",
        ),
        (online.ClosedError("LSMTree /r/online/v is closed"), ClosedError, "closed"),
        (offline.InvalidNameError("bad name '1x'"), DefinitionError, "1x"),
        (online.SchemaMismatchError("fields differ"), EngineError, "online store: fields differ"),
        (offline.SchemaMismatchError("column x missing"), EngineError, "offline store: column x"),
        (offline.OfflineError("query failed"), EngineError, "offline store: query failed"),
    ],
)
def test_each_engine_error_maps_to_one_store_error(
    engine_error: Exception, store_class: type, text: str
) -> None:
    err = store_error(engine_error, Path("/r"))
    assert type(err) is store_class
    assert text in str(err)
