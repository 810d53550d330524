"""The runs page (filters, paging, empty state, polling) and the run page (header, the DAG,
states, timeline, store) over the in-process tier."""

from __future__ import annotations

import asyncio
import html
import re

from tests.factories import ALPHA, BETA, NO_RETRY, Api, Worker, chain, fixed_retry, graph, template
from tests.state_manager.dashboard.conftest import Ui, rows, run_url, svg_of, text_of

RUNS = "/ui/ns/testns/runs"


async def _three_runs(api: Api) -> dict[str, str]:
    """A finished run, a failed one and one still waiting, oldest first."""
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    done = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    failed = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").fail("no luck")
    waiting = (await api.trigger("g"))["run_id"]
    return {"done": done, "failed": failed, "waiting": waiting}


async def test_the_runs_page_lists_runs_newest_first_with_status_progress_and_counts(
    api: Api, ui: Ui
) -> None:
    runs = await _three_runs(api)

    page = await ui.page(RUNS)

    assert rows(page, "data-run-id") == [runs["waiting"], runs["failed"], runs["done"]]
    assert rows(page, "data-status") == ["PENDING", "FAILED", "SUCCESS"]
    text = text_of(page)
    assert "2/2" in text and "0/1" in text  # progress: successes of all states
    # A run still going counts its states still open together.
    assert "2 success" in text and "1 errored" in text and "1 open" in text
    assert page.count('class="mini-bar"') == 3
    assert f'href="/ui/ns/testns/runs/{runs["done"]}"' in page


async def test_the_runs_page_filters_by_status_graph_and_time(api: Api, ui: Ui) -> None:
    runs = await _three_runs(api)
    await api.setup("other", chain())
    other = (await api.trigger("other"))["run_id"]

    assert rows(await ui.page(f"{RUNS}?status=FAILED"), "data-run-id") == [runs["failed"]]
    assert rows(await ui.page(f"{RUNS}?graph=other"), "data-run-id") == [other]
    assert len(rows(await ui.page(f"{RUNS}?range=15m"), "data-run-id")) == 4
    past = await ui.page(f"{RUNS}?until=2000-01-01T00:00")
    assert rows(past, "data-run-id") == [] and "No runs match these filters" in past
    assert rows(await ui.page(f"{RUNS}?since=2000-01-01T00:00&status=PENDING"), "data-run-id") == [
        other,
        runs["waiting"],
    ]
    filtered = await ui.page(f"{RUNS}?graph=other")
    assert '<option value="other" selected>' in filtered  # the form shows what is applied


async def test_a_bad_filter_is_a_clear_page_not_a_crash(ui: Ui) -> None:
    for query, words in (("?since=yesterday", "is not a date"), ("?status=DONE", "Unknown status")):
        response = await ui.get(f"{RUNS}{query}", expect=400)
        assert words in response.text and "text/html" in response.headers["content-type"]


async def test_jumping_to_a_run_id_opens_its_page_and_an_unknown_one_says_so(api: Api, ui: Ui) -> None:
    runs = await _three_runs(api)

    response = await ui.get(f"{RUNS}?run=+{runs['done']}+", expect=303)
    assert response.headers["location"] == run_url(runs["done"])
    missing = await ui.get(run_url("no-such-run"), expect=404)
    assert "Run no-such-run not found in namespace testns" in missing.text


