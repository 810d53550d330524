"""Checks `python -m state_manager` runs before it serves: an operator error refuses to start.

A changed `SECRETS_ENCRYPTION_KEY` would otherwise surface only later, as a failure of every
secrets read that SDKs keep retrying. One stored ciphertext tells: if the configured key cannot
decrypt it, the server exits with a message instead of serving.
"""

from __future__ import annotations

from typing import Any

import pymongo
import structlog
from pymongo.errors import PyMongoError

from state_manager.config import Settings
from state_manager.crypto import SecretCipher, SecretKeyMismatch
from state_manager.db.database import client_options
from state_manager.db.documents import GraphTemplate

log = structlog.get_logger(__name__)

# A graph whose `secrets` map is not empty. (`$type` first: the embedded nx-27017 store cannot
# compare with `{}` alone.)
WITH_SECRETS: dict[str, Any] = {"secrets": {"$type": "object", "$ne": {}}}


async def find_secrets_key_problem(database: Any, settings: Settings) -> str | None:
    """Decrypt one stored secret with the configured key: a message saying what is wrong, or None.

    The graph written last is the one checked: its secrets were encrypted with the key in use
    most recently (an operator re-upserting graphs under a new key is not refused).
    """
    graph = await database[GraphTemplate.Settings.name].find_one(
        WITH_SECRETS,
        projection={"name": 1, "namespace": 1, "secrets": 1},
        sort=[("updated_at", pymongo.DESCENDING)],
    )
    if graph is None:
        return None
    ciphertext = next(iter(graph["secrets"].values()))
    try:
        SecretCipher(settings.encryption_key).decrypt(ciphertext)
    except SecretKeyMismatch:
        return (
            f"SECRETS_ENCRYPTION_KEY cannot decrypt the secrets stored for graph {graph['name']!r}"
            f" in namespace {graph['namespace']!r}: stored secrets were encrypted with a different"
            " key: restore the previous key, or re-upsert the graphs' secrets (see docs/self-hosting.md)"
        )
    except ValueError:  # a malformed value, not a wrong key: the secrets read will say so
        log.warning("secrets_key_check_skipped", reason="malformed stored secret", graph=graph["name"])
    return None


async def check_secrets_key(settings: Settings, *, timeout_seconds: float = 5.0) -> str | None:
    """`find_secrets_key_problem` on the database in `settings.mongo_uri`, read-only.

    That is MONGO_URI, or the embedded store, which `python -m state_manager` starts (and puts in
    `mongo_uri`) before this check: its data survives restarts, so its secrets are checked too.
    Without `mongo_uri` the store is the in-process test store, new and empty: nothing to check.
    A database that cannot be reached is not this check's business: it is skipped, and the app's
    own start-up reports the database.
    """
    if not settings.mongo_uri:
        return None
    from motor.motor_asyncio import AsyncIOMotorClient

    timeout_ms = int(timeout_seconds * 1000)
    client: Any = None
    try:
        client = AsyncIOMotorClient(
            settings.mongo_uri,
            **client_options(settings),
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
        )
        return await find_secrets_key_problem(client[settings.mongo_database_name], settings)
    except PyMongoError as exc:
        log.warning("secrets_key_check_skipped", reason="database unavailable", error=type(exc).__name__)
        return None
    finally:
        if client is not None:
            client.close()
