"""A run's progress as data: the conditional updates that count each state once, built here.

Every state of a run is counted twice: once when it is created (`created`, `open` + 1) and once
when it settles (`settled.<status>` + 1, `open` - 1): terminal, with nothing more owed for it.
A reopened state (an operator's retry, a join superseded by a repair) is uncounted from its
settled status and counted open again, and settles once more.

Exactly once, without transactions: the run document holds one bit per open state, in `owed`,
grouped by what created the states (a parent's children, a run's seeds, a `states/create` batch,
a join, a reopened state), eight bits to a chunk::

    owed.<group>.<chunk> = an int 0..255; bit i of chunk c is the state at index 8c + i

- Registering a group sets its bits and counts its states created and open, in one update
  conditional on the group not existing yet. Groups are never removed (their chunks go to 0),
  so a registration repeated after a crash, by recovery or by a second replica, matches nothing.
- Settling a state clears its bit and counts it settled, in one update conditional on the bit
  being set: a repeat matches nothing. The condition is a `$in` over the chunk values that have
  the bit set and the update a `$inc` of minus the bit, which every store in use supports
  (the in-process test store has no `$bit` or `$bitsAllSet`).
- A settlement may register the group of the states its settle created in the same update
  (a parent's children), conditional on that group not existing; if another writer registered
  it first (a child that settled before its parent), the caller applies the settlement alone.

The same operations keep a join's arrivals on its anchor state (decision 0020): the states
below the anchor are counted there, under the same slots, in fields named by `ANCHOR` instead of
`RUN` (a `Ledger`).

Pure: builds filters and updates, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

CHUNK_BITS = 8


@dataclass(frozen=True)
class Ledger:
    """The names of a tally's fields in the document that keeps it."""

    prefix: str = ""

    @property
    def owed(self) -> str:
        return f"{self.prefix}owed"

    @property
    def created(self) -> str:
        return f"{self.prefix}created"

    @property
    def open(self) -> str:
        return f"{self.prefix}open"

    @property
    def settled(self) -> str:
        return f"{self.prefix}settled"

    @property
    def reopens(self) -> str:
        return f"{self.prefix}reopens"

    def group(self, group: str) -> str:
        return f"{self.owed}.{group}"

    def chunk(self, slot: Slot) -> str:
        return f"{self.owed}.{slot.group}.{slot.chunk}"


RUN = Ledger()  # a run's progress, on the run document
ANCHOR = Ledger("below_")  # the progress of the states below a join's anchor, on the anchor state


