"""The timeline tab of a large run (a fan-out of 200): one row per node, in time order, with its
spread (first claim to last end, median and p95 end marked) and a link to the node's states; one
bar per attempt stays a click away, and a small run keeps it."""

from __future__ import annotations

import html
import re

from tests.factories import Api
from tests.state_manager.dashboard import fan_out
from tests.state_manager.dashboard.conftest import Ui, rows, run_url, text_of


def _timeline(page: str) -> str:
    match = re.search(r'<svg class="timeline".*?</svg>', page, re.S)
    assert match, "no timeline on the page"
    return match.group(0)


async def _fan_run(api: Api) -> str:
    await api.setup("fan", fan_out.fan_graph(join=False), *fan_out.NODES)
    run_id: str = (await api.trigger("fan"))["run_id"]
    await fan_out.play(api, branches=200, failing={"7"})
    return run_id


async def test_a_fan_out_of_200_is_one_row_per_node_in_time_order_not_200_bars(api: Api, ui: Ui) -> None:
    run_id = await _fan_run(api)

    page = await ui.page(run_url(run_id, suffix="?tab=timeline"))

    svg = _timeline(page)
    assert 'data-rows="node"' in svg
    # By first claim (the start, the fan-out, its branches), not by name (leaf, split, start).
    assert rows(svg, "data-identifier", tag="g") == ["start", "split", "leaf"]
    assert rows(svg, "data-count", tag="g") == ["1", "200", "200"]
    assert rows(svg, "data-status", tag="g") == ["SUCCESS", "SUCCESS", "FAILED"]
    leaf = re.search(r'<a href="([^"]+)"><g class="[^"]*" data-identifier="leaf".*?</g></a>', svg, re.S)
    assert leaf, "no row for leaf"
    assert html.unescape(leaf.group(1)) == run_url(run_id, suffix="?tab=states&identifier=leaf")
    row = leaf.group(0)
    # One bar from first claim to last end, green: 199 of 200 succeeded; the failure is a tick.
    assert row.count('class="spread spread-done"') == 1 and row.count('class="tick-failed"') == 1
    assert 'class="mark mark-median"' in row and 'class="mark mark-p95"' in row
    assert "first claim +" in row and "median end +" in row and "p95 end +" in row and "last end +" in row
    assert "leaf \u00d7200" in svg
    # The same figures as a table, one row per node, each linking to the node's states.
    assert rows(page, "data-identifier") == ["start", "split", "leaf"]
    text = text_of(page)
    for heading in ("First claim", "Median end", "p95 end", "Last end", "Run time, median"):
        assert heading in text
    assert "200 · 1 failed" in text
    assert page.count('href="' + html.escape(run_url(run_id, suffix="?tab=states&identifier=leaf"))) >= 2


async def test_the_node_rows_drill_down_to_the_states_of_that_node(api: Api, ui: Ui) -> None:
    run_id = await _fan_run(api)
    timeline = await ui.page(run_url(run_id, suffix="?tab=timeline"))
    link = re.search(r'<a href="([^"]*identifier=leaf[^"]*)"><g', timeline)
    assert link

    states = await ui.page(html.unescape(link.group(1)))

    assert len(rows(states, "data-state-id")) == 50 and 'rel="next"' in states
    assert '<option value="leaf" selected>' in states


async def test_one_bar_per_attempt_is_a_click_away_and_paged(api: Api, ui: Ui) -> None:
    run_id = await _fan_run(api)
    grouped = await ui.page(run_url(run_id, suffix="?tab=timeline"))
    toggle = re.search(r'<a href="([^"]*by=state[^"]*)"', grouped)
    assert toggle and "One row per attempt" in grouped

    page = await ui.page(run_url(run_id, suffix=html.unescape(toggle.group(1))))

    svg = _timeline(page)
    assert 'data-rows="state"' in svg and len(rows(svg, "data-state-id", tag="g")) == 100
    assert 'rel="next"' in page


async def test_the_axis_is_labelled_in_one_unit_fit_for_the_span(api: Api, ui: Ui) -> None:
    run_id = await _fan_run(api)  # played in-process: a few seconds

    svg = _timeline(await ui.page(run_url(run_id, suffix="?tab=timeline")))

    unit = re.search(r'data-unit="(\w+)"', svg)
    assert unit and unit.group(1) in {"ms", "s"}
    labels = re.findall(r'<text class="tick-label anchor-(?:middle|end)"[^>]*>([^<]+)</text>', svg)
    assert labels and all(label.endswith(f" {unit.group(1)}") for label in labels), labels
    assert "0 = " in svg  # the axis's zero as a clock time
