"""Cluster commands of the `rickhouse` CLI: `node`, `router`, `cluster init|status|up`.

`register(cli)` adds them to the main typer app (app/cli.py). Heavy imports happen inside the
commands. `cluster status` asks every node's `/v1/positions` (bounded timeout) and prints per
node: alive, and per partition the applied offset, lag and when it last applied a record;
`--json` prints the same as JSON. Exit code 1 when a node is down or a partition has no live
owner, so scripts can wait on it.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="cluster.yaml", exists=True, dir_okay=False)]
ServersOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        help="Kafka bootstrap servers; overrides kafka.bootstrap_servers (needed when it is "
        "'embedded').",
    ),
]


def _load(path: Path) -> Any:
    from cluster.config import ClusterConfig

    return ClusterConfig.load(path)


def _servers(config: Any, override: str | None) -> str:
    if override:
        return override
    if config.kafka.embedded:
        raise typer.BadParameter(
            "kafka.bootstrap_servers is 'embedded': pass --bootstrap-servers of a running broker"
        )
    return str(config.kafka.bootstrap_servers)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def node(
    cluster: Annotated[Path, typer.Option("--cluster", help="cluster.yaml", exists=True)],
    name: Annotated[str, typer.Option("--name", help="This node's name in cluster.yaml.")],
    bootstrap_servers: ServersOption = None,
    log_level: Annotated[str, typer.Option(envvar="RICKHOUSE_LOG_LEVEL")] = "info",
) -> None:
    """Run a cluster node: consume its partitions into its tablets and serve them on its url."""
    from app.node_server import run_node
    from cluster.errors import ClusterError

    try:
        config = _load(cluster)
        me = config.node(name)
        servers = _servers(config, bootstrap_servers)
    except ClusterError as e:
        _fail(str(e))
    console.print(f"rickhouse node {name}: partitions {list(me.partitions)} on {me.url}")
    run_node(config, name, servers, log_level)


def router(
    cluster: Annotated[Path, typer.Option("--cluster", help="cluster.yaml", exists=True)],
    bootstrap_servers: ServersOption = None,
    log_level: Annotated[str, typer.Option(envvar="RICKHOUSE_LOG_LEVEL")] = "info",
) -> None:
    """Run the cluster's router: the whole public API (Feast's and /v1) on router.url."""
    from app.router_server import run_router
    from cluster.errors import ClusterError

    try:
        config = _load(cluster)
        servers = _servers(config, bootstrap_servers)
    except ClusterError as e:
        _fail(str(e))
    console.print(f"rickhouse router for {len(config.nodes)} nodes on {config.router.url}")
    run_router(config, servers, log_level)


def cluster_up(
    config_path: ConfigArg,
    log_dir: Annotated[
        Path | None, typer.Option(help="Children's logs (default: cluster-logs/ beside the file).")
    ] = None,
) -> None:
    """Start every node and the router as children (and the test broker if 'embedded');
    Ctrl-C stops them."""
    from app.cluster_up import cluster_up as up
    from cluster.errors import ClusterError

    try:
        code = up(config_path, log_dir)
    except ClusterError as e:
        _fail(str(e))
    raise typer.Exit(code)


def apply_to_cluster(file: Path, config_path: Path) -> None:
    """`rickhouse apply FILE --cluster CONFIG` (app/cluster_up.py)."""
    from app.cluster_up import apply_to_cluster as apply

    apply(file, config_path)


def cluster_init(config_path: ConfigArg, bootstrap_servers: ServersOption = None) -> None:
    """Create the cluster's topic with its partition count (idempotent; refuses another count)."""
    from cluster.errors import ClusterError
    from cluster.topic import ensure_topic

    try:
        config = _load(config_path)
        created = ensure_topic(
            _servers(config, bootstrap_servers), config.kafka.topic, config.partitions
        )
    except ClusterError as e:
        _fail(str(e))
    verb = "created" if created else "already exists:"
    console.print(f"topic {config.kafka.topic} {verb} {config.partitions} partitions")


def node_states(config: Any, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """Each node's `/v1/positions` answer, or {"alive": False, "error": ...}, in config order."""
    import httpx

    def ask(n: Any) -> dict[str, Any]:
        try:
            r = httpx.get(f"{n.url}/v1/positions", timeout=timeout_s)
            r.raise_for_status()
            return {"name": n.name, "url": n.url, "alive": True, **r.json()}
        except (httpx.HTTPError, ValueError) as e:
            return {"name": n.name, "url": n.url, "alive": False, "error": str(e)}

    with ThreadPoolExecutor(max(1, min(16, len(config.nodes)))) as pool:
        return list(pool.map(ask, config.nodes))


def cluster_status(
    config_path: ConfigArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each node.")] = 2.0,
) -> None:
    """Per node: alive, partitions, applied offset and lag per partition, last applied."""
    from cluster.errors import ClusterError

    try:
        config = _load(config_path)
    except ClusterError as e:
        _fail(str(e))
    states = node_states(config, timeout)
    live = {p for s in states if s["alive"] for p in s.get("partitions", {})}
    orphans = [p for p in range(config.partitions) if str(p) not in live]
    if as_json:
        console.print_json(json.dumps({"nodes": states, "partitions_without_live_owner": orphans}))
    else:
        _print_status(config, states, orphans)
    if orphans or not all(s["alive"] for s in states):
        raise typer.Exit(1)


def _print_status(config: Any, states: list[dict[str, Any]], orphans: list[int]) -> None:
    t = Table("node", "alive", "partition", "applied offset", "lag", "last applied", "notes")
    now = time.time()
    for s in states:
        if not s["alive"]:
            parts = config.node(s["name"]).partitions
            t.add_row(s["name"], "[red]down[/red]", str(list(parts)), "", "", "", s["error"][:80])
            continue
        broker = s.get("broker", {})
        note = "" if broker.get("connected") is not False else f"broker: {broker.get('error')}"
        for p, ps in s["partitions"].items():
            last = ps.get("last_applied_at")
            ago = "never" if last is None else f"{now - last:.1f} s ago"
            lag = "?" if ps.get("lag") is None else str(ps["lag"])
            extra = ps.get("failed") or (f"{ps['refused']} refused" if ps.get("refused") else "")
            t.add_row(s["name"], "yes", p, str(ps["applied_offset"]), lag, ago, extra or note)
    console.print(t)
    if orphans:
        console.print(f"[red]partitions without a live owner: {orphans}[/red]")


def register(cli: typer.Typer) -> None:
    """Add `node` and the `cluster` group to the main CLI."""
    cli.command("node")(node)
    cli.command("router")(router)
    group = typer.Typer(help="Cluster (preview): topic, status, up.", no_args_is_help=True)
    group.command("init")(cluster_init)
    group.command("status")(cluster_status)
    group.command("up")(cluster_up)
    cli.add_typer(group, name="cluster")
