"""Terminal rendering of a published snapshot listing (`rickhouse offline-files VIEW`).

The listing itself is `FeatureStore.offline_files` (store/published.py); this module only prints
it for a person: the files, the schema, the row filter and how to read the timestamps. Pure
output; no state.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render_listing(listing: dict[str, Any], console: Console) -> None:
    """Print `listing` as two tables (files, schema) and the reading rules under them."""
    n = listing["as_of_seq"]
    console.print(
        f"[bold]{listing['view']}[/] as of seq {n}: {len(listing['files'])} files, "
        f"{listing['rows']:,} rows before the filter (complete to seq "
        f"{listing['complete_to_seq']}; keys {', '.join(listing['keys'])}; "
        f"ttl {listing['ttl_s']:g} s)",
        highlight=False,
    )
    files = Table("path", "date", "rows", "bytes", "seqs")
    for f in listing["files"]:
        files.add_row(
            f["path"],
            f["date"],
            f"{f['rows']:,}",
            f"{f['bytes']:,}",
            f"{f['min_seq']}-{f['max_seq']}",
        )
    console.print(files)
    schema = Table("column", "type", "nullable")
    for c in listing["schema"]:
        schema.add_row(c["name"], c["type"], "yes" if c["nullable"] else "no")
    console.print(schema)
    needed = "" if listing["filter_needed"] else " (no listed file holds a later seq)"
    console.print(f"row filter: [bold]{listing['row_filter']}[/]{needed}", highlight=False)
    console.print(f"latest per entity: the max of ({', '.join(listing['version_order'])})")
    console.print(f"timestamps: {listing['timestamps']['encoding']}", highlight=False)
    console.print(
        f"replaced files stay on disk {listing['grace_s']:g} s; --json prints all of this as JSON",
        highlight=False,
    )
