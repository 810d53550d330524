"""`GET /health`, without a key (the check of a load balancer, compose or a supervisor), and
`StoreGuard`, which answers 503 while the server's store is known to be gone.

A server whose database does not answer cannot do anything, so `/health` asks it: a `ping`, whose
answer is kept for up to 1 s (at most one ping runs at a time), so that frequent checks cost the
database nothing. The in-process mock store of the tests is not asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state_manager.store.status import StoreStatus

log = structlog.get_logger(__name__)

router = APIRouter(tags=["health"])

PING_TIMEOUT_SECONDS = 2.0  # below compose's health-check timeout (3 s)
PING_MAX_AGE_SECONDS = 1.0


class Health(BaseModel):
    message: Literal["OK"] = "OK"


class Unhealthy(BaseModel):
    """503: the server runs, but its database does not answer."""

    message: str = Field(description="What is wrong, e.g. that the database did not answer a ping")
    database: Literal["unreachable"] = "unreachable"


class DatabasePing:
    """Whether the database answers a `ping`: one ping at a time, its answer kept `max_age` s.

    A ping that takes longer than `timeout` is reported as a problem but goes on (shielded): the
    next check waits for it rather than starting another, so an unreachable database (the client
    waits up to its 30 s server-selection timeout) ties up one ping, not one per check.
    """

    def __init__(
        self, client: Any, *, timeout: float = PING_TIMEOUT_SECONDS, max_age: float = PING_MAX_AGE_SECONDS
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._max_age = max_age
        self._problem: str | None = None
        self._answered_at = -math.inf
        self._running: asyncio.Task[str | None] | None = None

    async def problem(self) -> str | None:
        """None if the database answered (within the last `max_age` s), else what is wrong."""
        if time.monotonic() - self._answered_at <= self._max_age:
            return self._problem
        if self._running is None:
            self._running = asyncio.create_task(self._ping())
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), self._timeout)
        except TimeoutError:
            return f"the database did not answer a ping within {self._timeout:g} s"

    async def _ping(self) -> str | None:
        try:
            await self._client.admin.command("ping")
            problem = None
        except Exception as exc:  # whatever the driver raises, the answer is "unreachable"
            # The details (addresses) go to the log, not to the unauthenticated answer.
            log.warning("database_ping_failed", error_type=type(exc).__name__, error=str(exc)[:500])
            problem = f"the database cannot be reached ({type(exc).__name__})"
        finally:
            self._running = None
        self._problem, self._answered_at = problem, time.monotonic()
        return problem


@router.get(
    "/health",
    summary="Liveness and the database",
    response_model=Health,
    responses={503: {"model": Unhealthy, "description": "The database does not answer"}},
)
async def health(request: Request) -> Health | JSONResponse:
    """`{"message": "OK"}` while the server answers and its database answers a ping (checked at
    most once a second). Needs no key. 503 `{"message": "<the problem>", "database":
    "unreachable"}` when the database does not answer within 2 s, or is known to be gone (the
    embedded engine exited: the server is stopping so that its supervisor restarts it)."""
    status: StoreStatus | None = getattr(request.app.state, "store_status", None)
    ping: DatabasePing | None = getattr(request.app.state, "database_ping", None)
    problem = status.problem if status is not None else None
    if problem is None and ping is not None:
        problem = await ping.problem()
    if problem is None:
        return Health()
    return JSONResponse(status_code=503, content=Unhealthy(message=problem).model_dump())


class StoreGuard:
    """Once the store is lost (`StoreStatus`), answers every request 503 `{"detail": "<the
    problem>"}` (but `/health`, which says it its own way), including the requests already in
    progress: those would otherwise wait for the database client's server-selection timeout
    (30 s) and answer 500. Each request runs in a task of its own, raced against the loss; one
    whose answer has begun is left to finish.
    """

    def __init__(self, app: ASGIApp, status: StoreStatus) -> None:
        self.app = app
        self.status = status
        self._lost: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        if self.status.problem is None:
            answering = asyncio.ensure_future(self.app(scope, receive, send_and_note))
            try:
                await asyncio.wait((answering, self._when_lost()), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the server's own shutdown
                answering.cancel()
                raise
            if answering.done() or started:
                await answering
                return
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await answering
        assert self.status.problem is not None
        await JSONResponse(status_code=503, content={"detail": self.status.problem})(scope, receive, send)

    def _when_lost(self) -> asyncio.Future[None]:
        """A future of this event loop, done when the store is lost (reported from any thread)."""
        if self._lost is None:
            loop = asyncio.get_running_loop()
            lost = self._lost = loop.create_future()
            self.status.when_lost(lambda: _set_done_from_any_thread(loop, lost))
        return self._lost


def _set_done_from_any_thread(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
