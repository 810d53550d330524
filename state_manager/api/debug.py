"""Debug endpoints, mounted only when `COUNT_DB_COMMANDS` is on (benchmarks use them).

- `GET  /v0/debug/db-commands`: the database commands sent since start (or the last reset);
- `POST /v0/debug/db-commands/reset`: set the counts to zero; answers the counts it cleared.

Both answer `{"commands": {name: count}, "total": N}`. The counter is the app's
`state.db_command_counter` (see `db/monitoring.py`); 404 when the app has none.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from state_manager.api.openapi_docs import errors
from state_manager.db.monitoring import CommandCounter

router = APIRouter(prefix="/debug", tags=["debug"])

COUNTER_ATTRIBUTE = "db_command_counter"


async def _counter(request: Request) -> CommandCounter:
    counter = getattr(request.app.state, COUNTER_ATTRIBUTE, None)
    if not isinstance(counter, CommandCounter):
        raise HTTPException(status_code=404, detail="database command counting is off (COUNT_DB_COMMANDS)")
    return counter


Counter = Annotated[CommandCounter, Depends(_counter)]


class CommandCounts(BaseModel):
    commands: dict[str, int] = Field(description="Count per database command name (find, update, ...)")
    total: int


_OFF = errors(404, e404="Command counting is off (COUNT_DB_COMMANDS)")


def _answer(counts: dict[str, int]) -> CommandCounts:
    return CommandCounts(commands=dict(sorted(counts.items())), total=sum(counts.values()))


@router.get("/db-commands", summary="Database commands sent", responses=_OFF)
async def db_commands(counter: Counter) -> CommandCounts:
    """The database commands this server process sent since it started or since the last reset."""
    return _answer(counter.snapshot())


@router.post("/db-commands/reset", summary="Reset the command counts", responses=_OFF)
async def reset_db_commands(counter: Counter) -> CommandCounts:
    """Set the counts to zero; answers the counts it cleared."""
    return _answer(counter.reset())
