"""The diff of two runs from their states: one entry per identifier and fan-out position, the
latest attempt at each compared, the differing fields named by path, in the graph's order."""

from __future__ import annotations

import itertools
from typing import Any

from state_manager.domain.run_diff import Change, FieldChange, StateSnapshot, diff_runs

_ids = itertools.count()


def state(
    identifier: str,
    outputs: dict[str, Any] | None = None,
    *,
    status: str = "SUCCESS",
    inputs: dict[str, Any] | None = None,
    path: tuple[int, ...] = (),
    index: int = 0,
    retry: int = 0,
    generation: int = 0,
) -> StateSnapshot:
    n = next(_ids)
    return StateSnapshot(
        state_id=f"s{n}",
        identifier=identifier,
        status=status,
        inputs=inputs if inputs is not None else {"x": "in"},
        outputs=outputs if outputs is not None else {"y": "out"},
        fanout_path=path,
        output_index=index,
        retry_count=retry,
        join_generation=generation,
        order=n,
    )


def entries(a: list[StateSnapshot], b: list[StateSnapshot], order: list[str]) -> list[tuple[Any, ...]]:
    return [(n.identifier, n.position, n.change) for n in diff_runs(a, b, order).nodes]


def test_two_runs_with_the_same_states_are_the_same_everywhere() -> None:
    a = [state("first"), state("second", inputs={"x": "out"})]
    b = [state("first"), state("second", inputs={"x": "out"})]

    result = diff_runs(a, b, ["first", "second"])

    assert [(n.identifier, n.position, n.change, n.fields) for n in result.nodes] == [
        ("first", (0,), Change.SAME, []),
        ("second", (0,), Change.SAME, []),
    ]
    assert result.summary == {"same": 2, "changed": 0, "only_a": 0, "only_b": 0}
    # Each side is that run's own state.
    assert [n.a.state_id for n in result.nodes if n.a] == [s.state_id for s in a]
    assert [n.b.state_id for n in result.nodes if n.b] == [s.state_id for s in b]


def test_a_changed_node_lists_each_differing_field_by_path_with_both_values() -> None:
    a = [state("total", {"total": "12", "currency": "EUR", "note": "x"}, inputs={"rate": "0.2", "n": "3"})]
    b = [
        state(
            "total",
            {"total": "13", "currency": "EUR", "extra": "new"},
            status="ERRORED",
            inputs={"rate": "0.3", "n": "3"},
        )
    ]

    [node] = diff_runs(a, b, ["total"]).nodes

    assert node.change == Change.CHANGED
    assert node.fields == [
        FieldChange("status", "SUCCESS", "ERRORED"),
        FieldChange("inputs.rate", "0.2", "0.3"),
        FieldChange("outputs.total", "12", "13"),
        FieldChange("outputs.note", "x", None),  # missing in B
        FieldChange("outputs.extra", None, "new"),  # missing in A
    ]


def test_values_are_compared_with_equality_not_by_their_text() -> None:
    a = [state("n", {"items": [1, 2], "meta": {"k": 1}, "count": 1})]
    same = [state("n", {"items": [1, 2], "meta": {"k": 1}, "count": 1.0})]
    other = [state("n", {"items": [2, 1], "meta": {"k": 1}, "count": 1})]

    assert diff_runs(a, same, ["n"]).nodes[0].change == Change.SAME
    assert diff_runs(a, other, ["n"]).nodes[0].fields == [FieldChange("outputs.items", [1, 2], [2, 1])]


def test_a_field_present_as_null_differs_from_a_missing_one() -> None:
    a = [state("n", {"y": None})]
    b = [state("n", {})]

    assert diff_runs(a, b, ["n"]).nodes[0].fields == [FieldChange("outputs.y", None, None)]


def test_each_fan_out_copy_is_its_own_entry_at_its_position() -> None:
    # split fanned out 3 ways; each copy's child sits below it: position [i, 0].
    a = [
        state("split", {"item": "p"}, index=0),
        state("split", {"item": "q"}, index=1),
        state("split", {"item": "r"}, index=2),
        state("work", {"y": "P"}, path=(0,)),
        state("work", {"y": "Q"}, path=(1,)),
        state("work", {"y": "R"}, path=(2,)),
    ]
    b = [
        state("split", {"item": "p"}, index=0),
        state("split", {"item": "q"}, index=1),
        state("work", {"y": "P"}, path=(0,)),
        state("work", {"y": "changed"}, path=(1,)),
    ]

    result = diff_runs(a, b, ["split", "work"])

    assert [(n.identifier, n.position, n.change) for n in result.nodes] == [
        ("split", (0,), Change.SAME),
        ("split", (1,), Change.SAME),
        ("split", (2,), Change.ONLY_A),
        ("work", (0, 0), Change.SAME),
        ("work", (1, 0), Change.CHANGED),
        ("work", (2, 0), Change.ONLY_A),
    ]
    assert result.nodes[4].fields == [FieldChange("outputs.y", "Q", "changed")]
    only = result.nodes[2]
    assert only.b is None and only.a is not None and only.a.outputs == {"item": "r"} and only.fields == []
    assert result.summary == {"same": 3, "changed": 1, "only_a": 2, "only_b": 0}


