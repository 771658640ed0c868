"""The data commands of `rickhouse`: `ingest`, `get`, `export`, `offline-files`, `delete` and
`forget`. app/cli.py registers them on the main typer app, in its help's order.

Each opens the store in this process (the root's writer lock) through `open_store` and reports
failures through `_run` (app/cli_context.py). Heavy imports happen inside the commands, so
`--help` stays fast. Runs on the CLI's one thread.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from app.cli_context import (
    CliError,
    RootOption,
    _definitions,
    _run,
    console,
    open_store,
)
from app.settings import DEFAULT_ROOT

__all__ = ["delete", "export", "forget", "get", "ingest", "offline_files"]

EntityOption = Annotated[
    list[str], typer.Option("--entity", "-e", help="KEY=V1,V2,... (repeat for composite keys).")
]


def ingest(
    view: Annotated[str, typer.Argument(help="Feature view name.")],
    file: Annotated[
        Path, typer.Argument(help="A .parquet or .csv file.", exists=True, dir_okay=False)
    ],
    root: RootOption = Path(DEFAULT_ROOT),
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per atomic batch.")] = 200_000,
) -> None:
    """Ingest a Parquet or CSV file into VIEW, in durable batches, with a progress bar."""
    from app import input_files
    from app.demo.run import progress_bar
    from store.errors import UnknownViewError

    def body() -> None:
        with open_store(root) as fs:
            defs = _definitions(fs)
            if view not in defs.feature_views:
                raise UnknownViewError(view)
            total, parts = input_files.batches(file, defs, defs.feature_views[view], batch_rows)
            start, seq, done = time.perf_counter(), 0, 0
            with progress_bar(console) as progress:
                task = progress.add_task(f"ingest {view}", total=total)
                for part in parts:
                    seq = fs.ingest(view, part)
                    done += part.num_rows
                    progress.advance(task, part.num_rows)
        elapsed = time.perf_counter() - start
        console.print(
            f"ingested {done:,} rows into {view} (last seq {seq}) in {elapsed:.1f} s "
            f"({done / max(elapsed, 1e-9):,.0f} rows/s)"
        )

    _run(body)


def get(
    features: Annotated[list[str], typer.Argument(help="VIEW:FEATURE refs, or one service name.")],
    entity: EntityOption,
    root: RootOption = Path(DEFAULT_ROOT),
    full_feature_names: Annotated[bool, typer.Option(help="Name columns view__feature.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print Feast's JSON shape.")] = False,
) -> None:
    """Read online features for some entities."""
    from app.feast_json import feast_json
    from app.payloads import check_columns

    def body() -> None:
        entities = _entity_values(entity)
        check_columns(entities, "--entity")
        with open_store(root) as fs:
            wanted: list[str] | str = features
            if len(features) == 1 and ":" not in features[0]:
                wanted = features[0]  # a feature service
            # int64 keys come as decimal text, which the store parses (naming a bad row)
            r = fs.get_online_features(wanted, entities, full_feature_names=full_feature_names)
            out = feast_json(r)
        if as_json:
            console.print_json(json.dumps(out, default=str))
            return
        _print_online(out)

    _run(body)


def _entity_values(items: list[str]) -> dict[str, list]:
    """The `--entity KEY=V1,V2,...` options as {key: [value text, ...]}; BadRequestError names
    a malformed one."""
    from app.errors import BadRequestError

    entities: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise BadRequestError(f"--entity {item!r}: use KEY=V1,V2,...")
        entities[key] = values.split(",")
    return entities


def _print_online(out: dict[str, Any]) -> None:
    names = out["metadata"]["feature_names"]
    results = out["results"]
    table = Table(show_lines=False)
    for name in names:
        table.add_column(name, overflow="fold")
    rows = len(results[0]["values"]) if results else 0
    for i in range(rows):
        cells = []
        for col in results:
            value, status = col["values"][i], col["statuses"][i]
            text = json.dumps(value) if not isinstance(value, str) else value
            if isinstance(value, list) and len(value) > 4:
                text = json.dumps(value[:4])[:-1] + f", ... ({len(value)})]"
            cells.append(text if status == "PRESENT" else f"[dim]{text} ({status})[/]")
        table.add_row(*cells)
    console.print(table)


def export(
    *,
    entities: Annotated[
        Path | None,
        typer.Option(help="Entity rows: .parquet or .csv with join keys + event_timestamp."),
    ] = None,
    features: Annotated[list[str], typer.Option(help="VIEW:FEATURE (repeat, or comma-separated).")],
    out: Annotated[Path, typer.Option(help="Output Parquet file.")],
    root: RootOption = Path(DEFAULT_ROOT),
    as_of_seq: Annotated[
        int | None, typer.Option(min=0, help="Reproduce an earlier export.")
    ] = None,
    entities_as_of: Annotated[
        str | None,
        typer.Option(
            help="Instead of --entities: the latest row of every entity at this instant "
            "(ISO 8601, naive = UTC; or epoch seconds)."
        ),
    ] = None,
    cluster: Annotated[
        Path | None,
        typer.Option(
            "--cluster",
            help="cluster.yaml: export through the cluster's router (Ray tasks per tablet).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_of_position: Annotated[
        str | None,
        typer.Option(
            help='With --cluster: reproduce an earlier export, {"<partition>": offset} as it '
            "printed."
        ),
    ] = None,
) -> None:
    """Point-in-time correct training export to Parquet; prints the seq it was taken at."""
    from app import input_files

    refs = [r for item in features for r in item.split(",") if r]

    def body() -> None:
        if cluster is not None or as_of_position is not None:
            _export_cluster(cluster, entities, refs, out, as_of_seq, as_of_position,
                            entities_as_of)  # fmt: skip
            return
        if (entities is None) == (entities_as_of is None):
            raise CliError("give exactly one of --entities and --entities-as-of")
        if entities is None:
            assert entities_as_of is not None  # exactly one of the two: checked above
            with open_store(root) as fs:
                out.parent.mkdir(parents=True, exist_ok=True)
                info = fs.export_training(
                    None,
                    refs,
                    str(out),
                    as_of_seq=as_of_seq,
                    entities_as_of=_instant(entities_as_of),
                )
            console.print(
                f"exported {int(info['rows']):,} entities as of {entities_as_of} to "
                f"{info.get('path', out)} at seq {info['seq']} "
                f"(reproduce with --as-of-seq {info['seq']})"
            )
            return
        if not entities.is_file():
            raise CliError(f"--entities {entities}: no such file")
        with open_store(root) as fs:
            if entities.suffix.lower() == ".parquet":
                rows: Any = str(entities.resolve())
            else:
                rows = input_files.read_entities(entities, _definitions(fs))
            out.parent.mkdir(parents=True, exist_ok=True)
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                progress.add_task(f"export {len(refs)} features -> {out}", total=None)
                info = fs.export_training(rows, refs, str(out), as_of_seq=as_of_seq)
        console.print(
            f"exported {int(info['rows']):,} rows to {info.get('path', out)} at seq {info['seq']} "
            f"(reproduce with --as-of-seq {info['seq']})"
        )

    _run(body)


def offline_files(
    view: Annotated[str, typer.Argument(help="Feature view name.")],
    root: RootOption = Path(DEFAULT_ROOT),
    as_of_seq: Annotated[
        int | None, typer.Option(min=0, help="The snapshot's seq (default: the last seq).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False,
) -> None:
    """List the Parquet files of a view's offline snapshot for another engine (flushes it first)."""
    from app.snapshot_listing import render_listing

    def body() -> None:
        with open_store(root) as fs:
            listing = fs.offline_files(view, as_of_seq=as_of_seq)
        if as_json:
            print(json.dumps(listing, indent=1))
        else:
            render_listing(listing, console)

    _run(body)


