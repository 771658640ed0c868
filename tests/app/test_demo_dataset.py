"""app/demo: the demo data set is deterministic and matches its own definitions (recsys.yaml)."""

import pyarrow as pa
import pytest
import yaml

from app.demo import DEFINITIONS_PATH, generate, plan
from store import Definitions
from store.dtypes import SCALAR_TYPES

DEFS = Definitions.from_dict(yaml.safe_load(DEFINITIONS_PATH.read_text()))


def _collect(rows: int, seed: int) -> dict[str, pa.Table]:
    parts: dict[str, list[pa.Table]] = {}
    for view, batch in generate(plan(rows, seed, batch_rows=1000)):
        parts.setdefault(view, []).append(batch)
    return {v: pa.concat_tables(t) for v, t in parts.items()}


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = _collect(3000, 7), _collect(3000, 7), _collect(3000, 8)
    assert all(a[v].equals(b[v]) for v in a)
    assert not a["user_item"].equals(c["user_item"])


def test_rows_are_split_over_the_three_views() -> None:
    tables = _collect(3000, 1)
    assert sum(t.num_rows for t in tables.values()) == 3000
    assert set(tables) == {"user_profile", "item_stats", "user_item"}


@pytest.mark.parametrize("view", ["user_profile", "item_stats", "user_item"])
def test_columns_match_the_view_definition(view: str) -> None:
    table = _collect(2000, 3)[view]
    info = DEFS.feature_views[view]
    features = {f.name: f.dtype for f in info.features}
    assert table.column_names == [*info.join_keys, "event_timestamp", *features]
    for name, dtype in features.items():
        t = table.schema.field(name).type
        if dtype in SCALAR_TYPES:
            assert t == SCALAR_TYPES[dtype], name
        elif dtype == "timestamp":
            assert t == pa.timestamp("ns", tz="UTC")
        else:
            assert t == pa.list_(pa.float32(), int(dtype[8:-1])), name
    for key in info.join_keys:
        assert table.column(key).null_count == 0


def test_events_span_thirty_days_and_some_values_are_null() -> None:
    tables = _collect(6000, 5)
    ts = tables["user_item"].column("event_timestamp")
    span = pa.compute.max(ts).as_py() - pa.compute.min(ts).as_py()
    assert 28 <= span.days <= 30
    assert tables["user_profile"].column("avg_session_s").null_count > 0


def test_too_few_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        plan(10)
