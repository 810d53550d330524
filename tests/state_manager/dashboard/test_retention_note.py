"""The runs page says how long finished runs are kept (RUN_RETENTION)."""

from __future__ import annotations

import pytest

from tests.state_manager.dashboard.conftest import Ui, text_of

RUNS = "/ui/ns/testns/runs"


@pytest.mark.parametrize(
    ("settings_overrides", "note"),
    [
        ({"run_retention": "30d"}, "Finished runs are kept for 30 days after they end (RUN_RETENTION)."),
        (
            {"run_retention": "1d12h"},
            "Finished runs are kept for 1 day 12 hours after they end (RUN_RETENTION).",
        ),
        ({}, "Finished runs are kept forever (RUN_RETENTION is not set)."),
    ],
)
async def test_the_runs_page_says_how_long_finished_runs_are_kept(ui: Ui, note: str) -> None:
    assert note in text_of(await ui.page(RUNS))
