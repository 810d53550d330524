"""A join's arrivals, counted on its anchor (decision 0020): the states below an anchor state are
counted in its `below_*` fields exactly as a run counts its states (`domain/tally.py` with
`tally.ANCHOR`), so the joins above it are made when an update leaves nothing below it open,
with no read of the run's states.

- `register_children`: an anchor counts its own children before they are written (a fan-out
  copy is written with its part of them already counted, see `progress._fanout_copy`).
- `settle_in`: a state below the anchor counted settled there, with what its settle created
  below it; once, however often it is repeated.
- `reopen_in`: a settled state below it counted open again (a repair), before anything of the
  repair is written, so the joins above wait for it.

Every state below an anchor is counted in it by its joins stage, innermost anchor first, then
in its run (`run_status.count_settled`): a run never ends between a branch's last arrival and
the join it makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from state_manager.db.documents import State
from state_manager.domain import tally
from state_manager.domain.status import StateStatus

_ATTEMPTS = 5
# What deciding a join needs of its anchor (never `below_owed`, which grows with the fan-out).
_VIEW = {
    "status": 1,
    "join_tally": 1,
    "below_open": 1,
    "below_settled": 1,
    "below_reopens": 1,
}


@dataclass(frozen=True)
class Anchor:
    """An anchor as an update (or a read) left it."""

    status: str
    tallied: bool  # written by a server that keeps the tally (else: decided the old way)
    open: int = 0
    settled: dict[str, int] = field(default_factory=dict)
    reopens: int = 0

    @property
    def ready(self) -> bool:
        """Whether its joins can be decided: it succeeded and nothing below it is open."""
        return self.tallied and self.status == StateStatus.SUCCESS.value and self.open <= 0

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Anchor:
        return cls(
            status=doc.get("status", ""),
            tallied=bool(doc.get("join_tally")),
            open=doc.get("below_open", 0),
            settled=dict(doc.get("below_settled") or {}),
            reopens=doc.get("below_reopens", 0),
        )

    @classmethod
    def of_state(cls, state: State) -> Anchor:
        return cls(
            status=state.status.value,
            tallied=state.join_tally,
            open=state.below_open,
            settled=dict(state.below_settled),
            reopens=state.below_reopens,
        )


def _states() -> Any:
    return State.get_motor_collection()


async def _apply(anchor_id: ObjectId, query: dict[str, Any], update: dict[str, Any]) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await _states().find_one_and_update(
        {"_id": anchor_id, "join_tally": True, **query},
        update,
        projection=_VIEW,
        return_document=ReturnDocument.AFTER,
    )
    return doc


async def read(anchor_id: ObjectId) -> Anchor | None:
    doc = await _states().find_one({"_id": anchor_id}, _VIEW)
    return None if doc is None else Anchor.of(doc)


async def register_children(anchor_id: ObjectId, group: str, count: int) -> None:
    """Count an anchor's own children (the first `count` of `group`) below it; once."""
    if count:
        await _apply(anchor_id, *tally.register(tally.Registration(group, count), tally.ANCHOR))


def copy_fields(group: str = "", first: int = 0, count: int = 0) -> dict[str, Any]:
    """The `below_*` fields of a fan-out copy written with its children (members `first`..
    `first + count - 1` of its original's children `group`) counted below it; with no
    arguments, of a new attempt of a state (nothing below it yet)."""
    return {
        "below_created": count,
        "below_open": count,
        "below_settled": {},
        "below_owed": {group: tally.group_bits(count, first)} if count else {},
        "below_reopens": 0,
    }


async def settle_in(anchor_id: ObjectId, state: State, creations: list[tally.Registration]) -> Anchor | None:
    """Count `state` settled below the anchor, with the groups of states its settle created
    there; once. Returns the anchor as it is afterwards (None: gone).

    The usual case is one update. When it matches nothing the anchor says why, as a run does
    (`run_status.count_settled`): the anchor keeps no tally (written before they were kept), the
    state's own group is not counted there yet (it is, from the state, then the state is
    counted), a group it created is counted there already (counted without it), or the state
    was counted already (a repeat).
    """
    slot = tally.Slot(state.owed_group, state.owed_index)
    for _ in range(_ATTEMPTS):
        query, update = tally.settle(slot, state.status.value, creations, tally.ANCHOR)
        doc = await _apply(anchor_id, query, update)
        if doc is not None:
            # A fan-out copy counts only its own part of its original's children: not a big group.
            part = _direct_child(state, anchor_id) and slot.group != f"c{anchor_id}"
            size = 0 if part else state.owed_registration.get("open", 0)
            if (drop := tally.drop_cleared(slot, size, tally.ANCHOR)) is not None:
                await _states().update_one({"_id": anchor_id, **drop[0]}, drop[1])
            return Anchor.of(doc)
        found = await _states().find_one({"_id": anchor_id}, {**_VIEW, "below_owed": 1})
        if found is None or not found.get("join_tally"):
            return None if found is None else Anchor.of(found)
        owed = found.get("below_owed") or {}
        still = tally.is_owed(owed, slot)
        if still is None:
            await _register_own_group(anchor_id, state)
            continue
        creations = [c for c in creations if c.group not in owed]
        if not still:
            for creation in creations:  # counted without them by an earlier version of this write
                await _apply(anchor_id, *tally.register(creation, tally.ANCHOR))
            return await read(anchor_id) if creations else Anchor.of(found)
    raise RuntimeError(f"state {state.id} could not be counted settled below anchor {anchor_id}")


async def _register_own_group(anchor_id: ObjectId, state: State) -> None:
    """The group of `state` counted below the anchor before the state that created it settled
    there (a child before its parent, a retry before the attempt it replaces), or the reopen of
    a repaired state that a crash kept from being counted."""
    slot = tally.Slot(state.owed_group, state.owed_index)
    if state.reopened_from is not None:
        await _apply(anchor_id, *tally.reopen(slot, state.reopened_from, tally.ANCHOR))
        return
    if _direct_child(state, anchor_id) and slot.group.startswith("c"):
        # An anchor counts its own children before they are written: never missing.
        raise RuntimeError(f"anchor {anchor_id} did not count its child {state.id}")
    details = state.owed_registration or {"open": 1}
    registration = tally.Registration(slot.group, details["open"], details.get("settled", {}))
    await _apply(anchor_id, *tally.register(registration, tally.ANCHOR))


def _direct_child(state: State, anchor_id: ObjectId) -> bool:
    return bool(state.parents) and list(state.parents.values())[-1] == str(anchor_id)


async def reopen_in(anchor_id: ObjectId, state: State) -> None:
    """Count a repaired state (`reopened_from` set) open again below the anchor; once."""
    assert state.reopened_from is not None
    slot = tally.Slot(state.owed_group, state.owed_index)
    await _apply(anchor_id, *tally.reopen(slot, state.reopened_from, tally.ANCHOR))