def delete(
    view: Annotated[str, typer.Argument(help="Feature view name.")],
    entity: EntityOption,
    root: RootOption = Path(DEFAULT_ROOT),
) -> None:
    """Delete entities from a view in both stores (durable when it returns)."""

    def body() -> None:
        entities = _entity_values(entity)
        with open_store(root) as fs:
            out = fs.delete(view, entities)
        console.print(f"deleted {out['deleted']} entities of {view} at seq {out['seq']}")

    _run(body)


def forget(
    entity: Annotated[str, typer.Argument(help="Entity name.")],
    keys: Annotated[list[str], typer.Argument(help="Values of the entity's join key.")],
    root: RootOption = Path(DEFAULT_ROOT),
) -> None:
    """Delete entities from every view keyed by ENTITY (composite keys included), in one record."""

    def body() -> None:
        with open_store(root) as fs:
            out = fs.forget(entity, keys)
        views = ", ".join(f"{v}: {n}" for v, n in out["views"].items())
        console.print(f"forgot {out['deleted']} entity rows at seq {out['seq']} ({views})")

    _run(body)


def _export_cluster(
    cluster: Path | None,
    entities: Path | None,
    refs: list[str],
    out: Path,
    as_of_seq: int | None,
    as_of_position: str | None,
    entities_as_of: str | None,
) -> None:
    """`export --cluster`: through the router (app/router_export.py `export_via_router`)."""
    from app.router_export import export_via_router

    if cluster is None:
        raise CliError("--as-of-position needs --cluster")
    if as_of_seq is not None:
        raise CliError("a cluster export is reproduced with --as-of-position, not --as-of-seq")
    if (entities is None) == (entities_as_of is None):
        raise CliError("give exactly one of --entities and --entities-as-of")
    if entities is not None and not entities.is_file():
        raise CliError(f"--entities {entities}: no such file")
    instant = None if entities_as_of is None else _instant(entities_as_of)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = export_via_router(cluster, entities, refs, out, as_of_position, instant)
    position = json.dumps(info["position"], separators=(",", ":"))
    console.print(
        f"exported {info['rows']:,} rows to {out} at position {position} "
        f"(reproduce with --as-of-position '{position}')"
    )


def _instant(text: str) -> float | str:
    """--entities-as-of as the store takes it: a number is Unix epoch seconds; other text is
    passed on as ISO 8601, which the store parses and refuses with a message if malformed."""
    try:
        return float(text)
    except ValueError:
        return text
