"""A fresh server for one simulated schedule: the app on mongomock-motor, in-process, background
loops off, with an HTTP client over its ASGI app and every log event captured (each stamped
with the scheduler's step, so the checks can tell what was logged before an answer)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from structlog.testing import LogCapture

from state_manager import metrics
from state_manager.app import create_app
from state_manager.services.context import AppContext
from tests.factories import NAMESPACE, Api
from tests.simulation.scheduler import CURRENT
from tests.support.in_process import settings_for, started

# Anything owing an effect is at once eligible for take-over by a recovery pass (a harsh
# adversary for the operations it races), and leases do not run out during a schedule.
SIM_SETTINGS: dict[str, Any] = {
    "recovery_grace_seconds": 0,
    "state_lease_seconds": 300,
}
_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


@dataclass
class World:
    ctx: AppContext
    client: httpx.AsyncClient
    api: Api
    metrics: metrics.Metrics
    logs: list[MutableMapping[str, Any]] = field(default_factory=list)
    clock: Callable[[], int] = lambda: 0  # the scheduler's step (0 during the setup)

    def events(self, name: str, **match: Any) -> list[MutableMapping[str, Any]]:
        return [
            e for e in self.logs if e.get("event") == name and all(e.get(k) == v for k, v in match.items())
        ]

    def runs_finished_counted(self) -> float:
        """The sum of `exosphere_runs_finished_total` over its labels."""
        total = 0.0
        for family in self.metrics.registry.collect():
            if family.name == "exosphere_runs_finished":
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
        return total

    def stamp(self, _: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        current = CURRENT.get()
        event["sim_step"] = self.clock()
        event["sim_op"] = None if current is None else current[1]
        return event


def new_app(**overrides: Any) -> FastAPI:
    settings = settings_for(secrets_encryption_key=_KEY, mock_store=True, **SIM_SETTINGS, **overrides)
    return create_app(settings)


@asynccontextmanager
async def open_world(application: FastAPI | None = None, **overrides: Any) -> AsyncIterator[World]:
    """A started server with a new, empty store. `application` reuses an app made by `new_app`
    (FastAPI builds an app's routes on its first requests, a tenth of a second): its caches are
    emptied, so nothing of an earlier world is seen."""
    if application is None:
        application = new_app(**overrides)
    else:
        _forget(application.state.context)
    async with started(application) as client:
        world = World(application.state.context, client, Api(client, NAMESPACE), application.state.metrics)
        capture = LogCapture()
        processors = structlog.get_config()["processors"]
        saved = list(processors)
        processors[:] = [world.stamp, capture]
        structlog.configure(processors=processors)
        world.logs = capture.entries
        try:
            with metrics.active(world.metrics):  # the hooks count into this app's registry
                yield world
        finally:
            processors[:] = saved
            structlog.configure(processors=processors)


def _forget(ctx: AppContext) -> None:
    """Empty what a context remembers between requests (as a new process would start)."""
    fresh = AppContext(settings=ctx.settings, cipher=ctx.cipher)
    for name in (f.name for f in dataclasses.fields(AppContext)):
        setattr(ctx, name, getattr(fresh, name))
