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

Pure: builds filters and updates, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

CHUNK_BITS = 8


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

    @property
    def path(self) -> str:
        return f"owed.{self.group}.{self.chunk}"


def group_bits(size: int) -> dict[str, int]:
    """The chunks of a group of `size` states, every bit set."""
    chunks: dict[str, int] = {}
    for index in range(size):
        chunk = str(index // CHUNK_BITS)
        chunks[chunk] = chunks.get(chunk, 0) | (1 << (index % CHUNK_BITS))
    return chunks


@cache
def values_with(mask: int) -> tuple[int, ...]:
    """Every chunk value that has all the bits of `mask` set."""
    return tuple(value for value in range(1 << CHUNK_BITS) if value & mask == mask)


@dataclass(frozen=True)
class Registration:
    """New states to count: `open` of them (the group's members, indexes 0..open-1) and, by
    status, others written settled at once (fan-out copies are written in their final status)."""

    group: str
    open: int
    settled: Mapping[str, int] = field(default_factory=dict)


def _register_fields(registration: Registration, update: dict[str, dict[str, Any]]) -> None:
    """Add a group's registration to `update`: its bits, and its states created and open."""
    sets = update.setdefault("$set", {})
    incs = update.setdefault("$inc", {})
    sets[f"owed.{registration.group}"] = group_bits(registration.open)
    incs["created"] = incs.get("created", 0) + registration.open + sum(registration.settled.values())
    incs["open"] = incs.get("open", 0) + registration.open
    for status, n in registration.settled.items():
        if n:
            incs[f"settled.{status}"] = incs.get(f"settled.{status}", 0) + n


def register(registration: Registration) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that registers a group once."""
    update: dict[str, dict[str, Any]] = {}
    _register_fields(registration, update)
    return {f"owed.{registration.group}": {"$exists": False}}, update


def settle(
    slot: Slot, status: str, creations: Sequence[Registration] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that counts one state settled in `status`, once; with `creations`, also
    registers the groups of the states its settle created (only if none of them exists yet)."""
    query: dict[str, Any] = {slot.path: {"$in": list(values_with(slot.bit))}}
    update: dict[str, dict[str, Any]] = {
        "$inc": {slot.path: -slot.bit, f"settled.{status}": 1, "open": -1},
    }
    for registration in creations:
        if registration.group == slot.group:  # the store refuses an update of one path twice
            raise ValueError(f"a state cannot create its own tally group {slot.group!r}")
        query[f"owed.{registration.group}"] = {"$exists": False}
        _register_fields(registration, update)
    return query, update


def settle_many(slots: Iterable[Slot], status: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that counts several states settled in `status` at once, only if every
    one of them is still owed (all or nothing)."""
    masks: dict[str, int] = {}
    count = 0
    for slot in slots:
        masks[slot.path] = masks.get(slot.path, 0) | slot.bit
        count += 1
    query = {path: {"$in": list(values_with(mask))} for path, mask in masks.items()}
    incs: dict[str, int] = {path: -mask for path, mask in masks.items()}
    incs[f"settled.{status}"] = count
    incs["open"] = -count
    return query, {"$inc": incs}


def reopen(slot: Slot, settled_as: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) that counts a settled state open again, under a new slot of its own
    (a group of one), once."""
    return (
        {f"owed.{slot.group}": {"$exists": False}},
        {
            "$set": {f"owed.{slot.group}": group_bits(slot.index + 1)},
            "$inc": {f"settled.{settled_as}": -1, "open": 1},
        },
    )


def is_owed(owed: Mapping[str, Mapping[str, int]], slot: Slot) -> bool | None:
    """Whether the slot's bit is still set in a run's `owed`; None if its group is not registered."""
    group = owed.get(slot.group)
    if group is None:
        return None
    return bool(group.get(slot.chunk, 0) & slot.bit)
