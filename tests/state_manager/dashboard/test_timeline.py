"""The timeline's bars from a state's times: delayed, waiting for a runtime, running."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from state_manager.dashboard.timeline import Segment, render_svg, segments
from state_manager.schemas.runs import StateView

SVG = "{http://www.w3.org/2000/svg}"


def _state(status: str, **times: Any) -> StateView:
    values: dict[str, Any] = {
        "id": "6b0dc8eab6593ae014903784",
        "node_name": "N",
        "namespace_name": "ns",
        "identifier": "n",
        "graph_name": "g",
        "graph_version": 1,
        "run_id": "r",
        "status": status,
        "inputs": {},
        "outputs": {},
        "data": {},
        "error": None,
        "parents": {},
        "retry_count": 0,
        "fanout_id": "",
        "manual_retry_fanout_id": "",
        "fanout_path": [],
        "output_index": 0,
        "does_unites": False,
        "enqueue_after": times.pop("due", 1000),
        "claimed_ms": None,
        "ended_ms": None,
        "lease_expires_at": None,
        "deadline_ms": None,
        "created_ms": 1000,
        "updated_ms": 1000,
        "created_at": "",
        "updated_at": "",
    }
    values.update(times)
    return StateView(**values)


def test_a_finished_state_waited_then_ran() -> None:
    state = _state("SUCCESS", claimed_ms=1200, ended_ms=1700)
    assert segments(state, now=9999) == [Segment("waiting", 1000, 1200), Segment("running", 1200, 1700)]


def test_a_delayed_retry_shows_its_delay_first() -> None:
    state = _state("ERRORED", due=3000, claimed_ms=3100, ended_ms=3150, retry_count=1)
    assert [s.kind for s in segments(state, now=9999)] == ["delayed", "waiting", "running"]


def test_a_state_still_waiting_or_running_extends_to_now() -> None:
    assert segments(_state("CREATED"), now=1500) == [Segment("waiting", 1000, 1500)]
    assert segments(_state("QUEUED", claimed_ms=1100), now=1500)[-1] == Segment("running", 1100, 1500)


def test_a_state_that_ended_unclaimed_waited_until_it_ended() -> None:
    assert segments(_state("CANCELLED", ended_ms=1400), now=9999) == [Segment("waiting", 1000, 1400)]
    assert segments(_state("CANCELLED", ended_ms=1000), now=9999) == [Segment("waiting", 1000, 1000)]


def test_rows_link_to_their_states_and_label_retries() -> None:
    first = _state("RETRY_CREATED", claimed_ms=1100, ended_ms=1200)
    retry = _state(
        "SUCCESS", id="6b0dc8eab6593ae014903785", due=1300, claimed_ms=1350, ended_ms=1400, retry_count=1
    )

    svg = ET.fromstring(render_svg([first, retry], now=2000, href=lambda sid: f"/s/{sid}"))

    rows = list(svg.iter(f"{SVG}g"))
    assert [g.get("data-status") for g in rows] == ["RETRY_CREATED", "SUCCESS"]
    assert [a.get("href") for a in svg.iter(f"{SVG}a")] == [f"/s/{first.id}", f"/s/{retry.id}"]
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tl-label"]
    assert labels == ["n 903784", "n 903785 · retry 1"]
    kinds = [r.get("class") for r in rows[1].iter(f"{SVG}rect")]
    assert kinds == ["seg seg-delayed", "seg seg-waiting", "seg seg-running"]
