"""The `rickhouse` command line (typer). Every command takes `--root` (or RICKHOUSE_ROOT).

Commands that work on the data open the store in this process, so they need the root's writer
lock: while `rickhouse serve` runs on a root, use its HTTP API instead (the error says so).
Heavy imports (the store, numba kernels, uvicorn) happen inside the commands, so `--help` is fast.
Output goes to the terminal through rich; failures print one clear line and exit non-zero.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from app.settings import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_ROOT

if TYPE_CHECKING:
    from store import Definitions, FeatureStore

cli = typer.Typer(
    help="rickhouse: a feature store with a learned-index online store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

RootOption = Annotated[
    Path,
    typer.Option(
        "--root", envvar="RICKHOUSE_ROOT", help="Store root directory.", show_default=True
    ),
]


class CliError(Exception):
    """A failure to report in one line (exit code 1)."""


@contextmanager
def open_store(root: Path) -> Iterator[FeatureStore]:
    """The store at `root`, closed on exit; errors become one clear line."""
    from store import FeatureStore
    from store.errors import WriterLockedError

    try:
        fs = FeatureStore(root)
    except WriterLockedError as exc:
        raise CliError(
            f"{exc}\nAnother process (a running `rickhouse serve`?) holds the writer lock of "
            f"{root}; stop it, or use its HTTP API (curl .../v1/stats, /get-online-features)."
        ) from None
    try:
        yield fs
    finally:
        fs.close()


def _run(fn: Any) -> Any:
    """Run a command body, turning expected errors into one red line and exit code 1."""
    from app.errors import ApiError
    from app.input_files import FileFormatError
    from store.errors import StoreError

    try:
        return fn()
    except (CliError, StoreError, ApiError, FileFormatError, FileNotFoundError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _definitions(fs: FeatureStore) -> Definitions:
    from store import Definitions

    return Definitions.from_dict(fs.definitions())


@cli.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log INFO messages.")] = False,
) -> None:
    """rickhouse command line."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
def apply(
    file: Annotated[
        Path, typer.Argument(help="Definitions YAML file.", exists=True, dir_okay=False)
    ],
    root: RootOption = Path(DEFAULT_ROOT),
) -> None:
    """Apply feature definitions (entities, feature views, services, push sources)."""

    def body() -> None:
        with open_store(root) as fs:
            changes = fs.apply(str(file))
        console.print(f"applied {file} to {root}")
        console.print_json(json.dumps(changes, default=str))

    _run(body)


@cli.command()
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


@cli.command()
def serve(
    root: RootOption = Path(DEFAULT_ROOT),
    host: Annotated[str, typer.Option(envvar="RICKHOUSE_HOST")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar="RICKHOUSE_PORT")] = DEFAULT_PORT,
    log_level: Annotated[str, typer.Option(envvar="RICKHOUSE_LOG_LEVEL")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request (slower).")] = False,
) -> None:
    """Serve the REST API (Feast-compatible + /v1) with uvicorn, uvloop and httptools."""
    import uvicorn

    from app.server import create_app
    from app.settings import Settings

    settings = Settings.from_env(root=root, host=host, port=port, log_level=log_level)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` prints every thread's stack to stderr
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    console.print(
        f"rickhouse serving {root} on http://{host}:{port}  (docs: http://{host}:{port}/docs)"
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=access_log,
        workers=1,  # one writer per root
    )


@cli.command()
def get(
    features: Annotated[list[str], typer.Argument(help="VIEW:FEATURE refs, or one service name.")],
    entity: Annotated[
        list[str], typer.Option("--entity", "-e", help="KEY=V1,V2,... (repeat for composite keys).")
    ],
    root: RootOption = Path(DEFAULT_ROOT),
    full_feature_names: Annotated[bool, typer.Option(help="Name columns view__feature.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print Feast's JSON shape.")] = False,
) -> None:
    """Read online features for some entities."""
    from app.errors import BadRequestError
    from app.feast_json import feast_json
    from app.payloads import check_columns

    def body() -> None:
        entities: dict[str, list] = {}
        for item in entity:
            key, sep, values = item.partition("=")
            if not sep or not key:
                raise BadRequestError(f"--entity {item!r}: use KEY=V1,V2,...")
            entities[key] = values.split(",")
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


@cli.command()
def export(
    entities: Annotated[
        Path, typer.Option(help="Entity rows: .parquet or .csv with join keys + event_timestamp.")
    ],
    features: Annotated[list[str], typer.Option(help="VIEW:FEATURE (repeat, or comma-separated).")],
    out: Annotated[Path, typer.Option(help="Output Parquet file.")],
    root: RootOption = Path(DEFAULT_ROOT),
    as_of_seq: Annotated[
        int | None, typer.Option(min=0, help="Reproduce an earlier export.")
    ] = None,
) -> None:
    """Point-in-time correct training export to Parquet; prints the seq it was taken at."""
    from app import input_files

    refs = [r for item in features for r in item.split(",") if r]

    def body() -> None:
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


@cli.command()
def audit(root: RootOption = Path(DEFAULT_ROOT)) -> None:
    """Compare offline latest rows with the online engine, per view (exit 1 on any mismatch)."""

    def body() -> None:
        with open_store(root) as fs:
            result = fs.audit()
        table = Table("view", "entities", "mismatches", "details")
        bad = 0
        for view, info in sorted(result.items()):
            mismatches = int(info.get("mismatches", 0))
            bad += mismatches
            extra = {k: v for k, v in info.items() if k not in ("entities", "mismatches")}
            table.add_row(
                view, str(info.get("entities", "")), str(mismatches), json.dumps(extra, default=str)
            )
        console.print(table)
        if bad:
            raise CliError(f"audit found {bad} mismatches")
        console.print("[green]audit: online and offline agree[/]")

    _run(body)


@cli.command()
def stats(root: RootOption = Path(DEFAULT_ROOT)) -> None:
    """Commit log, online and offline store statistics, as JSON."""

    def body() -> None:
        with open_store(root) as fs:
            result = fs.stats()
        console.print_json(json.dumps(result, default=_json_default))

    _run(body)


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


@cli.command()
def compact(root: RootOption = Path(DEFAULT_ROOT)) -> None:
    """Run every pending compaction now (online and offline)."""

    def body() -> None:
        with open_store(root) as fs:
            start = time.perf_counter()
            fs.compact()
        console.print(f"compacted {root} in {time.perf_counter() - start:.2f} s")

    _run(body)


@cli.command()
def demo(
    root: RootOption = Path(DEFAULT_ROOT),
    rows: Annotated[int, typer.Option(min=100, help="Rows over all views.")] = 1_200_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    batch_rows: Annotated[int, typer.Option(min=1000, help="Rows per ingest batch.")] = 200_000,
    force: Annotated[bool, typer.Option(help="Ingest again even if the demo is loaded.")] = False,
    port: Annotated[
        int, typer.Option(envvar="RICKHOUSE_PORT", help="Port for the examples.")
    ] = DEFAULT_PORT,
) -> None:
    """Load a deterministic recommendation data set (users, items, user x item; 30 days)."""
    from app.demo import plan
    from app.demo.run import load, print_examples

    def body() -> None:
        p = plan(rows, seed, batch_rows)
        with open_store(root) as fs:
            load(fs, p, console, force=force)
        print_examples(console, port)

    _run(body)


def main() -> None:
    """Console-script entry point (`rickhouse = "app.cli:main"`)."""
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
