"""`exosphere graph apply | list | get | delete`."""

from __future__ import annotations

from typing import IO, Any

import click

from ..state_manager import StateManager
from .durations import Duration
from .inputs import load_document, substitute_secrets
from .output import Output, iso_text
from .session import Failed, call, command_options, config

__all__ = ["graph"]


@click.group()
def graph() -> None:
    """Create, list and read graph templates."""


@graph.command("apply")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--timeout",
    type=Duration("s"),
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="How long to wait for the validation, e.g. 30s or 2m; a bare number is seconds",
)
@click.option("--dry-run", is_flag=True, help="Only validate: print the verdict and store nothing")
@command_options
def apply(file: IO[str], timeout: float, dry_run: bool) -> None:
    """Create or replace a graph from a JSON or YAML FILE (`-` for stdin).

    FILE holds the body of `PUT /graph/{name}` plus its `name`: nodes, secrets, retry_policy,
    store_config, triggers. A secret value may be written `${ENV_VAR}`: it is read from the
    environment. Waits for the validation, prints its errors and exits 1 if the graph is INVALID
    (a graph that was valid then keeps its previous version live: triggers go on using it).
    With --dry-run the server only validates it.

    \b
    Example:
      exosphere graph apply graph.yaml
      exosphere graph apply --dry-run graph.yaml
    """
    cfg = config()
    out = Output(cfg)
    what = getattr(file, "name", "FILE")
    document = load_document(file, "FILE")
    name = document.pop("name", None)
    if not isinstance(name, str) or not name.strip():
        raise click.BadParameter(f"{what} has no `name` (the graph's name)", param_hint="FILE")
    if "secrets" in document:
        document["secrets"] = substitute_secrets(document["secrets"], what)
    else:
        document["secrets"] = {}

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.apply_graph(name.strip(), document, validation_timeout=timeout, validate_only=dry_run)

    result = call(cfg, work)
    _show_graph(out, result, brief=True)
    status = result.get("validation_status")
    errors = result.get("validation_errors") or []
    if status != "VALID":
        lines = "".join(f"\n  - {error}" for error in errors)
        kept = (
            "\n  its previous valid version stays live" if result.get("live") is False and not dry_run else ""
        )
        raise Failed(f"graph {result.get('name')} is {status}{lines}{kept}")
    if dry_run and not out.json:
        out.line(f"graph {result.get('name')} is VALID (dry run: nothing stored)")


@graph.command("list")
@command_options
def list_graphs() -> None:
    """List the graph templates of the namespace."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> list[dict[str, Any]]:
        return await sm.list_graphs()

    graphs = call(cfg, work)
    if out.json:
        out.result(graphs)
        return
    rows = [
        [
            str(g.get("name")),
            str(g.get("validation_status")),
            str(len(g.get("nodes") or [])),
            ", ".join(g.get("secrets") or {}) or "-",
            iso_text(g.get("updated_at")),
        ]
        for g in graphs
    ]
    out.table(["name", "status", "nodes", "secrets", "updated"], rows, status_columns=[1])


@graph.command("get")
@click.argument("name")
@command_options
def get(name: str) -> None:
    """Show one graph template: its nodes, policy, triggers and validation."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.get_graph(name)

    _show_graph(out, call(cfg, work), brief=False)


@graph.command("delete")
@click.argument("name")
@click.option(
    "--force", is_flag=True, help="Cancel the graph's open runs first (else refused while it has some)"
)
@command_options
def delete(name: str, force: bool) -> None:
    """Delete a graph template and its cron schedules. Refused while the graph has open runs,
    unless --force, which cancels them. Finished runs stay readable."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.delete_graph(name, force=force)

    result = call(cfg, work)
    if out.json:
        out.result(result)
        return
    cancelled = int(result.get("cancelled_runs") or 0)
    out.line(f"graph {name} deleted" + (f"; {cancelled} open run(s) cancelled" if cancelled else ""))


def _show_graph(out: Output, g: dict[str, Any], *, brief: bool) -> None:
    if out.json:
        out.result(g)
        return
    nodes = g.get("nodes") or []
    pairs = [
        ("graph", str(g.get("name"))),
        ("namespace", str(g.get("namespace"))),
        ("status", str(g.get("validation_status"))),
        ("nodes", str(len(nodes))),
        ("secrets", ", ".join(g.get("secrets") or {}) or "-"),
        ("updated", iso_text(g.get("updated_at"))),
    ]
    candidate = g.get("candidate")
    if candidate:
        errors = len(candidate.get("validation_errors") or [])
        since = iso_text(candidate.get("updated_at"))
        pairs.append(("waiting upsert", f"INVALID ({errors} error(s)) since {since}: live once it validates"))
    if not brief:
        policy = g.get("retry_policy") or {}
        pairs.append(("retry policy", ", ".join(f"{k}={v}" for k, v in policy.items()) or "-"))
        crons = [str((t.get("value") or {}).get("expression")) for t in g.get("triggers") or []]
        pairs.append(("cron triggers", ", ".join(crons) or "-"))
    out.fields(pairs)
    if brief:
        return
    out.line()
    rows = [
        [
            str(n.get("identifier")),
            str(n.get("node_name")),
            ", ".join(n.get("next_nodes") or []) or "-",
            str((n.get("unites") or {}).get("identifier") or "-"),
        ]
        for n in nodes
    ]
    out.table(["identifier", "node", "next", "unites"], rows)
    for error in g.get("validation_errors") or []:
        out.line(f"error: {error}")
