"""The `rickhouse` command line (typer). Every command takes `--root` (or RICKHOUSE_ROOT).

Commands that work on the data open the store in this process, so they need the root's writer
lock: while `rickhouse serve` runs on a root, use its HTTP API instead (the error says so).
Heavy imports (the store, numba kernels, uvicorn) happen inside the commands, so `--help` is fast.
Output goes to the terminal through rich; failures print one clear line and exit non-zero.
This module holds the typer app, `apply`, `serve` and `demo`, and registers every command in help
order: the data commands live in app/data_cli.py, the administrative ones in app/admin_cli.py,
the cluster ones in app/cluster_cli.py, and what they share in app/cli_context.py.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from app import admin_cli, data_cli
from app.cli_context import RootOption, _run, console, open_store
from app.settings import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_ROOT

cli = typer.Typer(
    help="rickhouse: a feature store with a learned-index online store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cli.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log INFO messages.")] = False,
) -> None:
    """rickhouse command line."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def apply(
    file: Annotated[
        Path, typer.Argument(help="Definitions YAML file.", exists=True, dir_okay=False)
    ],
    root: RootOption = Path(DEFAULT_ROOT),
    cluster: Annotated[
        Path | None,
        typer.Option(
            "--cluster", help="cluster.yaml: apply to the whole cluster through its router."
        ),
    ] = None,
) -> None:
    """Apply feature definitions (entities, feature views, services, push sources)."""
    if cluster is not None:
        from app.cluster_cli import apply_to_cluster

        apply_to_cluster(file, cluster)
        return

    def body() -> None:
        with open_store(root) as fs:
            changes = fs.apply(str(file))
        console.print(f"applied {file} to {root}")
        console.print_json(json.dumps(changes, default=str))

    _run(body)


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


# The commands, in the order `rickhouse --help` lists them: data commands (app/data_cli.py),
# administrative ones (app/admin_cli.py), and those defined here.
cli.command()(apply)
cli.command()(data_cli.ingest)
cli.command()(serve)
cli.command()(data_cli.get)
cli.command()(data_cli.export)
cli.command()(admin_cli.audit)
cli.command()(admin_cli.stats)
cli.command("offline-files")(data_cli.offline_files)
cli.command()(admin_cli.compact)
cli.command()(data_cli.delete)
cli.command()(data_cli.forget)
cli.command()(demo)


def _register_cluster_commands() -> None:
    """`rickhouse node` and `rickhouse cluster ...` (app/cluster_cli.py)."""
    from app.cluster_cli import register

    register(cli)


_register_cluster_commands()


def main() -> None:
    """Console-script entry point (`rickhouse = "app.cli:main"`)."""
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
