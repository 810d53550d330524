"""Opening the database: the one place that decides which client the app talks to.

- `mongo_uri` set: Motor over the wire. That is a real MongoDB (MONGO_URI), or the embedded
  store that `python -m state_manager` starts when MONGO_URI is unset (`state_manager/store/`)
  and whose address it puts in `mongo_uri` before it builds the app.
- `mock_store`: mongomock-motor, in-process, nothing kept. For the fast test tiers only (it scans
  collections inside the event loop); a dev dependency, never a default.
- neither: a clear error. An app is never silently given a store that forgets everything.
"""

from __future__ import annotations

from typing import Any

import structlog
from beanie import init_beanie

from state_manager.config import Settings
from state_manager.db.documents import DOCUMENT_MODELS

log = structlog.get_logger(__name__)

NO_DATABASE = (
    "no database: MONGO_URI is not set. Start the server with `python -m state_manager`, which runs"
    " the embedded store when MONGO_URI is unset, or set MONGO_URI to a MongoDB server"
    " (tests building the app in-process set mock_store=True)"
)


class NoDatabase(RuntimeError):
    """Settings that name no database: neither `mongo_uri` nor `mock_store`."""


def client_options(settings: Settings) -> dict[str, Any]:
    """Motor's options. Credentials given apart from the URI (MONGO_USERNAME, MONGO_PASSWORD) are
    passed as they are, so a password with `@`, `:` or `/` needs no URL-encoding."""
    options: dict[str, Any] = {"tz_aware": True}
    if settings.mongo_username:
        options["username"] = settings.mongo_username
    if settings.mongo_password:
        options["password"] = settings.mongo_password.get_secret_value()
    return options


def _mongomock_takes_bulk_updates() -> None:
    """mongomock's bulk builder predates the `sort` that pymongo 4.11+ passes with each
    `UpdateOne` of a `bulk_write`; accept it (and ignore it: none of our updates sorts)."""
    from mongomock.collection import BulkOperationBuilder

    original = BulkOperationBuilder.add_update
    if getattr(original, "takes_sort", False):
        return

    def add_update(
        self: Any,
        selector: Any,
        doc: Any,
        multi: bool = False,
        upsert: bool = False,
        collation: Any = None,
        array_filters: Any = None,
        hint: Any = None,
        sort: Any = None,  # noqa: ARG001 (what pymongo passes; ignored)
    ) -> Any:
        return original(self, selector, doc, multi, upsert, collation, array_filters, hint)  # type: ignore[no-untyped-call]

    add_update.takes_sort = True  # type: ignore[attr-defined]
    BulkOperationBuilder.add_update = add_update  # type: ignore[method-assign]


async def open_database(settings: Settings) -> Any:
    """Connect, initialise Beanie (creating indexes) and return the client to close later."""
    if settings.mongo_uri:
        from motor.motor_asyncio import AsyncIOMotorClient

        client: Any = AsyncIOMotorClient(settings.mongo_uri, **client_options(settings))
        log.info("database_opened", kind="mongodb", database=settings.mongo_database_name)
    elif settings.mock_store:
        from mongomock_motor import AsyncMongoMockClient

        _mongomock_takes_bulk_updates()
        client = AsyncMongoMockClient(tz_aware=True)
        log.info("database_opened", kind="mock", message="in-process test store: nothing is kept")
    else:
        raise NoDatabase(NO_DATABASE)
    await init_beanie(database=client[settings.mongo_database_name], document_models=DOCUMENT_MODELS)
    return client
