"""On-demand views: features computed at read time from source views' features and request fields.

```yaml
on_demand_views:
  - name: txn_risk
    sources: [user_txn, user_profile]          # views whose features the expressions may use
    request: [{name: amount, dtype: float64}]  # sent with the entity keys (or entity columns)
    features:
      - {name: amount_vs_week, dtype: float64, expr: "amount / nullif(amount_mean_7d, 0)"}
```
`parse_on_demand_view` checks the fields, type-checks every expression against the sources (the
features a reader may request from them) and compiles it once (store/expressions): a refused
expression is a DefinitionError naming the view, the feature, the token and its position.
`plan_on_demand` turns `odv:feature` references into an OnDemandPlan: the programs to run, the
request fields they need and the hidden read plan of their source features, and the RowPlan of
its one-entity path (store/on_demand_row.py). Plans are made once per snapshot and feature list
(Snapshot.plan caches them). Frozen; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from store.errors import DefinitionError, UnknownFeatureError, ValidationError
from store.expressions import DECLARED, ExpressionError, Program, Scope, compile_expression

if TYPE_CHECKING:
    from store.definitions import FeatureView
    from store.features import FeaturePlan, ViewRead

REQUEST_DTYPES = ("int64", "float64", "bool", "string")  # types of request fields
_FIELDS = {"name", "sources", "request", "features"}


@dataclass(frozen=True)
class RequestField:
    name: str
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


@dataclass(frozen=True)
class OnDemandFeature:
    name: str
    dtype: str
    expr: str
    program: Program = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "expr": self.expr}


@dataclass(frozen=True)
class OnDemandView:
    name: str
    sources: tuple[str, ...]
    request: tuple[RequestField, ...]
    features: tuple[OnDemandFeature, ...]
    feature_index: Mapping[str, OnDemandFeature] = field(
        default_factory=dict, compare=False, repr=False
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sources": list(self.sources),
            "request": [r.to_dict() for r in self.request],
            "features": [f.to_dict() for f in self.features],
        }


def served_dtypes(view: FeatureView) -> dict[str, str]:
    """What an expression may read from `view`: {feature: dtype} of what readers may request."""
    feats = getattr(view, "served_features", view.features)
    return {f.name: f.dtype for f in feats}


def _mapping(obj: object, where: str, required: tuple[str, ...], allowed: set[str]) -> dict:
    if not isinstance(obj, Mapping):
        raise DefinitionError(f"{where}: expected a mapping, got {obj!r}")
    for key in required:
        if key not in obj:
            raise DefinitionError(f"{where}: missing field {key!r}")
    unknown = set(obj) - allowed
    if unknown:
        raise DefinitionError(f"{where}: unknown field(s) {sorted(unknown, key=str)}")
    return dict(obj)


def parse_on_demand_view(obj: object, i: int, views: Mapping[str, FeatureView]) -> OnDemandView:
    """One entry of `on_demand_views`, checked and compiled against the feature `views`."""
    from store.definitions import check_name  # definitions imports this module

    label = obj.get("name", f"#{i}") if isinstance(obj, Mapping) else f"#{i}"
    d = _mapping(obj, f"on-demand view {label!r}", ("name", "features"), _FIELDS)
    name = check_name(d["name"], f"on-demand view #{i}")
    where = f"on-demand view {name!r}"
    if "__" in name:
        raise DefinitionError(
            f"{where}: '__' is reserved in view names (it separates view__feature)"
        )
    if name in views:
        raise DefinitionError(f"{where}: a feature view has the same name; references would clash")
    sources = d.get("sources") or []
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list):
        raise DefinitionError(f"{where}: sources must be a list of feature view names")
    for s in sources:
        if not isinstance(s, str) or s not in views:
            raise DefinitionError(f"{where}: unknown source feature view {s!r}")
    if len(set(sources)) != len(sources):
        raise DefinitionError(f"{where}: sources repeat: {sources}")
    request = _request_fields(d.get("request") or [], where)
    if not sources and not request:
        raise DefinitionError(f"{where}: needs at least one source view or request field")
    scope = Scope({r.name: r.dtype for r in request}, {s: served_dtypes(views[s]) for s in sources})
    feats = d["features"]
    if not isinstance(feats, list) or not feats:
        raise DefinitionError(f"{where}: features must be a non-empty list")
    features = [_feature(f, j, where, scope) for j, f in enumerate(feats)]
    index = {f.name: f for f in features}
    if len(index) != len(features):
        raise DefinitionError(f"{where}: feature names repeat: {[f.name for f in features]}")
    return OnDemandView(name, tuple(sources), tuple(request), tuple(features), index)


def _request_fields(items: object, where: str) -> list[RequestField]:
    from store.definitions import check_name

    if not isinstance(items, list):
        raise DefinitionError(f"{where}: request must be a list of {{name, dtype}}")
    out: list[RequestField] = []
    for j, r in enumerate(items):
        rd = _mapping(r, f"{where} request field #{j}", ("name", "dtype"), {"name", "dtype"})
        rname = check_name(rd["name"], f"{where} request field #{j}")
        if rd["dtype"] not in REQUEST_DTYPES:
            raise DefinitionError(
                f"{where} request field {rname!r}: dtype must be one of {', '.join(REQUEST_DTYPES)}, "
                f"got {rd['dtype']!r}"
            )
        out.append(RequestField(rname, rd["dtype"]))
    if len({r.name for r in out}) != len(out):
        raise DefinitionError(f"{where}: request field names repeat: {[r.name for r in out]}")
    return out


def _feature(obj: object, j: int, where: str, scope: Scope) -> OnDemandFeature:
    from store.definitions import check_name

    fd = _mapping(
        obj, f"{where} feature #{j}", ("name", "dtype", "expr"), {"name", "dtype", "expr"}
    )
    fname = check_name(fd["name"], f"{where} feature #{j}")
    dtype = fd["dtype"]
    if dtype not in DECLARED:
        raise DefinitionError(
            f"{where} feature {fname!r}: dtype must be one of {', '.join(DECLARED)}, got {dtype!r}"
        )
    try:
        program = compile_expression(fd["expr"], scope, dtype)
    except ExpressionError as e:
        raise ExpressionError(
            f"{where} feature {fname!r}: {e.reason}", e.token, e.position
        ) from None
    return OnDemandFeature(fname, dtype, fd["expr"], program)


# ----------------------------------------------------------------------------- read plans


@dataclass(frozen=True)
class OnDemandRead:
    """The features read from one on-demand view: output names, programs and their inputs.

    read: a ViewRead over a stand-in FeatureView named like the on-demand view (no keys), so
    the response machinery treats the computed columns like any view's."""

    view: OnDemandView
    read: ViewRead
    programs: tuple[Program, ...]
    # per program, per slot: (source view or None for a request field, name)
    inputs: tuple[tuple[tuple[str | None, str], ...], ...]


