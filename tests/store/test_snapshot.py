"""The online trees' options (store/snapshot.py resolve_tree_options) as FeatureStore applies them."""

from __future__ import annotations

import pytest

from online import TreeOptions
from store import FeatureStore, ValidationError
from store.snapshot import resolve_tree_options
from tests.store.conftest import DEFS


def _index_and_delta(fs: FeatureStore) -> set[tuple[str, int]]:
    return {(t.options.index, t.options.delta) for t in fs._snap.trees.values()}


def test_tree_options_index_and_delta_are_honoured(tmp_path) -> None:
    options = TreeOptions(index="block", delta=16, background=False)
    with FeatureStore(tmp_path / "root", tree_options=options) as fs:
        fs.apply(DEFS)
        assert _index_and_delta(fs) == {("block", 16)}
    with FeatureStore(tmp_path / "root", tree_options=options) as fs:  # reopened views too
        assert _index_and_delta(fs) == {("block", 16)}


def test_online_index_and_delta_alone_set_the_trees(tmp_path) -> None:
    with FeatureStore(tmp_path / "root", "learned", 32) as fs:
        fs.apply(DEFS)
        assert _index_and_delta(fs) == {("learned", 32)}
    with FeatureStore(tmp_path / "root") as fs:
        assert _index_and_delta(fs) == {("auto", 8)}


def test_agreeing_arguments_are_accepted() -> None:
    options = TreeOptions(index="block", delta=4)
    assert resolve_tree_options("block", 4, options) == options
    assert resolve_tree_options(None, None, None) == TreeOptions()
    assert resolve_tree_options("learned", None, None) == TreeOptions(index="learned")


@pytest.mark.parametrize(
    ("online_index", "delta", "message"),
    [
        ("auto", None, "online_index='auto' conflicts with tree_options.index='block'"),
        (None, 8, "delta=8 conflicts with tree_options.delta=4"),
    ],
)
def test_a_conflicting_combination_is_refused(tmp_path, online_index, delta, message) -> None:
    options = TreeOptions(index="block", delta=4)
    with pytest.raises(ValidationError, match=message):
        FeatureStore(tmp_path / "root", online_index, delta, tree_options=options)
    FeatureStore(tmp_path / "root", tree_options=options).close()  # nothing was left locked


def test_an_invalid_index_mode_is_a_validation_error(tmp_path) -> None:
    with pytest.raises(ValidationError, match="TreeOptions.index must be one of"):
        FeatureStore(tmp_path / "root", "fastest")
