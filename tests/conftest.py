"""Fixtures shared by every test directory.

The state-manager fixtures build a fresh app per test (so a fresh embedded in-memory store), run
its lifespan, and talk to it over httpx's ASGI transport. Background loops are off: service
tests drive recovery and cron passes themselves through `ctx`. The server is imported inside the
fixtures, so SDK-only test runs never import it.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the repo root
    sys.path.insert(0, str(REPO_ROOT))

from tests.factories import API_KEY, NAMESPACE, Api  # noqa: E402

if TYPE_CHECKING:
    from fastapi import FastAPI

    from state_manager.config import Settings
    from state_manager.services.context import AppContext

# Beanie 1.x's dependency lazy_model reads `model_fields` on instances, which pydantic >= 2.11
# deprecates; the warning comes from that library, not from our code, so only it is silenced.
LAZY_MODEL_WARNING = (
    "ignore:Accessing the 'model_fields' attribute on the instance is deprecated"
    ":pydantic.warnings.PydanticDeprecatedSince211:lazy_model.*"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", LAZY_MODEL_WARNING)


SERVER_ENV = ("MONGO_URI", "MONGO_DATABASE_NAME", "STATE_MANAGER_SECRET", "SECRETS_ENCRYPTION_KEY")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's server or SDK settings."""
    for name in list(os.environ):
        if name in SERVER_ENV or name.startswith("EXOSPHERE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings (e.g. a tiny lease) for its tests."""
    return {}


@pytest.fixture
def settings(settings_overrides: dict[str, Any]) -> Settings:
    from state_manager.config import Settings

    values: dict[str, Any] = {
        "state_manager_secret": API_KEY,
        "secrets_encryption_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "background_loops": False,
        "mock_store": True,
        **settings_overrides,
    }
    return Settings(**values, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The FastAPI application, started (database open) for the test and stopped after it."""
    from asgi_lifespan import LifespanManager

    from state_manager.app import create_app

    application = create_app(settings)
    async with LifespanManager(application) as manager:
        application.state.asgi = manager.app  # the app wrapped with the lifespan state
        yield application


@pytest.fixture
def ctx(app: FastAPI) -> AppContext:
    context: AppContext = app.state.context
    return context


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.state.asgi),
        base_url="http://test",
        headers={"x-api-key": API_KEY},
    ) as http:
        yield http


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client, NAMESPACE)


# `make test` runs the suite on two processes (pytest-xdist, `--dist loadgroup`): the tests of
# these folders stay together on one of them (the compatibility suite builds the official SDKs'
# venvs once; one Chromium at a time), and those that measure time run alone after the rest.
_GROUPS = {"tests/compat/": "compat", "tests/browser/": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path).replace("\\", "/")
        for folder, group in _GROUPS.items():
            if folder in path:
                item.add_marker(pytest.mark.xdist_group(group))
        if "tests/complexity/" in path:
            item.add_marker(pytest.mark.serial)
