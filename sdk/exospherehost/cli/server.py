"""`exosphere ping | nodes | queues | ui`: the server and what runs against it."""

from __future__ import annotations

import time
import webbrowser
from typing import Any
from urllib.parse import quote

import click

from ..state_manager import StateManager
from .output import Output, iso_text, time_text
from .session import URL_ENV, Failed, call, command_options, config

__all__ = ["nodes", "ping", "queues", "ui"]


@click.command()
@command_options
def ping() -> None:
    """Check that the server is up (GET /health) and accepts the API key."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        started = time.perf_counter()
        health = await sm.health()
        health_ms = (time.perf_counter() - started) * 1000
        namespaces = await sm.list_namespaces()  # needs the key
        return {
            "url": cfg.url,
            "status": "ok",
            "health": health.get("message", health),
            "health_ms": round(health_ms, 1),
            "key": "accepted",
            "namespaces": namespaces,
        }

    # The namespace is not used by these two calls: any name builds the client.
    answer = call(cfg, work, namespace=cfg.namespace or "default")
    if out.json:
        out.result(answer)
        return
    out.fields(
        [
            ("server", f"{answer['url']} is up ({answer['health_ms']} ms)"),
            ("API key", "accepted"),
            ("namespaces", ", ".join(answer["namespaces"]) or "-"),
        ]
    )


@click.command()
@command_options
def nodes() -> None:
    """List the nodes registered in the namespace."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> list[dict[str, Any]]:
        return await sm.list_nodes()

    found = call(cfg, work)
    if out.json:
        out.result(found)
        return
    rows = [
        [
            str(n.get("name")),
            str(n.get("runtime_name")),
            _fields(n.get("inputs_schema")),
            _fields(n.get("outputs_schema")),
            ", ".join(n.get("secrets") or []) or "-",
            iso_text(n.get("updated_at")),
        ]
        for n in found
    ]
    out.table(["node", "runtime", "inputs", "outputs", "secrets", "updated"], rows)


@click.command(short_help="Queue health per node.")
@command_options
def queues() -> None:
    """Queue health per node: due backlog and its age, whether a runtime is polling.

    Exits 1 if a node is stalled: work has been due longer than the server's
    QUEUE_STALL_SECONDS and no runtime asked for it.
    """
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.queue_health()

    view = call(cfg, work)
    rows_in: list[dict[str, Any]] = view.get("nodes") or []
    if out.json:
        out.result(rows_in)
    else:
        _queues_table(out, rows_in, view.get("now_ms"))
    stalled = [str(r.get("node_name")) for r in rows_in if r.get("stalled")]
    if stalled:
        raise Failed(
            f"stalled (work due, no runtime asked for it in {view.get('stall_after_seconds')}s): "
            + ", ".join(stalled)
        )


def _queues_table(out: Output, rows_in: list[dict[str, Any]], now_ms: int | None) -> None:
    rows = [
        [
            str(r.get("node_name")),
            "yes" if r.get("registered") else "no",
            str(r.get("due")),
            _age(r.get("oldest_due_age_seconds")),
            str(r.get("delayed")),
            str(r.get("claimed")),
            _age(r.get("last_poll_age_seconds"), suffix=" ago"),
            "STALLED" if r.get("stalled") else "-",
        ]
        for r in rows_in
    ]
    headers = ["node", "registered", "due", "oldest due", "delayed", "claimed", "last poll", "stalled"]
    out.table(headers, rows)
    out.note(f"as of {time_text(now_ms)}")


@click.command(short_help="Print or open the dashboard page.")
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser")
@command_options
def ui(run_id: str | None, open_browser: bool) -> None:
    """Print (or open) the dashboard page of the namespace's runs, or of one RUN."""
    cfg = config()
    out = Output(cfg)
    if not cfg.url:
        raise click.UsageError(f"No server URL: pass --url or set {URL_ENV}")
    namespace = cfg.require_namespace()
    url = f"{cfg.url.rstrip('/')}/ui/ns/{quote(namespace, safe='')}/runs"
    if run_id:
        url += f"/{quote(run_id, safe='')}"
    if out.json:
        out.result({"url": url})
    else:
        out.line(url)
    if open_browser and not webbrowser.open(url):
        out.note("warning: could not open a web browser")


def _fields(schema: Any) -> str:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return ", ".join(properties) if isinstance(properties, dict) and properties else "-"


def _age(seconds: float | None, suffix: str = "") -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s{suffix}"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m{suffix}"
    return f"{seconds / 3600:.1f}h{suffix}"
