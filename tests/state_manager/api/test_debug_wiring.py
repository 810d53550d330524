"""The debug endpoints exist only when COUNT_DB_COMMANDS is on, and need the key like the rest."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"count_db_commands": getattr(request, "param", False)}


@pytest.mark.parametrize("settings_overrides", [True], indirect=True)
async def test_counting_on_mounts_the_endpoints(client: httpx.AsyncClient, app: FastAPI) -> None:
    answer = await client.get("/v0/debug/db-commands")
    assert answer.status_code == 200 and set(answer.json()) == {"commands", "total"}
    transport = httpx.ASGITransport(app=app.state.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as anonymous:
        assert (await anonymous.get("/v0/debug/db-commands")).status_code == 401


async def test_counting_off_by_default(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v0/debug/db-commands")).status_code == 404
