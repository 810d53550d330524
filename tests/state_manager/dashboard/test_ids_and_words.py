"""How pages name things: short ids that tell two states of one run apart (the full id on hover
and in the link), the states list's order said as it is, QUEUED shown as "claimed" (URLs keep
QUEUED), RETRY_CREATED as "retried" everywhere, and counts in proper English."""

from __future__ import annotations

import html
import re

from state_manager.dashboard.render import short_id
from tests.factories import ALPHA, BETA, NO_RETRY, Api, Worker, chain, fixed_retry, graph, template
from tests.state_manager.dashboard.conftest import Ui, run_url, svg_of, text_of

# A link that shows a shortened id: its href, its title (if any) and its text.
SHORT_LINK = re.compile(r'<a class="mono" href="([^"]+)"(?: title="([^"]*)")?>([^<]*…[^<]*)</a>')


async def _fan_run(api: Api, branches: int = 30) -> str:
    fan = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        retry_policy=NO_RETRY,
    )
    await api.setup("fan", fan, ALPHA, BETA)
    run_id: str = (await api.trigger("fan"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": str(i)} for i in range(branches)])
    return run_id


def test_a_short_id_keeps_the_last_characters_that_differ_between_states() -> None:
    first, second = "6b169344e65c3d2c1e30d2a5", "6b169344e65c3d2c1e30d2a7"

    assert short_id(first) == "6b16…30d2a5" and short_id(first) != short_id(second)
    assert short_id("short-id") == "short-id"


async def test_the_states_of_a_run_have_short_ids_that_differ_and_full_ids_on_hover(api: Api, ui: Ui) -> None:
    run_id = await _fan_run(api)

    page = await ui.page(run_url(run_id, suffix="?tab=states"))

    links = SHORT_LINK.findall(page)
    assert len(links) == 50
    shown = [text for _, _, text in links]
    assert len(set(shown)) == len(shown), "two states of the run look alike"
    for href, title, _ in links:
        assert title and href.endswith("/states/" + title)  # the full id, on hover and in the link


async def test_every_short_id_on_every_page_has_its_full_id_on_hover_and_in_its_link(
    api: Api, ui: Ui
) -> None:
    await api.setup("g", chain(retry_policy=fixed_retry(1, 1)), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    failed, _ = await Worker(api, "Alpha").fail("first try")
    await api.upsert(
        "g",
        chain(
            retry_policy=fixed_retry(1, 1), triggers=[{"type": "CRON", "value": {"expression": "0 6 * * *"}}]
        ),
    )
    pages = [
        "/ui/ns/testns/runs",
        run_url(run_id, suffix="?tab=states"),
        f"/ui/ns/testns/states/{failed['state_id']}",
        "/ui/ns/testns/graphs/g",
    ]
    for path in pages:
        page = await ui.page(path)
        links = SHORT_LINK.findall(page)
        assert links, f"no short id on {path}"
        for href, title, text in links:
            assert title, f"{text} on {path} has no full id on hover"
            assert html.unescape(href).rstrip("/").endswith(title), (path, href, title)


async def test_the_states_list_says_what_it_is_sorted_by(api: Api, ui: Ui) -> None:
    run_id = await _fan_run(api, branches=3)

    page = await ui.page(run_url(run_id, suffix="?tab=states"))

    # The order is the ids' (a fan-out's copies take the creation second of the state they copy),
    # and the page says so rather than "oldest first".
    assert "Sorted by state id, which is only roughly the order they were created in" in text_of(page)
    assert re.search(r'<td class="nowrap" title="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00">', page)


async def test_a_claimed_state_is_shown_as_claimed_while_urls_keep_queued(api: Api, ui: Ui) -> None:
    run_id = await _fan_run(api, branches=3)
    await Worker(api, "Beta").claim_one()

    page = await ui.page(run_url(run_id, suffix="?tab=states&status=QUEUED"))

    text = text_of(page)
    assert "QUEUED" not in text and "queued" not in text
    assert '<option value="QUEUED" selected>Claimed</option>' in page  # the filter: value kept, word shown
    assert '<span class="badge s-QUEUED" data-status="QUEUED">CLAIMED</span>' in page
    assert "1 claimed" in text  # the run's counts
    graph_tab = await ui.page(run_url(run_id))
    assert "claimed: 1" in svg_of(graph_tab) and "running (claimed by a runtime)" in text_of(graph_tab)
    assert "QUEUED" not in text_of(graph_tab)


async def test_a_retried_attempt_is_called_retried_in_counts_badges_and_boxes(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(retry_policy=fixed_retry(1, 1)), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").fail("first try")

    page = await ui.page(run_url(run_id))
    states = await ui.page(run_url(run_id, suffix="?tab=states"))

    assert "1 retried" in text_of(page) and "retry created" not in text_of(page).lower()
    assert "1 retried" in svg_of(page) and "retried" in text_of(page)  # the box and the legend
    assert '<span class="badge s-RETRY_CREATED" data-status="RETRY_CREATED">RETRIED</span>' in states
    assert '<option value="RETRY_CREATED">Retried</option>' in states
    assert "RETRY_CREATED" not in text_of(states)


async def test_the_retry_notice_counts_its_attempts_in_proper_english(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]

    one = text_of(await ui.page(run_url(run_id, suffix="?msg=retried&n=1")))
    two = text_of(await ui.page(run_url(run_id, suffix="?msg=retried&n=2")))
    odd = text_of(await ui.page(run_url(run_id, suffix="?msg=retried&n=" + "9" * 5000)))

    assert "Failed states were retried: 1 new attempt." in one
    assert "Failed states were retried: 2 new attempts." in two
    assert "Failed states were retried: new attempts." in odd
    assert "(s)" not in one + two + odd


async def test_the_queues_call_claimed_states_claimed(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    await Worker(api, "Alpha").claim_one()

    page = await ui.page("/ui/ns/testns/nodes")

    assert '<th class="num" title="claimed by a runtime: running">Claimed</th>' in page
