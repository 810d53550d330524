"""The timelines' time axis: one unit chosen by the span, round steps, labels in that unit."""

from __future__ import annotations

import pytest

from state_manager.dashboard.axis import time_axis, unit_for


@pytest.mark.parametrize(
    ("span", "unit"),
    [
        (0, "ms"),
        (850, "ms"),
        (999, "ms"),
        (1_000, "s"),
        (1_999, "s"),
        (90_000, "s"),
        (240_000, "s"),
        (241_000, "min"),
        (4 * 3_600_000, "min"),
        (5 * 3_600_000, "h"),
        (5 * 86_400_000, "d"),
    ],
)
def test_the_unit_follows_the_span(span: int, unit: str) -> None:
    assert unit_for(span)[0] == unit


def test_ticks_are_round_steps_that_reach_past_the_end() -> None:
    axis = time_axis(10_000, 10_000 + 4_200)

    assert axis.unit == "s" and axis.step == 1_000 and axis.span == 5_000
    assert [axis.label(t) for t in axis.ticks] == ["0", "+1 s", "+2 s", "+3 s", "+4 s", "+5 s"]


def test_labels_keep_the_decimals_a_step_needs_and_no_more() -> None:
    axis = time_axis(0, 2_000)

    assert [axis.label(t) for t in axis.ticks] == ["0", "+0.5 s", "+1 s", "+1.5 s", "+2 s"]


@pytest.mark.parametrize("span", [1, 7, 180, 950, 4_200, 59_000, 600_000, 86_400_000, 100 * 86_400_000])
def test_every_axis_has_at_most_eight_steps_and_covers_its_span(span: int) -> None:
    axis = time_axis(0, span)

    assert axis.span >= span and 1 <= len(axis.ticks) - 1 <= 8
    assert axis.span % axis.step == 0


def test_milliseconds_for_a_run_that_took_under_a_second() -> None:
    axis = time_axis(0, 950)

    assert [axis.label(t) for t in axis.ticks] == [
        "0",
        "+200 ms",
        "+400 ms",
        "+600 ms",
        "+800 ms",
        "+1000 ms",
    ]