async def test_older_runs_are_one_link_away_without_repeats(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    made = [(await api.trigger("g"))["run_id"] for _ in range(53)]

    first = await ui.page(RUNS)
    older = re.search(r'href="(\?cursor=[^"]+)" rel="next"', first)
    assert older, "no Older link"
    second = await ui.page(RUNS + html.unescape(older.group(1)))

    assert rows(first, "data-run-id") == made[::-1][:50]
    assert rows(second, "data-run-id") == made[::-1][50:]
    assert 'rel="next"' not in second and "Newest" in second


async def test_with_no_runs_the_page_says_how_to_trigger_one(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    text = html.unescape(text_of(await ui.page(RUNS)))

    assert "No runs in testns yet" in text
    assert "curl -X POST http://test/v0/namespace/testns/graph/g/trigger" in text
    assert "x-api-key: $EXOSPHERE_API_KEY" in text
    assert 'StateManager(namespace="testns")' in text and 'client.trigger("g"' in text


async def test_polling_stops_once_what_a_page_shows_is_final(api: Api, ui: Ui) -> None:
    runs = await _three_runs(api)
    state = (await api.run_states(runs["waiting"]))[0]

    assert "data-poll=" in await ui.page(run_url(runs["waiting"]))
    assert "data-poll=" not in await ui.page(run_url(runs["done"]))
    assert "data-poll=" not in await ui.page(run_url(runs["failed"]))
    assert "data-poll=" in await ui.page(f"/ui/ns/testns/states/{state['id']}")  # CREATED
    done_state = (await api.run_states(runs["done"]))[0]
    assert "data-poll=" not in await ui.page(f"/ui/ns/testns/states/{done_state['id']}")
    # The first page of runs may gain a run any time; a window in the past is final.
    assert "data-poll=" in await ui.page(RUNS)
    assert "data-poll=" not in await ui.page(f"{RUNS}?status=SUCCESS&cursor=9999999999999:z")
    assert "data-poll=" not in await ui.page(f"{RUNS}?until=2000-01-01T00:00")


async def test_the_run_page_shows_its_header_and_the_template_dag_with_status_boxes_and_edges(
    api: Api, ui: Ui
) -> None:
    runs = await _three_runs(api)

    page = await ui.page(run_url(runs["failed"]))

    assert 'id="run-status"' in page and 'data-status="FAILED"' in page
    text = text_of(page)
    assert "Triggered by api" in text and "1 state" in text and "Retry failed (1)" in text
    assert "Cancel run" not in text  # a failed run has ended
    svg = svg_of(page)
    boxes = dict(re.findall(r'<g class="node[^"]*" data-identifier="([^"]+)" data-status="([^"]+)"', svg))
    assert boxes == {"a": "FAILED", "b": "NOT_STARTED"}
    assert re.search(r'<path class="edge" d="M[^"]+" data-source="a" data-target="b"', svg)
    assert 'href="/ui/ns/testns/runs/{}?tab=states&amp;identifier=b"'.format(runs["failed"]) in svg


async def test_a_fan_out_is_one_box_with_the_counts_of_all_its_states(api: Api, ui: Ui) -> None:
    fan = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]), template("b", "Beta", {"x": "${{ a.outputs.y }}"})
    )
    await api.setup("fan", fan, ALPHA, BETA)
    run_id = (await api.trigger("fan"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": str(i)} for i in range(5)])
    await Worker(api, "Beta").execute()
    await Worker(api, "Beta").claim_one()

    svg = svg_of(await ui.page(run_url(run_id)))

    assert svg.count('data-identifier="b"') == 1
    assert 'data-identifier="b" data-status="RUNNING"' in svg
    assert "Beta · 5 states" in svg and "1 done · 1 running · 3 waiting" in svg


async def test_the_states_tab_is_paged_and_filtered_by_node_and_status(api: Api, ui: Ui) -> None:
    fan = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        retry_policy=NO_RETRY,
    )
    await api.setup("fan", fan, ALPHA, BETA)
    run_id = (await api.trigger("fan"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": str(i)} for i in range(30)])
    broken, _ = await Worker(api, "Beta").fail("bad <b>input</b>")

    first = await ui.page(run_url(run_id, suffix="?tab=states"))
    ids = rows(first, "data-state-id")
    assert len(ids) == 50 and 'rel="next"' in first  # 30 copies of a and 30 b: never all at once
    more = re.search(r'href="(\?[^"]*cursor=[^"]+)" rel="next"', first)
    assert more
    second = rows(await ui.page(run_url(run_id, suffix=html.unescape(more.group(1)))), "data-state-id")
    assert len(second) == 10 and not set(ids) & set(second)

    only_b = await ui.page(run_url(run_id, suffix="?tab=states&identifier=b"))
    assert len(rows(only_b, "data-state-id")) == 30 and "Beta" in only_b and "Alpha" not in text_of(only_b)
    errored = await ui.page(run_url(run_id, suffix="?tab=states&status=ERRORED"))
    assert rows(errored, "data-state-id") == [broken["state_id"]]
    assert "bad &lt;b&gt;input&lt;/b&gt;" in errored and "<b>input</b>" not in errored


async def test_the_timeline_shows_waiting_and_running_bars_with_each_retry_a_row(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(retry_policy=fixed_retry(1, 1)), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").fail("first try")
    await asyncio.sleep(0.01)  # the retry's 1 ms delay
    await Worker(api, "Alpha").execute()

    page = await ui.page(run_url(run_id, suffix="?tab=timeline"))

    timeline = re.search(r'<svg class="timeline".*?</svg>', page, re.S)
    assert timeline
    svg = timeline.group(0)
    assert rows(svg, "data-status", tag="g") == ["RETRY_CREATED", "SUCCESS", "CREATED"]
    assert "retry 1" in svg
    assert svg.count("seg seg-running") == 2 and svg.count("seg seg-waiting") >= 2
    assert svg.count('href="/ui/ns/testns/states/') == 3


async def test_the_store_tab_shows_the_runs_store_as_text(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"store": {"topic": "<script>alert(1)</script>", "n": "3"}}))["run_id"]

    page = await ui.page(run_url(run_id, suffix="?tab=store"))

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert re.search(r'<td class="mono">n</td><td><pre class="inline">3</pre>', page)
