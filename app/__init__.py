"""app: the HTTP servers and the `rickhouse` command line, the only package that speaks HTTP.

Entry points: `app.server.create_app` (the single-node feature server, `rickhouse serve`),
`app.cli:main` (the `rickhouse` command), `app.node_server` and `app.router_server` (a cluster's
node and router). Wire formats (Feast's JSON, Arrow IPC bodies) and the mapping of errors to HTTP
statuses live here; nothing below this package knows HTTP. Nothing is re-exported: importing
`app` stays cheap, so `rickhouse --help` answers at once.
"""

__all__: list[str] = []
