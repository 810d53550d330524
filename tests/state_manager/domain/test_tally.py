"""The tally's updates (domain/tally.py): the same operations for a run and for a join's anchor."""

from __future__ import annotations

from state_manager.domain import tally
from state_manager.domain.tally import ANCHOR, RUN, Registration, Slot


def test_a_registration_sets_the_bits_of_its_members_only() -> None:
    assert tally.group_bits(3) == {"0": 0b111}
    # A fan-out copy's part of its original's children: members 6..9 of the group.
    assert tally.group_bits(4, first=6) == {"0": 0b1100_0000, "1": 0b11}


def test_the_anchor_keeps_its_tally_in_fields_of_its_own() -> None:
    query, update = tally.settle(Slot("c1", 9), "SUCCESS", [Registration("c2", 2)], ANCHOR)

    assert query == {
        "below_owed.c1.1": {"$in": list(tally.values_with(0b10))},
        "below_owed.c2": {"$exists": False},
    }
    assert update["$inc"] == {
        "below_owed.c1.1": -0b10,
        "below_settled.SUCCESS": 1,
        "below_open": -1 + 2,
        "below_created": 2,
    }
    assert update["$set"] == {"below_owed.c2": {"0": 0b11}}
    # The run's own fields are untouched by an anchor's count, and the other way round.
    run_query, run_update = tally.settle(Slot("c1", 9), "SUCCESS", ledger=RUN)
    assert list(run_query) == ["owed.c1.1"] and "open" in run_update["$inc"]


def test_a_reopen_is_counted_so_a_join_made_before_it_is_found_out() -> None:
    _, update = tally.reopen(Slot("o5"), "ERRORED", ANCHOR)
    assert update["$inc"] == {"below_settled.ERRORED": -1, "below_open": 1, "below_reopens": 1}


def test_a_big_group_drops_the_chunk_before_the_last_member_of_each_chunk() -> None:
    assert tally.drop_cleared(Slot("c1", 23), 5000) == ({"owed.c1.1": 0}, {"$unset": {"owed.c1.1": ""}})
    assert tally.drop_cleared(Slot("c1", 23), 5000, ANCHOR) == (
        {"below_owed.c1.1": 0},
        {"$unset": {"below_owed.c1.1": ""}},
    )
    assert tally.drop_cleared(Slot("c1", 22), 5000) is None  # not the last member of its chunk
    assert tally.drop_cleared(Slot("c1", 7), 5000) is None  # no chunk before it
    assert tally.drop_cleared(Slot("c1", 23), 10) is None  # a small group: its document stays small


def test_a_dropped_chunk_reads_as_settled() -> None:
    owed = {"c1": {"1": 0b100}}  # chunk 0 dropped
    assert tally.is_owed(owed, Slot("c1", 3)) is False
    assert tally.is_owed(owed, Slot("c1", 10)) is True
    assert tally.is_owed(owed, Slot("c9", 0)) is None
