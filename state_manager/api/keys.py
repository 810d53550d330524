"""Scoped API keys (issue 19): made, listed and revoked by the root key or an admin of all
namespaces (docs/access.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from state_manager.api import access, examples
from state_manager.api.deps import Context
from state_manager.api.openapi_docs import errors
from state_manager.schemas.keys import CreatedKey, CreateKeyRequest, KeyList, KeyView
from state_manager.services import keys

router = APIRouter(tags=["keys"])


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["key_id"],
        "name": doc["name"],
        "role": doc["role"],
        "namespaces": doc["namespaces"],
        "created_at": _iso(doc["created_ms"]),
        "created_by": doc["created_by"],
        "expires_at": _iso(doc.get("expires_ms")),
        "revoked_at": _iso(doc.get("revoked_ms")),
    }


@router.post(
    "/keys",
    status_code=201,
    response_model=CreatedKey,
    summary="Make an API key",
    responses=errors(
        400, 403, e400="A bad name, role, namespace or expiry", e403="Not an admin of all namespaces"
    ),
)
async def create_key(
    request: Request, body: Annotated[CreateKeyRequest, Body(openapi_examples=examples.CREATE_KEY)]
) -> dict[str, Any]:
    """A new key with a role, limited to some namespaces (`["*"]`: all), maybe expiring. The
    answer holds the key itself, this once: only its hash is stored."""
    expires_at = body.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)  # a time that names no zone is UTC
    expires = None if expires_at is None else int(expires_at.timestamp() * 1000)
    doc, key = await keys.create(access.principal(request), body.name, body.role, body.namespaces, expires)
    return {**_view(doc), "key": key}


@router.get("/keys", response_model=KeyList, summary="List API keys", responses=errors(403))
async def list_keys() -> KeyList:
    """Every key, newest first, revoked and expired ones too; never a key's secret."""
    return KeyList(keys=[KeyView(**_view(doc)) for doc in await keys.list_keys()])


@router.delete(
    "/keys/{key_id}",
    response_model=KeyView,
    summary="Revoke an API key",
    responses=errors(403, 404, e404="No such key"),
)
async def revoke_key(context: Context, key_id: str) -> dict[str, Any]:
    """Revoke a key: refused (401) on this server at once and on every replica within a few
    seconds. A repeat answers the same."""
    return _view(await keys.revoke(context, key_id))