Gather = Callable[[list], Sequence[Any]]


@dataclass(frozen=True)
class RowPlan:
    """The one-entity path's layout of a plan: its inputs are one list of Python values, the
    request fields (in OnDemandPlan.request order) then each source read's features (in
    OnDemandPlan.sources.reads order, each read's `features` order); `slots` holds, per
    OnDemandRead and per program, the positions of the program's slots in that list, and
    `steps` the same ready to run: per OnDemandRead, per program (its one-row function, a
    callable list -> the program's inputs, or None when they are the list's first items)."""

    width: int  # the length of the input list
    slots: tuple[tuple[tuple[int, ...], ...], ...]
    steps: tuple[tuple[tuple[Callable[[Sequence[Any]], Any], Gather | None], ...], ...]


@dataclass(frozen=True)
class OnDemandPlan:
    reads: tuple[OnDemandRead, ...]
    request: tuple[tuple[str, str], ...]  # (field, dtype) the requested features need
    sources: FeaturePlan | None  # the source features, full names; None when none is read
    source_refs: tuple[str, ...]  # "view:feature" of every source feature read
    row: RowPlan | None = None  # the one-entity layout (row_plan); None: not made

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for r in self.reads for n in r.read.names)


def plan_on_demand(
    on_demand_views: Mapping[str, OnDemandView],
    views: Mapping[str, FeatureView],
    refs: Sequence[str],
    full_feature_names: bool,
    plan_sources: Any,
) -> OnDemandPlan:
    """The plan of `odv:feature` references (in request order, grouped by view).

    plan_sources(refs) -> FeaturePlan plans the hidden source reads (full names)."""
    from store.definitions import Feature, FeatureView
    from store.features import ViewRead

    grouped: dict[str, list[str]] = {}
    for ref in refs:
        odv_name, _, feat = ref.partition(":")
        odv = on_demand_views[odv_name]
        if feat not in odv.feature_index:
            raise UnknownFeatureError(ref, f"on-demand view {odv_name!r} has no feature {feat!r}")
        feats = grouped.setdefault(odv_name, [])
        if feat not in feats:
            feats.append(feat)
    reads: list[OnDemandRead] = []
    request: dict[str, str] = {}
    source_refs: list[str] = []
    for odv_name, feats in grouped.items():
        odv = on_demand_views[odv_name]
        chosen = [odv.feature_index[f] for f in feats]
        stand_in = FeatureView(odv.name, (), tuple(Feature(f.name, f.dtype) for f in chosen), (), 0)
        names = tuple(f"{odv_name}__{f}" if full_feature_names else f for f in feats)
        read = ViewRead(stand_in, tuple(feats), names, tuple(f.dtype for f in chosen))
        inputs = []
        for f in chosen:
            inputs.append(tuple((s.view, s.name) for s in f.program.slots))
            for s in f.program.slots:
                if s.view is None:
                    request[s.name] = s.dtype
                elif f"{s.view}:{s.name}" not in source_refs:
                    source_refs.append(f"{s.view}:{s.name}")
        programs = tuple(f.program for f in chosen)
        reads.append(OnDemandRead(odv, read, programs, tuple(inputs)))
    sources = plan_sources(source_refs) if source_refs else None
    plan = OnDemandPlan(tuple(reads), tuple(request.items()), sources, tuple(source_refs))
    return replace(plan, row=row_plan(plan))


