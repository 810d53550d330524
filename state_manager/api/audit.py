"""`GET /v0/audit`: the audit log (issue 19), for the root key or an admin of all namespaces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from state_manager.api.openapi_docs import errors
from state_manager.api.runs import epoch_ms
from state_manager.schemas.audit import AuditPage, AuditRecordView
from state_manager.services import audit

router = APIRouter(tags=["keys"])


def _view(doc: dict[str, Any]) -> AuditRecordView:
    return AuditRecordView(
        at=datetime.fromtimestamp(doc["at_ms"] / 1000, tz=UTC).isoformat(),
        key_id=doc.get("key_id"),
        key_name=doc["key_name"],
        role=doc["role"],
        action=doc["action"],
        namespace=doc.get("namespace"),
        target=doc.get("target") or {},
        request_id=doc.get("request_id"),
        client=doc.get("client"),
        status=doc["status"],
    )


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="Read the audit log",
    responses=errors(400, 403, e400="A bad limit or time"),
)
async def read_audit(
    namespace: str | None = None,
    action: Annotated[str | None, Query(description="e.g. run.cancel, graph.upsert, key.create")] = None,
    key: Annotated[str | None, Query(description="a key's id or name (root: the server key)")] = None,
    since: Annotated[str | None, Query(description="at or after: epoch ms or ISO 8601")] = None,
    until: Annotated[str | None, Query(description="before: epoch ms or ISO 8601")] = None,
    limit: Annotated[int, Query(description="records per page, 1-1000")] = 100,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> AuditPage:
    """Every state-changing call (graph upserts and deletes, triggers, cancels, retries, forks,
    `states/create`, key creates and revokes, dashboard logins and failed logins), newest first:
    when, which key (id, name, role), what, in which namespace, on what, the request id, the
    client's address and the answer's status code. Records are never changed through the API."""
    found, next_cursor = await audit.read(
        namespace=namespace,
        action=action,
        key=key,
        since_ms=epoch_ms(since, "since"),
        until_ms=epoch_ms(until, "until"),
        limit=limit,
        cursor=cursor,
    )
    return AuditPage(records=[_view(doc) for doc in found], next_cursor=next_cursor)
