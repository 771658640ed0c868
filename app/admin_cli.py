"""The administrative commands of `rickhouse`: `audit`, `stats` and `compact`. app/cli.py
registers them on the main typer app, in its help's order.

Each opens the store in this process (the root's writer lock) through `open_store` and reports
failures through `_run` (app/cli_context.py). Runs on the CLI's one thread.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table

from app.cli_context import (
    CliError,
    RootOption,
    _json_default,
    _run,
    console,
    open_store,
)
from app.settings import DEFAULT_ROOT

__all__ = ["audit", "compact", "stats"]


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


def stats(root: RootOption = Path(DEFAULT_ROOT)) -> None:
    """Commit log, online and offline store statistics, as JSON."""

    def body() -> None:
        with open_store(root) as fs:
            result = fs.stats()
        console.print_json(json.dumps(result, default=_json_default))

    _run(body)


def compact(root: RootOption = Path(DEFAULT_ROOT)) -> None:
    """Run every pending compaction now (online and offline)."""

    def body() -> None:
        with open_store(root) as fs:
            start = time.perf_counter()
            fs.compact()
        console.print(f"compacted {root} in {time.perf_counter() - start:.2f} s")

    _run(body)