def row_plan(od: OnDemandPlan) -> RowPlan:
    """The RowPlan of `od`: where each program's slots are in the one-row input list."""
    at: dict[tuple[str | None, str], int] = {}
    for name, _ in od.request:
        at[(None, name)] = len(at)
    width = len(at)
    for read in od.sources.reads if od.sources is not None else ():
        for feat in read.features:
            at[(read.view.name, feat)] = width
            width += 1
    slots = tuple(tuple(tuple(at[key] for key in keys) for keys in r.inputs) for r in od.reads)
    steps = tuple(
        tuple((p.row, _gather(pos)) for p, pos in zip(r.programs, s, strict=True))
        for r, s in zip(od.reads, slots, strict=True)
    )
    return RowPlan(width, slots, steps)


def _gather(positions: tuple[int, ...]) -> Gather | None:
    if positions == tuple(range(len(positions))):
        return None
    if len(positions) == 1:
        return itemgetter(slice(positions[0], positions[0] + 1))
    return itemgetter(*positions)


def with_on_demand(
    plan: FeaturePlan, defs: Any, refs: Sequence[str], full_feature_names: bool
) -> FeaturePlan:
    """`plan` (the feature views' reads) with the on-demand references `refs` planned: output
    names checked against the plain ones, join keys of the sources added."""
    from store.features import plan_features

    od = plan_on_demand(
        defs.on_demand_views,
        defs.feature_views,
        refs,
        full_feature_names,
        lambda source_refs: plan_features(defs, source_refs, True),
    )
    owner = {n: "a feature view" for n in plan.names}
    for r in od.reads:
        for name in r.read.names:
            if name in owner:
                raise ValidationError(
                    f"feature name {name!r} is in both {owner[name]} and on-demand view "
                    f"{r.view.name!r}; pass full_feature_names=True to get view__feature names"
                )
            owner[name] = f"on-demand view {r.view.name!r}"
    keys = dict(plan.join_keys)
    for k, t in od.sources.join_keys if od.sources is not None else ():
        if keys.setdefault(k, t) != t:
            raise ValidationError(f"join key {k!r} has different types in the requested views")
    return replace(plan, join_keys=tuple(keys.items()), on_demand=od)
