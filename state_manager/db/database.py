"""Opening the database: a real MongoDB when MONGO_URI is set, else the embedded in-memory store."""

from __future__ import annotations

from typing import Any

import structlog
from beanie import init_beanie

from state_manager.config import Settings
from state_manager.db.documents import DOCUMENT_MODELS

log = structlog.get_logger(__name__)


async def open_database(settings: Settings) -> Any:
    """Connect, initialise Beanie (creating indexes) and return the client to close later."""
    if settings.mongo_uri:
        from motor.motor_asyncio import AsyncIOMotorClient

        client: Any = AsyncIOMotorClient(settings.mongo_uri, tz_aware=True)
        log.info("database_opened", kind="mongodb", database=settings.mongo_database_name)
    else:
        from mongomock_motor import AsyncMongoMockClient

        client = AsyncMongoMockClient(tz_aware=True)
        log.warning(
            "embedded_store",
            message="MONGO_URI is not set: using the embedded in-memory store. "
            "NOTHING SURVIVES A RESTART. Set MONGO_URI for real use.",
        )
    await init_beanie(database=client[settings.mongo_database_name], document_models=DOCUMENT_MODELS)
    return client
