"""A run that does not move says why on its page: a start delay (when it starts, and in how long)
or a node whose due work no runtime asks for (the queues' stall, named on the run)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from state_manager.dashboard.run_notes import start_time
from tests.factories import ALPHA, BETA, Api, Worker, chain
from tests.state_manager.dashboard.conftest import Ui, run_url, text_of
from tests.state_manager.dashboard.test_timeline import _state


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"queue_stall_seconds": 0.2}


def _stall_warning(page: str) -> str | None:
    match = re.search(r'<div class="warning" role="alert" id="run-stall-warning">(.*?)</div>', page, re.S)
    return match.group(1) if match else None


def test_a_run_starts_when_its_first_waiting_state_is_due_if_that_is_to_come() -> None:
    seeds = [_state("CREATED", due=9000), _state("CREATED", due=7000), _state("CANCELLED", due=1000)]

    assert start_time(seeds, now=5000) == 7000
    assert start_time(seeds, now=7000) is None  # due now: it has started, as far as it can
    assert start_time([], now=5000) is None


async def test_a_delayed_run_says_when_it_starts_and_in_how_long(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"start_delay": 90_000}))["run_id"]

    for tab in ("graph", "states", "timeline"):
        text = text_of(await ui.page(run_url(run_id, suffix=f"?tab={tab}")))
        assert re.search(
            r"Delayed start: this run starts at (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d UTC , in 1 min (29|30) s\.",
            text,
        ), text[:3000]
    await api.trigger("g")
    assert "Delayed start" not in text_of(await ui.page("/ui/ns/testns/runs"))


async def test_a_run_that_waits_for_a_node_nobody_serves_names_it(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    assert _stall_warning(await ui.page(run_url(run_id))) is None  # due, but not for long yet
    await asyncio.sleep(0.3)  # over QUEUE_STALL_SECONDS, and nobody asked for Alpha's work

    for tab in ("graph", "states", "timeline"):
        warning = _stall_warning(await ui.page(run_url(run_id, suffix=f"?tab={tab}")))
        assert warning, f"no stall warning on the {tab} tab"
        text = text_of(warning)
        assert "Alpha" in text and "1 state of this run waits for it" in text
        assert "no runtime has ever asked for its work" in text
        assert 'href="/ui/ns/testns/nodes"' in warning and "Beta" not in text

    await Worker(api, "Alpha").execute()  # a runtime came: Alpha's work is done, Beta's now waits
    assert _stall_warning(await ui.page(run_url(run_id))) is None


async def test_a_delayed_run_is_not_stalled_and_a_finished_run_has_no_notes(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    later = (await api.trigger("g", {"start_delay": 60_000}))["run_id"]
    done = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    await asyncio.sleep(0.3)

    assert _stall_warning(await ui.page(run_url(later))) is None
    page = await ui.page(run_url(done))
    assert _stall_warning(page) is None and 'id="run-starts"' not in page
