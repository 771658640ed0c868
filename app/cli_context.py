"""What every `rickhouse` command shares: the terminal consoles, the `--root` option, CliError,
`open_store` (the store at a root, with the writer-lock hint) and `_run` (expected errors become
one red line and exit code 1).

Invariant: a command that opens the store closes it before it returns, whatever happens. The
consoles are process-wide; commands run one at a time in the CLI's process (no locking).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from store import Definitions, FeatureStore

__all__ = ["CliError", "RootOption", "console", "err", "open_store"]

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


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)
