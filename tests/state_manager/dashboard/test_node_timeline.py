"""The timeline of a large run grouped by node: percentiles, each node's span, time order."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from state_manager.dashboard.node_timeline import group_by_node, percentile, render_svg, span_of
from state_manager.schemas.runs import StateView
from tests.state_manager.dashboard.test_timeline import SVG
from tests.state_manager.dashboard.test_timeline import _state as state_at


def _state(identifier: str, number: int, status: str = "SUCCESS", **times: Any) -> StateView:
    return state_at(status, id=f"6b0dc8eab6593ae0149{number:05d}", identifier=identifier, **times)


def _branches(identifier: str, ends: list[int], claimed: int = 1100) -> list[StateView]:
    return [
        _state(identifier, i, claimed_ms=claimed + i, ended_ms=end, updated_ms=end)
        for i, end in enumerate(ends)
    ]


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7
    assert percentile([4, 1, 3, 2], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.95) == 95
    assert percentile(list(range(1, 201)), 0.5) == 100


def test_a_nodes_span_runs_from_its_first_claim_to_its_last_end() -> None:
    ends = [1000 + 10 * i for i in range(1, 101)]  # 1010 ... 2000
    span = span_of(_branches("leaf", ends, claimed=1000), now=9999)

    assert (span.count, span.first_due, span.first_claim) == (100, 1000, 1000)
    assert (span.median_end, span.p95_end, span.last_end, span.until) == (1500, 1950, 2000, 2000)
    assert span.median_run is not None and span.p95_run is not None and span.median_run <= span.p95_run
    assert span.status == "SUCCESS" and span.moving == 0


def test_a_node_still_going_reaches_now_and_says_how_many_move() -> None:
    states = [
        *_branches("leaf", [1500]),
        _state("leaf", 9, "QUEUED", claimed_ms=1200),
        _state("leaf", 10, "CREATED"),
    ]

    span = span_of(states, now=5000)

    assert span.until == 5000 and span.last_end == 1500 and span.moving == 2
    assert span.status == "RUNNING" and span.median_end == 1500


def test_a_node_nobody_claimed_waits_from_its_first_due_time() -> None:
    span = span_of([_state("lonely", 1, "CREATED", due=3000)], now=8000)

    assert span.first_claim is None and span.start == 3000 and span.until == 8000
    assert span.median_end is None and span.status == "PENDING"


def test_nodes_go_in_time_order_not_by_name() -> None:
    states = [
        *_branches("a_report", [3000], claimed=2900),
        *_branches("z_start", [1200], claimed=1100),
        *_branches("m_leaf", [2000, 2100, 2500], claimed=1300),
    ]

    assert [s.identifier for s in group_by_node(states, now=9999)] == ["z_start", "m_leaf", "a_report"]


def test_each_row_links_to_its_node_and_marks_median_and_p95_ends() -> None:
    spans = group_by_node(
        _branches("leaf", [1000 + 10 * i for i in range(1, 41)]) + _branches("start", [1050], 1000), now=9999
    )

    svg = ET.fromstring(render_svg(spans, href=lambda ident: f"/states?identifier={ident}"))

    assert svg.get("data-rows") == "node"
    assert [a.get("href") for a in svg.iter(f"{SVG}a")] == [
        "/states?identifier=start",
        "/states?identifier=leaf",
    ]
    leaf = next(g for g in svg.iter(f"{SVG}g") if g.get("data-identifier") == "leaf")
    assert leaf.get("data-count") == "40"
    assert {line.get("class") for line in leaf.iter(f"{SVG}line")} == {"mark mark-median", "mark mark-p95"}
    title = leaf.find(f"{SVG}title")
    assert title is not None and title.text and "median end +" in title.text and "40 states" in title.text


def test_failures_among_many_successes_are_ticks_on_a_done_bar_not_a_red_row() -> None:
    states = [
        *_branches("leaf", [2000, 2100, 2200]),
        _state("leaf", 7, "ERRORED", claimed_ms=1100, ended_ms=1900),
    ]

    span = span_of(states, now=9999)

    assert span.status == "FAILED" and span.bar == "done" and span.failed == 1
    assert span.failures == ((1900, "failed"),)
    only_failed = span_of([_state("leaf", 1, "ERRORED", claimed_ms=1100, ended_ms=1900)], now=9999)
    assert only_failed.bar == "failed"
    retried = span_of([_state("leaf", 1, "RETRY_CREATED", claimed_ms=1100, ended_ms=1200)], now=9999)
    assert retried.failures == ((1200, "retried"),) and retried.failed == 0


def test_a_marker_on_the_bars_end_is_left_out() -> None:
    single = group_by_node(_branches("start", [1050], 1000), now=9999)

    svg = ET.fromstring(render_svg(single, href=lambda ident: ident))

    assert [line for line in svg.iter(f"{SVG}line") if "mark" in (line.get("class") or "")] == []