def test_positions_order_numerically_within_a_node() -> None:
    a = [state("n", path=(p,), index=i) for p in (10, 2) for i in (1, 0)]

    assert [n.position for n in diff_runs(a, [], ["n"]).nodes] == [(2, 0), (2, 1), (10, 0), (10, 1)]


def test_a_node_only_in_run_b_is_only_b() -> None:
    a = [state("first")]
    b = [state("first"), state("second")]

    result = diff_runs(a, b, ["first", "second"])

    assert [(n.identifier, n.change) for n in result.nodes] == [
        ("first", Change.SAME),
        ("second", Change.ONLY_B),
    ]
    assert result.nodes[1].a is None and result.nodes[1].b == b[1]
    assert result.summary == {"same": 1, "changed": 0, "only_a": 0, "only_b": 1}


def test_the_latest_attempt_of_a_retried_node_is_compared() -> None:
    # A failed once and was retried; its retry succeeded with the same outputs as B's.
    a = [
        state("n", {}, status="RETRY_CREATED", retry=0),
        state("n", {"y": "ok"}, retry=1),
    ]
    b = [state("n", {"y": "ok"})]

    [node] = diff_runs(a, b, ["n"]).nodes

    assert node.change == Change.SAME and node.a == a[1]


def test_a_retry_still_waiting_is_compared_rather_than_the_attempt_it_replaced() -> None:
    a = [state("n", {}, status="RETRY_CREATED"), state("n", {}, status="CREATED", retry=1)]
    b = [state("n", {"y": "ok"})]

    [node] = diff_runs(a, b, ["n"]).nodes

    assert node.a == a[1]
    assert node.fields == [FieldChange("status", "CREATED", "SUCCESS"), FieldChange("outputs.y", None, "ok")]


def test_when_every_attempt_was_retried_the_last_one_is_compared() -> None:
    a = [state("n", {}, status="RETRY_CREATED", retry=0), state("n", {}, status="RETRY_CREATED", retry=1)]

    assert diff_runs(a, [], ["n"]).nodes[0].a == a[1]


def test_a_join_made_again_is_compared_at_its_highest_generation() -> None:
    # The join's first generation was superseded by a repair (RETRY_CREATED); generation 1 ran
    # and was itself retried once (retry_count 1), but generation 2 (retry_count 0) is the latest.
    a = [
        state("join", {"all": "old"}, status="RETRY_CREATED", generation=0),
        state("join", {"all": "mid"}, retry=1, generation=1, status="ERRORED"),
        state("join", {"all": "new"}, generation=2),
    ]
    a_order_shuffled = [a[2], a[0], a[1]]
    b = [state("join", {"all": "new"})]

    assert diff_runs(a, b, ["join"]).nodes[0].a == a[2]
    assert diff_runs(a_order_shuffled, b, ["join"]).nodes[0].a == a[2]
    assert diff_runs(a, b, ["join"]).nodes[0].change == Change.SAME


def test_between_equal_attempts_the_one_created_last_is_compared() -> None:
    first, second = state("n", {"y": "1"}), state("n", {"y": "2"})

    assert diff_runs([second, first], [], ["n"]).nodes[0].a == second


def test_entries_follow_the_graph_order_not_the_order_states_were_made() -> None:
    a = [state("c"), state("a"), state("b")]
    b = [state("b"), state("c"), state("a")]

    assert entries(a, b, ["a", "b", "c"]) == [
        ("a", (0,), Change.SAME),
        ("b", (0,), Change.SAME),
        ("c", (0,), Change.SAME),
    ]


def test_identifiers_the_graph_no_longer_names_follow_in_the_order_first_seen() -> None:
    a = [state("gone2"), state("kept"), state("gone1")]
    b = [state("kept"), state("gone3")]

    assert [n.identifier for n in diff_runs(a, b, ["kept"]).nodes] == ["kept", "gone2", "gone1", "gone3"]
    # With no template at all, the order is the order first seen.
    assert [n.identifier for n in diff_runs(a, b, []).nodes] == ["gone2", "kept", "gone1", "gone3"]


def test_two_empty_runs_have_an_empty_diff() -> None:
    result = diff_runs([], [], ["a"])

    assert result.nodes == [] and result.summary == {"same": 0, "changed": 0, "only_a": 0, "only_b": 0}
