"""`exosphere keys create | list | revoke` and `exosphere audit`: scoped API keys and the audit
log (our server; the root key or an admin key of all namespaces; see docs/access.md)."""

from __future__ import annotations

from typing import Any

import click

from ..state_manager import StateManager
from .inputs import parse_since
from .output import Output, iso_text
from .session import call, command_options, config

__all__ = ["audit", "keys"]

ROLES = ("viewer", "operator", "worker", "admin")


@click.group()
def keys() -> None:
    """Scoped API keys: a role (viewer, operator, worker, admin) in some namespaces."""


@keys.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the key may do")
@click.option(
    "--ns",
    "key_namespaces",
    multiple=True,
    metavar="NS",
    help="A namespace the key may touch (repeat it for several; '*' for all). Default: --namespace",
)
@command_options
def create_key(name: str, role: str, key_namespaces: tuple[str, ...]) -> None:
    """Make a key for --namespace NS (or the namespaces of --ns, repeated; '*' for all). It is
    printed this once: the server keeps only its hash.

    \b
    Examples:
      exosphere keys create web-runtime --role worker --namespace web
      exosphere keys create support --role viewer --ns '*'
      exosphere keys create ci-deploy --role admin --ns web --ns billing
    """
    cfg = config()
    out = Output(cfg)
    chosen = list(key_namespaces) or ([cfg.namespace] if cfg.namespace else [])
    if not chosen:
        raise click.UsageError(
            "name the key's namespaces: --namespace NS, or --ns NS (repeated; '*' for all)"
        )

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.create_key(name, role, chosen)

    made = call(cfg, work, namespace=cfg.namespace or "default")
    if out.json:
        out.result(made)
        return
    out.fields(
        [
            ("key", made["key"]),
            ("id", made["id"]),
            ("name", made["name"]),
            ("role", made["role"]),
            ("namespaces", ", ".join(made["namespaces"])),
        ]
    )
    out.line()
    out.line("Keep the key now: it is not shown again (revoke it with `exosphere keys revoke ID`).")


@keys.command("list")
@command_options
def list_keys() -> None:
    """Every key, newest first (revoked and expired ones too); never a key's secret."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> list[dict[str, Any]]:
        return await sm.list_keys()

    found = call(cfg, work, namespace=cfg.namespace or "default")
    if out.json:
        out.result(found)
        return
    rows = [
        [
            k["id"],
            k["name"],
            k["role"],
            ", ".join(k["namespaces"]),
            iso_text(k.get("created_at")),
            "revoked"
            if k.get("revoked_at")
            else (f"expires {iso_text(k['expires_at'])}" if k.get("expires_at") else "active"),
        ]
        for k in found
    ]
    out.table(["id", "name", "role", "namespaces", "created", "state"], rows)


@keys.command("revoke")
@click.argument("key_id", metavar="ID")
@command_options
def revoke_key(key_id: str) -> None:
    """Revoke a key: refused at once here, and on every replica within seconds."""
    cfg = config()
    out = Output(cfg)

    async def work(sm: StateManager) -> dict[str, Any]:
        return await sm.revoke_key(key_id)

    revoked = call(cfg, work, namespace=cfg.namespace or "default")
    if out.json:
        out.result(revoked)
        return
    out.line(
        f"revoked {revoked['id']} ({revoked['name']}, {revoked['role']}) at {iso_text(revoked['revoked_at'])}"
    )


@click.command()
@click.option("--ns", "in_namespace", metavar="NS", help="Only calls in this namespace")
@click.option(
    "--action", metavar="ACTION", help="Only this action, e.g. run.cancel, graph.upsert, key.create"
)
@click.option(
    "--by", "by", metavar="KEY", help="Only calls made with this key (its id or name; root: the server key)"
)
@click.option("--since", metavar="WHEN", help="Since: 30m, 1h30m, 1d, epoch ms or ISO 8601")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Records at most"
)
@command_options
def audit(
    in_namespace: str | None, action: str | None, by: str | None, since: str | None, limit: int
) -> None:
    """Who did what: the audit log of state-changing calls, newest first.

    \b
    Examples:
      exosphere audit --action run.cancel --since 1d
      exosphere audit --by ci-deploy -o json
    """
    cfg = config()
    out = Output(cfg)
    since_ms = parse_since(since)

    async def work(sm: StateManager) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(records) < limit:
            page = await sm.read_audit(
                namespace=in_namespace,
                action=action,
                key=by,
                since=since_ms,
                limit=min(1000, limit - len(records)),
                cursor=cursor,
            )
            records += page["records"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return records

    found = call(cfg, work, namespace=cfg.namespace or "default")
    if out.json:
        out.result(found)
        return
    if not found:
        out.line("no records")
        return
    rows = [
        [
            iso_text(r["at"]),
            r["key_name"],
            r["role"],
            r["action"],
            r.get("namespace") or "-",
            " ".join(f"{kind}={value}" for kind, value in (r.get("target") or {}).items()) or "-",
            str(r["status"]),
            r.get("client") or "-",
        ]
        for r in found
    ]
    out.table(["at", "key", "role", "action", "namespace", "target", "status", "client"], rows)
