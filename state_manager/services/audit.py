"""The audit log (issue 19): every state-changing call, who made it and what it answered.

Written once per call (by `api/audit_trail.py` for the API, by the dashboard for its own
actions and logins), never changed through any API, kept for AUDIT_RETENTION (the retention
pass deletes older records). Read newest first, paged by a cursor, through one range of one
indexed field (`order`: the time, then the record's id); the filters are checked on the records
of that range.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db.documents import AuditRecord
from state_manager.domain.access import Principal
from state_manager.errors import BadRequest
from state_manager.services.context import AppContext

log = structlog.get_logger(__name__)

MAX_LIMIT = 1000
_KEY_ID = re.compile(r"[0-9a-f]{16}")


async def record(
    principal: Principal,
    action: str,
    status: int,
    *,
    namespace: str | None = None,
    target: dict[str, str] | None = None,
    request_id: str | None = None,
    client: str | None = None,
) -> None:
    """Write one record. A failure to write is logged, never raised: the call it records has
    already been answered."""
    at = now_ms()
    oid = ObjectId()
    doc = {
        "_id": oid,
        "at_ms": at,
        "key_id": principal.key_id,
        "key_name": principal.name,
        "role": principal.role.value,
        "action": action,
        "namespace": namespace,
        "target": target or {},
        "request_id": request_id,
        "client": client,
        "status": status,
        "order": f"{at:013d}:{oid}",
    }
    try:
        await AuditRecord.get_motor_collection().insert_one(doc)
    except Exception:
        log.exception("audit_record_failed", action=action, key=principal.name, status=status)


def _bound(ms: int) -> str:
    return f"{ms:013d}:"


async def read(
    *,
    namespace: str | None = None,
    action: str | None = None,
    key: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Records newest first (at most `limit`), with the cursor of the next page (None: no more).
    `key` matches a key's id or name ("root" for the root key)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    order: dict[str, str] = {}
    if since_ms is not None:
        order["$gte"] = _bound(since_ms)
    upper = [bound for bound in (_bound(until_ms) if until_ms is not None else None, cursor) if bound]
    if upper:
        order["$lt"] = min(upper)
    query: dict[str, Any] = {"order": order} if order else {"order": {"$gt": ""}}
    if namespace is not None:
        query["namespace"] = namespace
    if action is not None:
        query["action"] = action
    if key is not None:  # a key's id (16 hex digits), else its name
        query["key_id" if _KEY_ID.fullmatch(key) else "key_name"] = key
    cursor_ = AuditRecord.get_motor_collection().find(query, {"_id": 0}).sort("order", -1).limit(limit + 1)
    found = [doc async for doc in cursor_]
    more = len(found) > limit
    page = found[:limit]
    return page, (page[-1]["order"] if more else None)


PURGE_BATCH = 1000


async def purge_old(ctx: AppContext, *, batches: int = 50) -> int:
    """Delete the records older than AUDIT_RETENTION, oldest first, a bounded batch at a time (a
    range of the `at_ms` index, then a delete by id); how many went. Safe on every replica at
    once (a record deleted twice is deleted once). The rest waits for the next pass."""
    cutoff = now_ms() - int(ctx.settings.audit_retention * 1000)
    collection = AuditRecord.get_motor_collection()
    deleted = 0
    for _ in range(batches):
        cursor = collection.find({"at_ms": {"$lt": cutoff}}, {"_id": 1}).sort("at_ms", 1).limit(PURGE_BATCH)
        ids = [doc["_id"] async for doc in cursor]
        if not ids:
            break
        deleted += (await collection.delete_many({"_id": {"$in": ids}})).deleted_count
    if deleted:
        log.info("audit_records_purged", records=deleted, retention_seconds=ctx.settings.audit_retention)
    return deleted
