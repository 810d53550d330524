"""Debug endpoints, mounted only when `COUNT_DB_COMMANDS` is on (benchmarks use them).

- `GET  /v0/debug/db-commands`: the database commands sent since start (or the last reset);
- `POST /v0/debug/db-commands/reset`: set the counts to zero; answers the counts it cleared.

Both answer `{"commands": {name: count}, "total": N}`. The counter is the app's
`state.db_command_counter` (see `db/monitoring.py`); 404 when the app has none.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from state_manager.db.monitoring import CommandCounter

router = APIRouter(prefix="/debug", tags=["debug"])

COUNTER_ATTRIBUTE = "db_command_counter"


async def _counter(request: Request) -> CommandCounter:
    counter = getattr(request.app.state, COUNTER_ATTRIBUTE, None)
    if not isinstance(counter, CommandCounter):
        raise HTTPException(status_code=404, detail="database command counting is off (COUNT_DB_COMMANDS)")
    return counter


Counter = Annotated[CommandCounter, Depends(_counter)]


def _answer(counts: dict[str, int]) -> dict[str, Any]:
    return {"commands": dict(sorted(counts.items())), "total": sum(counts.values())}


@router.get("/db-commands")
async def db_commands(counter: Counter) -> dict[str, Any]:
    return _answer(counter.snapshot())


@router.post("/db-commands/reset")
async def reset_db_commands(counter: Counter) -> dict[str, Any]:
    return _answer(counter.reset())
