"""Definitions parsing/validation, the apply diff, and registry.json persistence."""

from __future__ import annotations

import copy
import json

import pytest

from store.definitions import Definitions
from store.duration import format_duration, parse_duration
from store.errors import CorruptionError, DefinitionError
from store.registry import Registry, plan_apply
from tests.definitions import definitions, view

BASE = definitions(
    view(
        "user_stats",
        ["user"],
        {"ctr": "float32", "country": "string", "emb": "float32[4]"},
        ttl="7d",
    ),
    view("pair", ["user", "item"], {"score": "float64"}),
    services={"ranking_v1": ["user_stats:ctr", "pair:score"]},
    pushes={"user_stats_push": "user_stats"},
)


def test_durations_parse_and_format() -> None:
    assert parse_duration("30m") == 30 * 60 * 10**9
    assert parse_duration("2h") == 2 * 3600 * 10**9
    assert parse_duration("7d") == 7 * 86400 * 10**9
    assert parse_duration(0) == parse_duration("0") == parse_duration(None) == 0
    for ns in (0, 10**9, 90 * 10**9, 3600 * 10**9, 7 * 86400 * 10**9):
        assert parse_duration(format_duration(ns)) == ns
    for bad in ("7 days", "-1d", "1.5h", True, [1]):
        with pytest.raises(DefinitionError, match="duration"):
            parse_duration(bad)


def test_definitions_roundtrip_and_derived_keys(tmp_path) -> None:
    defs = Definitions.from_dict(BASE)
    assert Definitions.from_dict(defs.to_dict()) == defs
    pair = defs.feature_views["pair"]
    assert pair.keys == (("user_id", "int64"), ("item_id", "string"))
    assert pair.hashed and not defs.feature_views["user_stats"].hashed
    path = tmp_path / "defs.yaml"
    import yaml

    path.write_text(yaml.safe_dump(BASE))
    assert Definitions.load(path) == defs


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["feature_views"][0]["features"].append({"name": "x", "dtype": "int8"}),
            "unsupported dtype 'int8'",
        ),
        (lambda d: d["feature_views"][0].update(entities=["nobody"]), "unknown entity 'nobody'"),
        (
            lambda d: d["feature_views"][0]["features"].append({"name": "ctr", "dtype": "int32"}),
            "repeat",
        ),
        (
            lambda d: d["feature_views"][0]["features"].append(
                {"name": "created", "dtype": "int32"}
            ),
            "reserved",
        ),
        (
            lambda d: d["feature_views"][0]["features"].append({"name": "_x", "dtype": "int32"}),
            "invalid name",
        ),
        (
            lambda d: d["feature_views"][0]["features"].append(
                {"name": "user_id", "dtype": "int32"}
            ),
            "reserved",
        ),
        (lambda d: d["feature_views"][0].update(ttl="soon"), "ttl"),
        (lambda d: d["entities"][0].update(dtype="float32"), "int64 or string"),
        (
            lambda d: d["feature_services"][0].update(features=["user_stats:nope"]),
            "no feature 'nope'",
        ),
        (lambda d: d["push_sources"][0].update(feature_view="nope"), "unknown feature view 'nope'"),
        (lambda d: d.update(extra=[]), "unknown section"),
        (lambda d: d["feature_views"][0].update(colour="red"), "unknown field"),
        (
            lambda d: d["feature_views"].append(copy.deepcopy(d["feature_views"][0])),
            "defined twice",
        ),
    ],
)
def test_bad_definitions_are_refused_with_a_clear_message(mutate, message) -> None:
    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(DefinitionError, match=message):
        Definitions.from_dict(d)


def _plan(old, new, has_data=True, force=False):
    return plan_apply(
        Definitions.from_dict(old), Definitions.from_dict(new), lambda v: has_data, force
    )


def test_identical_definitions_change_nothing() -> None:
    plan = _plan(BASE, copy.deepcopy(BASE))
    assert not plan.changed and not plan.reset_views


def test_added_feature_is_appended_after_the_stored_ones() -> None:
    new = copy.deepcopy(BASE)
    new["feature_views"][0]["features"].insert(0, {"name": "clicks", "dtype": "int64"})
    plan = _plan(BASE, new)
    assert plan.changed and not plan.reset_views
    names = [f.name for f in plan.definitions.feature_views["user_stats"].features]
    assert names == ["ctr", "country", "emb", "clicks"]
    assert plan.changes["feature_views"]["modified"] == ["user_stats"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["feature_views"][0]["features"][0].update(dtype="float64"),
            "changes type from float32 to float64",
        ),
        (lambda d: d["feature_views"][0]["features"].pop(1), "'country' is dropped"),
        (lambda d: d["feature_views"][0].update(entities=["item"]), "join keys change"),
        (lambda d: d["feature_views"].pop(0), "drop it"),
    ],
)
def test_breaking_changes_are_refused_when_data_exists_unless_forced(mutate, message) -> None:
    new = copy.deepcopy(BASE)
    mutate(new)
    new["feature_services"] = []
    new["push_sources"] = []
    with pytest.raises(DefinitionError, match=message):
        _plan(BASE, new, has_data=True)
    forced = _plan(BASE, new, has_data=True, force=True)
    assert forced.reset_views
    assert forced.changes["dropped_data"]
    empty = _plan(BASE, new, has_data=False)
    assert empty.reset_views and not empty.changes["dropped_data"]


def test_registry_persists_atomically_and_detects_damage(tmp_path) -> None:
    reg = Registry(tmp_path)
    assert reg.definitions == Definitions()
    defs = Definitions.from_dict(BASE)
    reg.save(defs, {"user_stats": 7})
    again = Registry(tmp_path)
    assert again.definitions == defs and again.reset_seq == {"user_stats": 7}
    assert not list(tmp_path.glob("*.tmp"))
    data = json.loads((tmp_path / "registry.json").read_text())
    assert data["version"] == 1
    (tmp_path / "registry.json").write_text("{not json")
    with pytest.raises(CorruptionError, match="registry.json"):
        Registry(tmp_path)
