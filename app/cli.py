"""The `rickhouse` command line. Commands arrive with the serving issue."""

import typer

cli = typer.Typer(help="rickhouse: a feature store with a learned-index online store.")


@cli.callback()
def _root() -> None:
    """rickhouse command line."""


def main() -> None:
    cli()
