"""A state manager in this process: settings for a test, and its app started with an httpx
client over its ASGI transport (the way the API tests talk to it, on any store)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from asgi_lifespan import LifespanManager

from tests.factories import API_KEY

if TYPE_CHECKING:
    from fastapi import FastAPI

    from state_manager.config import Settings


def settings_for(**values: Any) -> Settings:
    """Settings with the test key, a fresh encryption key and no background loops; `values` name
    the store (`mongo_uri` and `mongo_database_name`, or `mock_store=True`) and anything else."""
    from state_manager.config import Settings

    defaults: dict[str, Any] = {
        "state_manager_secret": API_KEY,
        "secrets_encryption_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "background_loops": False,
    }
    return Settings(**{**defaults, **values}, _env_file=None)  # type: ignore[call-arg]


@asynccontextmanager
async def started(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client that sends the test key."""
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://test",
            headers={"x-api-key": API_KEY},
        ) as client,
    ):
        yield client
