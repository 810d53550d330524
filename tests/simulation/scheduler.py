"""A deterministic scheduler for concurrent operations, interleaved at store-call boundaries.

Each operation runs in its own asyncio task. Before every store call it makes (see
`store_gate.py`) the task parks at a gate; the scheduler waits until every live operation is
parked or finished, then releases exactly one, chosen by a `Chooser` (an explicit list of
choices, or a seeded random generator), and records the choice. So a run is a function of
(scenario, choices, crash point): replaying the recorded choices repeats it call for call.

A crash point `Crash(op, call)` kills operation `op` as it arrives at its `call`-th gate
(1-based), before that call happens: its task is cancelled, it makes no further store calls
and its answer is lost, as if its server replica died there. The first gate of each operation
is its start (a crash there: the request never arrived) and the last its answer (after its
last store call: a crash there loses only the answer).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The operation (scheduler, index) the current task works for; None outside interleaved operations.
CURRENT: contextvars.ContextVar[tuple[Scheduler, int] | None] = contextvars.ContextVar(
    "simulation_operation", default=None
)

ARRIVAL_TIMEOUT_S = 20.0  # an operation that neither reaches a gate nor ends in this time is a bug


@dataclass(frozen=True)
class Crash:
    """Kill operation `op` as it arrives at its `call`-th gate (1-based), before the call."""

    op: int
    call: int

    def __str__(self) -> str:
        return f"{self.op}@{self.call}"

    @classmethod
    def parse(cls, text: str) -> Crash | None:
        if text in ("", "-", "none"):
            return None
        op, call = text.split("@")
        return cls(int(op), int(call))


@dataclass
class Decision:
    """One point where more than one operation was waiting to be released."""

    options: list[int]  # the waiting operations, the default (no preemption) first
    chosen: int
    last: int | None  # the operation released just before
    preemptions_before: int

    @property
    def preempts(self) -> bool:
        return self.last is not None and self.last in self.options and self.chosen != self.last


class Chooser:
    """Picks the operation to release. Beyond `prefix` the default is to continue the operation
    released last while it waits (no preemption), else the lowest-numbered one."""

    def __init__(self, prefix: Sequence[int] = (), rng: random.Random | None = None) -> None:
        self.prefix = list(prefix)
        self.rng = rng

    def pick(self, index: int, options: list[int]) -> int:
        if index < len(self.prefix):
            choice = self.prefix[index]
            if choice not in options:
                raise ScheduleDiverged(f"choice {index} is {choice}, but only {options} are waiting")
            return choice
        if self.rng is not None:
            return self.rng.choice(options)
        return options[0]


class ScheduleDiverged(AssertionError):
    """A replayed schedule asked for an operation that was not waiting: the run is not
    deterministic, or the code changed since the schedule was recorded."""


@dataclass
class OpResult:
    name: str
    value: Any = None  # what the operation returned (e.g. an httpx.Response)
    error: BaseException | None = None  # an exception it raised (not a crash)
    crashed: bool = False
    calls: int = 0  # gates it passed, its answer included
    started: int | None = None  # global step of its first release
    answered: int | None = None  # global step at which it returned (None if it crashed or failed)


@dataclass
class _Op:
    index: int
    name: str
    result: OpResult
    task: asyncio.Task[Any] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Future[None] | None = None
    gates: int = 0
    crashed: bool = False

    @property
    def parked(self) -> bool:
        return self.go is not None and not self.go.done()

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()


Operation = Callable[[], Awaitable[Any]]


class Scheduler:
    def __init__(self, chooser: Chooser | None = None, crash: Crash | None = None) -> None:
        self.chooser = chooser or Chooser()
        self.crash = crash
        self.decisions: list[Decision] = []
        self.calls: list[tuple[int, str]] = []  # (operation, label) of every call released, in order
        self.step = 0
        self._ops: list[_Op] = []

    @property
    def choices(self) -> list[int]:
        return [d.chosen for d in self.decisions]

    async def gate(self, index: int, label: str) -> None:
        """Park the calling operation until the scheduler releases it (or crash it here)."""
        op = self._ops[index]
        if op.crashed:  # a dead replica makes no further calls, not even in cleanup code
            raise asyncio.CancelledError
        op.gates += 1
        if self.crash is not None and self.crash == Crash(index, op.gates):
            op.crashed = op.result.crashed = True
            assert op.task is not None
            op.task.cancel()
            await asyncio.get_running_loop().create_future()  # never resolves: cancelled here
        op.go = asyncio.get_running_loop().create_future()
        op.arrived.set()
        await op.go
        self.step += 1
        if op.result.started is None:
            op.result.started = self.step
        self.calls.append((index, label))

    async def run(self, operations: Sequence[tuple[str, Operation]]) -> list[OpResult]:
        """Run the operations interleaved; the results in the order given."""
        self._ops = [_Op(i, name, OpResult(name)) for i, (name, _) in enumerate(operations)]
        for op, (_, operation) in zip(self._ops, operations, strict=True):
            context = contextvars.copy_context()
            context.run(CURRENT.set, (self, op.index))
            op.task = asyncio.create_task(self._body(op, operation), context=context)
            op.task.add_done_callback(lambda _, op=op: op.arrived.set())
        last: int | None = None
        preemptions = 0
        while True:
            await self._quiesce()
            waiting = [op.index for op in self._ops if op.parked and not op.crashed]
            if not waiting:
                break
            options = [last, *(i for i in waiting if i != last)] if last in waiting else waiting
            chosen = self.chooser.pick(len(self.decisions), options) if len(options) > 1 else options[0]
            if len(options) > 1:
                decision = Decision(options, chosen, last, preemptions)
                preemptions += decision.preempts
                self.decisions.append(decision)
            last = chosen
            op = self._ops[chosen]
            op.arrived.clear()
            assert op.go is not None
            op.go.set_result(None)
        tasks = [op.task for op in self._ops if op.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        return [op.result for op in self._ops]

    async def _body(self, op: _Op, operation: Operation) -> None:
        try:
            # Its first gate: nothing of it (not even a clock read) happens before the scheduler
            # starts it, so what it sees does not depend on how fast the others were set up.
            await self.gate(op.index, "start")
            value = await operation()
            await self.gate(op.index, "answer")
        except asyncio.CancelledError:
            if not op.crashed:
                raise
            return
        except Exception as exc:  # recorded: the checks decide whether it is a failure
            op.result.error = exc
        else:
            op.result.value = value
            op.result.answered = self.step
        finally:
            op.result.calls = op.gates

    async def _quiesce(self) -> None:
        for op in self._ops:
            if op.done or op.parked:
                continue
            try:
                await asyncio.wait_for(op.arrived.wait(), ARRIVAL_TIMEOUT_S)
            except TimeoutError as exc:
                raise AssertionError(
                    f"operation {op.index} ({op.name}) neither reached a store call nor ended"
                ) from exc


async def gate(label: str) -> None:
    """The hook `store_gate` calls before each store call: a no-op outside operations."""
    current = CURRENT.get()
    if current is not None:
        scheduler, index = current
        await scheduler.gate(index, label)


# ---------------------------------------------------------------- schedules to explore


def next_prefix(decisions: Sequence[Decision], max_preemptions: int | None) -> list[int] | None:
    """Depth-first: the choice prefix of the next schedule to run after one that made
    `decisions`, or None when every schedule (within `max_preemptions` preemptions, if given)
    has been run. Options are tried in the order recorded (the default first)."""
    for depth in range(len(decisions) - 1, -1, -1):
        decision = decisions[depth]
        position = decision.options.index(decision.chosen)
        for alternative in decision.options[position + 1 :]:
            cost = decision.preemptions_before + (
                decision.last is not None
                and decision.last in decision.options
                and alternative != decision.last
            )
            if max_preemptions is None or cost <= max_preemptions:
                return [d.chosen for d in decisions[:depth]] + [alternative]
    return None