@dataclass(frozen=True)
class Slot:
    """Where a state is counted open: its group and its index in the group."""

    group: str
    index: int = 0

    @property
    def chunk(self) -> str:
        return str(self.index // CHUNK_BITS)

    @property
    def bit(self) -> int:
        return 1 << (self.index % CHUNK_BITS)


def group_bits(size: int, first: int = 0) -> dict[str, int]:
    """The chunks of a group whose members `first`..`first + size - 1` are open (their bits set)."""
    chunks: dict[str, int] = {}
    for index in range(first, first + size):
        chunk = str(index // CHUNK_BITS)
        chunks[chunk] = chunks.get(chunk, 0) | (1 << (index % CHUNK_BITS))
    return chunks


def bits_of(indexes: Iterable[int]) -> dict[str, int]:
    """The chunks of a group whose members at `indexes` are open."""
    chunks: dict[str, int] = {}
    for index in indexes:
        chunk = str(index // CHUNK_BITS)
        chunks[chunk] = chunks.get(chunk, 0) | (1 << (index % CHUNK_BITS))
    return chunks


@cache
def values_with(mask: int) -> tuple[int, ...]:
    """Every chunk value that has all the bits of `mask` set."""
    return tuple(value for value in range(1 << CHUNK_BITS) if value & mask == mask)


@dataclass(frozen=True)
class Registration:
    """New states to count: `open` of them (the group's members `first`..`first + open - 1`)
    and, by status, others written settled at once (fan-out copies are written in their final
    status). An anchor counts only its own part of its parent's children (`first`: where the
    children of a fan-out copy start in the group of its original's children)."""

    group: str
    open: int
    settled: Mapping[str, int] = field(default_factory=dict)
    first: int = 0


def _register_fields(registration: Registration, update: dict[str, dict[str, Any]], ledger: Ledger) -> None:
    """Add a group's registration to `update`: its bits, and its states created and open."""
    sets = update.setdefault("$set", {})
    incs = update.setdefault("$inc", {})
    sets[ledger.group(registration.group)] = group_bits(registration.open, registration.first)
    total = registration.open + sum(registration.settled.values())
    incs[ledger.created] = incs.get(ledger.created, 0) + total
    incs[ledger.open] = incs.get(ledger.open, 0) + registration.open
    for status, n in registration.settled.items():
        if n:
            path = f"{ledger.settled}.{status}"
            incs[path] = incs.get(path, 0) + n


def register(registration: Registration, ledger: Ledger = RUN) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that registers a group once."""
    update: dict[str, dict[str, Any]] = {}
    _register_fields(registration, update, ledger)
    return {ledger.group(registration.group): {"$exists": False}}, update


def settle(
    slot: Slot, status: str, creations: Sequence[Registration] = (), ledger: Ledger = RUN
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that counts one state settled in `status`, once; with `creations`, also
    registers the groups of the states its settle created (only if none of them exists yet)."""
    path = ledger.chunk(slot)
    query: dict[str, Any] = {path: {"$in": list(values_with(slot.bit))}}
    update: dict[str, dict[str, Any]] = {
        "$inc": {path: -slot.bit, f"{ledger.settled}.{status}": 1, ledger.open: -1},
    }
    for registration in creations:
        if registration.group == slot.group:  # the store refuses an update of one path twice
            raise ValueError(f"a state cannot create its own tally group {slot.group!r}")
        query[ledger.group(registration.group)] = {"$exists": False}
        _register_fields(registration, update, ledger)
    return query, update


def settle_many(slots: Iterable[Slot], status: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that counts several states settled in `status` at once, only if every
    one of them is still owed (all or nothing)."""
    masks: dict[str, int] = {}
    count = 0
    for slot in slots:
        path = RUN.chunk(slot)
        masks[path] = masks.get(path, 0) | slot.bit
        count += 1
    query = {path: {"$in": list(values_with(mask))} for path, mask in masks.items()}
    incs: dict[str, int] = {path: -mask for path, mask in masks.items()}
    incs[f"settled.{status}"] = count
    incs["open"] = -count
    return query, {"$inc": incs}


def reopen(slot: Slot, settled_as: str, ledger: Ledger = RUN) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that counts a settled state open again, under a new slot of its own
    (a group of one), once; `reopens` counts how often this happened (a join made before a
    reopen it did not see is found out by it)."""
    return (
        {ledger.group(slot.group): {"$exists": False}},
        {
            "$set": {ledger.group(slot.group): group_bits(slot.index + 1)},
            "$inc": {f"{ledger.settled}.{settled_as}": -1, ledger.open: 1, ledger.reopens: 1},
        },
    )


# Groups at least this large drop their cleared chunks (see `drop_cleared`).
DROP_FROM = 64


def drop_cleared(
    slot: Slot, group_size: int, ledger: Ledger = RUN
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(filter, update) that removes the chunk before the slot's, if all its members have
    settled; None when there is none to try. A document that keeps a tally is rewritten on each
    update (the embedded engine's cost grows with its keys), and a big group's members settle
    roughly in order: when the last member of a chunk settles, the chunk before it is usually
    done. Tried once per chunk, for groups of `DROP_FROM` or more; a chunk that was not done then
    stays, at 0. A removed chunk reads as 0 everywhere (`is_owed`, the filters of `settle`)."""
    if group_size < DROP_FROM or slot.index % CHUNK_BITS != CHUNK_BITS - 1 or slot.index < CHUNK_BITS:
        return None
    previous = f"{ledger.owed}.{slot.group}.{slot.index // CHUNK_BITS - 1}"
    return {previous: 0}, {"$unset": {previous: ""}}


def is_owed(owed: Mapping[str, Mapping[str, int]], slot: Slot) -> bool | None:
    """Whether the slot's bit is still set in a run's `owed`; None if its group is not registered."""
    group = owed.get(slot.group)
    if group is None:
        return None
    return bool(group.get(slot.chunk, 0) & slot.bit)
