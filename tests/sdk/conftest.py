from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from exospherehost import BaseNode, Runtime, StateManager

from .fake_server import API_KEY, BASE_URL, NAMESPACE, FakeServer

RuntimeFactory = Callable[..., Runtime]


@pytest.fixture(autouse=True)
def clean_exosphere_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's EXOSPHERE_* settings."""
    for name in list(os.environ):
        if name.startswith("EXOSPHERE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def make_runtime(server: FakeServer) -> AsyncIterator[RuntimeFactory]:
    """Build runtimes wired to the fake server, with fast test timings; shut them down after."""
    created: list[Runtime] = []

    def factory(*nodes: type[BaseNode], **overrides: Any) -> Runtime:
        options: dict[str, Any] = {
            "state_manager_uri": BASE_URL,
            "key": API_KEY,
            "poll_interval": 0.01,
            "long_poll_ms": 0,
            "transport": server.transport(),
            **overrides,
        }
        runtime = Runtime(NAMESPACE, "test-runtime", list(nodes), **options)
        created.append(runtime)
        return runtime

    yield factory
    for runtime in created:
        await runtime.shutdown(grace_period=1)


@pytest.fixture
async def state_manager(server: FakeServer) -> AsyncIterator[StateManager]:
    async with StateManager(NAMESPACE, BASE_URL, API_KEY, transport=server.transport()) as sm:
        yield sm
