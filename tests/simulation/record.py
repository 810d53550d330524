"""What happened in one simulated schedule, for the checks: each operation with its result, and
every call made after the race."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from tests.factories import Json
from tests.simulation.operations import CANCEL, Op
from tests.simulation.scheduler import OpResult


@dataclass
class Attempt:
    """A call made after the race (a retry of a crashed call, a try after a cancel, a repair,
    a drain report), kept for the checks."""

    what: str
    kind: str
    response: httpx.Response | None = None
    claimed: list[Json] = field(default_factory=list)
    after_cancel: bool = False


@dataclass
class Record:
    ops: list[tuple[Op, OpResult]]
    attempts: list[Attempt] = field(default_factory=list)

    def abandoned(self) -> bool:
        """Whether a call died with its replica and its client could not send it again."""
        return any(result.crashed and not op.resend for op, result in self.ops)

    def cancels_answered(self, status: int) -> list[OpResult]:
        return [
            result
            for op, result in self.ops
            if op.kind == CANCEL
            and isinstance(result.value, httpx.Response)
            and result.value.status_code == status
        ]
