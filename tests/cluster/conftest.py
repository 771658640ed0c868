"""Fixtures of the cluster tests: one Tansu test broker per module, a fresh topic per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.broker import TestBroker
from cluster.topic import ensure_topic

_names = itertools.count()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with TestBroker(Path(log)) as b:
        yield b


@pytest.fixture
def topic(broker: TestBroker, request: pytest.FixtureRequest) -> str:
    """A new 4-partition topic for this test."""
    name = f"t{next(_names)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")
    ensure_topic(broker.bootstrap_servers, name, 4)
    return name
