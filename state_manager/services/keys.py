"""Scoped API keys (issue 19): made, listed and revoked by an admin of all namespaces; a request's
key resolved to who is calling (domain/access.py).

A key is `exo_<key id>_<secret>`: the id finds its record, the secret is compared with the
stored SHA-256 in constant time. A process keeps what it read of a key for KEY_CACHE_SECONDS, so
a revoked key is refused on every replica at most that long after the revoke answered (the
issue asks for 5 s), and a request costs no read while its key is cached.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import structlog
from pymongo.errors import DuplicateKeyError

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import ApiKey
from state_manager.domain.access import ALL_NAMESPACES, ROOT, Principal, Role
from state_manager.errors import BadRequest, NotFound
from state_manager.services.context import AppContext

log = structlog.get_logger(__name__)

KEY_CACHE_SECONDS = 2.0
PREFIX = "exo_"
_ID = re.compile(r"[0-9a-f]{16}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
MAX_NAMESPACES = 100


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a key in our format, None for anything else."""
    if not presented.startswith(PREFIX):
        return None
    key_id, _, secret = presented[len(PREFIX) :].partition("_")
    if not _ID.fullmatch(key_id) or not _SECRET.fullmatch(secret):
        return None
    return key_id, secret


def principal_of(doc: dict[str, Any]) -> Principal:
    return Principal(doc["key_id"], doc["name"], Role(doc["role"]), frozenset(doc["namespaces"]))


async def resolve(ctx: AppContext, presented: str) -> Principal | str:
    """Who presents this key, or why it is refused (401): unknown, revoked or expired."""
    root = ctx.settings.state_manager_secret.get_secret_value()
    if hmac.compare_digest(presented.encode(), root.encode()):
        return ROOT
    parts = _split(presented)
    if parts is None:
        return "Invalid API key"
    key_id, secret = parts
    doc = await _read(ctx, key_id)
    if doc is None or not hmac.compare_digest(_hash(secret).encode(), str(doc["secret_hash"]).encode()):
        return "Invalid API key"
    if doc.get("revoked_ms") is not None:
        return f"API key {doc['name']!r} was revoked"
    if doc.get("expires_ms") is not None and doc["expires_ms"] <= now_ms():
        return f"API key {doc['name']!r} has expired"
    return principal_of(doc)


async def _read(ctx: AppContext, key_id: str) -> dict[str, Any] | None:
    cached = ctx.api_keys.get(key_id)
    if cached is not None and time.monotonic() - cached[1] < KEY_CACHE_SECONDS:
        doc: dict[str, Any] | None = cached[0]
        return doc
    doc = await ApiKey.get_motor_collection().find_one({"key_id": key_id})
    if len(ctx.api_keys) > 10_000:
        ctx.api_keys.clear()
    ctx.api_keys[key_id] = (doc, time.monotonic())
    return doc


def _checked(name: str, role: str, namespaces: list[str], expires_ms: int | None) -> None:
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"Invalid key name {name!r}: 1 to 64 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or digit"
        )
    if role not in {r.value for r in Role}:
        raise BadRequest(f"Invalid role {role!r}: one of {', '.join(r.value for r in Role)}")
    if not namespaces or len(namespaces) > MAX_NAMESPACES:
        raise BadRequest(f'namespaces: list 1 to {MAX_NAMESPACES} namespaces, or ["*"] for all')
    for namespace in namespaces:
        if not namespace.strip() or len(namespace) > 128 or not namespace.isprintable():
            raise BadRequest(f"Invalid namespace {namespace!r} in namespaces: 1 to 128 printable characters")
    if expires_ms is not None and expires_ms <= now_ms():
        raise BadRequest("expires_at is in the past: a key must expire later than now")


async def create(
    principal: Principal, name: str, role: str, namespaces: list[str], expires_ms: int | None
) -> tuple[dict[str, Any], str]:
    """A new key: its record, and the key itself (shown this once; only its hash is kept)."""
    _checked(name, role, namespaces, expires_ms)
    secret = secrets.token_urlsafe(32)
    for _ in range(3):
        key_id = secrets.token_hex(8)
        doc = {
            "key_id": key_id,
            "name": name,
            "role": role,
            "namespaces": [ALL_NAMESPACES] if ALL_NAMESPACES in namespaces else sorted(set(namespaces)),
            "secret_hash": _hash(secret),
            "created_ms": now_ms(),
            "created_by": principal.name,
            "expires_ms": expires_ms,
            "revoked_ms": None,
        }
        try:
            await ApiKey.get_motor_collection().insert_one(doc)
        except DuplicateKeyError:
            continue  # a key id drawn twice: draw again
        log.info("api_key_created", key_id=key_id, name=name, role=role, namespaces=doc["namespaces"])
        return doc, f"{PREFIX}{key_id}_{secret}"
    raise RuntimeError("could not draw a free key id")  # 2^64 ids: never in practice


async def list_keys() -> list[dict[str, Any]]:
    """Every key, newest first, without its secret's hash."""
    cursor = ApiKey.get_motor_collection().find({}, {"secret_hash": 0}).sort("created_ms", -1)
    return [doc async for doc in cursor]


async def revoke(ctx: AppContext, key_id: str) -> dict[str, Any]:
    """Revoke a key (a repeat changes nothing); 404 for an unknown one. Refused on this replica at
    once, on the others within KEY_CACHE_SECONDS."""
    collection = ApiKey.get_motor_collection()
    await collection.update_one({"key_id": key_id, "revoked_ms": None}, {"$set": {"revoked_ms": now_ms()}})
    doc = await queries.find_one(ApiKey, {"key_id": key_id})
    if doc is None:
        raise NotFound(f"API key {key_id} not found")
    ctx.api_keys.pop(key_id, None)
    log.info("api_key_revoked", key_id=key_id, name=doc.name)
    view: dict[str, Any] = doc.model_dump(exclude={"id", "revision_id", "secret_hash"})
    return view
