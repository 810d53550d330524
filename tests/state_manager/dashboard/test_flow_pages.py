"""Flow control on the pages (issue 18): a waiting state's page says why it waits and links what
holds it, a run's page sums up its waiting states by node and reason, and the nodes page lists
each limit with its keys in use (slots held, states waiting, a rate's next slot)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from state_manager.services import why
from tests.factories import Api, Json, graph, node, template
from tests.state_manager.dashboard.conftest import Ui, rows, run_url, text_of

ALPHA, BETA = node("Alpha"), node("Beta")


def state_url(state_id: str, ns: str = "testns") -> str:
    return f"/ui/ns/{ns}/states/{state_id}"


def _element(page: str, element_id: str) -> str:
    """The element with `id` (a div or a tr, with what it holds), or "" when there is none."""
    match = re.search(rf'<(div|section)\b[^>]*\bid="{element_id}".*?</\1>', page, re.S)
    return match.group(0) if match else ""


def _why_box(page: str) -> str:
    box = _element(page, "why")
    assert box, "no why box on the page"
    return box


def _row(page: str, **attributes: str) -> str:
    """The text of the one table row carrying these data- attributes."""
    wanted = "".join(rf'(?=[^>]*\bdata-{name}="{re.escape(value)}")' for name, value in attributes.items())
    found = re.findall(rf"<tr\b{wanted}[^>]*>.*?</tr>", page, re.S)
    assert len(found) == 1, f"{len(found)} rows with {attributes}"
    return " ".join(html.unescape(text_of(found[0])).split())


async def _parked(api: Api, name: str, body: Json, node_name: str) -> tuple[Json, str, str]:
    """Two runs of `body`: the first's state claimed (it holds the limit), the second's held
    back. Returns (the claimed state, the second run, its waiting state's id)."""
    stored = await api.upsert(name, body)
    assert stored["validation_status"] == "VALID", stored["validation_errors"]
    first = (await api.trigger(name))["run_id"]
    second = (await api.trigger(name))["run_id"]
    [held] = await api.claim(node_name, batch_size=10)
    assert held["run_id"] == first
    [waiting] = await api.run_states(second)
    return held, second, waiting["id"]


async def test_a_state_a_concurrency_limit_holds_back_says_so_on_its_run_and_the_nodes_page(
    api: Api, ui: Ui
) -> None:
    await api.register(ALPHA)
    limited = {**template("a", "Alpha", {"x": "go"}), "concurrency": {"limit": 1}}
    held, second, waiting = await _parked(api, "g", graph(limited), "Alpha")

    # The waiting state's page: why, in one line, and a link to the state holding the slot.
    page = await ui.page(state_url(waiting))
    box = _why_box(page)
    assert 'data-reason="concurrency"' in box
    assert (
        html.unescape(text_of(box)).split()
        == (
            "Waiting: Node Alpha runs at most 1 at once; 1 of 1 are held, so it waits for a slot "
            f"(it is next in line). Held by: {held['state_id'][:4]}…{held['state_id'][-6:]}"
        ).split()
    )
    assert f'href="/ui/ns/testns/states/{held["state_id"]}"' in box
    assert "data-poll=" in page
    assert 'id="why"' not in await ui.page(state_url(held["state_id"]))  # the holder runs

    # Its run's page: the group of its waiting states, by node and reason.
    run_page = await ui.page(run_url(second))
    assert rows(run_page, "data-reason") == ["concurrency"]
    group = _row(run_page, node="Alpha", reason="concurrency")
    assert group.startswith("Alpha node's concurrency limit 1 Node Alpha runs at most 1 at once")
    assert f'href="/ui/ns/testns/states/{held["state_id"]}"' in _element(run_page, "why")
    assert 'id="why"' not in await ui.page(run_url(held["run_id"]))  # it waits for nothing

    # The nodes page: the limit, its slot held and the state waiting for it.
    nodes = await ui.page("/ui/ns/testns/nodes")
    assert "<h2>Limits</h2>" in nodes
    limit = _row(nodes, graph="g", identifier="a", kind="concurrency")
    assert limit == "g a Alpha 1 at once all 1/1 1 —"
    queue = re.search(r'<tr data-node="Alpha".*?</tr>', nodes, re.S)
    assert queue and '<td class="num held-back" title="1 by concurrency">1</td>' in queue.group(0)

    # The slot frees: the state is next in its node's queue, and the limit has nobody waiting.
    await api.executed(held["state_id"], [{"y": "done"}])
    assert 'data-reason="queued"' in _why_box(await ui.page(state_url(waiting)))
    nodes = await ui.page("/ui/ns/testns/nodes")
    assert _row(nodes, graph="g", identifier="a", kind="concurrency").endswith("all 0/1 0 —")


async def test_a_keyed_limit_lists_each_key_in_use(api: Api, ui: Ui) -> None:
    keyed = {
        **template("a", "Alpha", {"x": "${{ store.tenant }}"}),
        "concurrency": {"limit": 1, "key": "${{ store.tenant }}"},
    }
    await api.setup("g", graph(keyed, store_config={"required_keys": ["tenant"]}), ALPHA)
    for tenant in ("acme", "acme", "zeta"):
        await api.trigger("g", {"store": {"tenant": tenant}})
    assert sorted(state["inputs"]["x"] for state in await api.claim("Alpha", batch_size=10)) == [
        "acme",
        "zeta",
    ]

    nodes = await ui.page("/ui/ns/testns/nodes")

    assert _row(nodes, graph="g", key="acme") == "g a Alpha 1 at once per ${{ store.tenant }} acme 1/1 1 —"
    assert _row(nodes, graph="g", key="zeta") == "zeta 1/1 0 —"  # the limit's cells span both
    assert 'rowspan="2"' in _element(nodes, "limits")


async def test_run_concurrency_and_a_rate_limit_on_the_pages(api: Api, ui: Ui) -> None:
    await api.register(ALPHA, BETA)
    runs_limited = {**graph(template("a", "Alpha", {"x": "go"})), "concurrency": {"limit": 1}}
    running, run_waits, run_waiting = await _parked(api, "one-run", runs_limited, "Alpha")
    rated = {**template("b", "Beta", {"x": "go"}), "rate_limit": {"per_second": 0.1, "burst": 1}}
    _, rate_waits, rate_waiting = await _parked(api, "rated", graph(rated), "Beta")

    box = _why_box(await ui.page(state_url(run_waiting)))
    assert 'data-reason="run_concurrency"' in box
    assert "Graph one-run runs at most 1 at once; 1 of 1 are running, so this run waits to start" in (
        html.unescape(text_of(box))
    )
    assert f'href="/ui/ns/testns/runs/{running["run_id"]}"' in box  # the run holding the slot
    assert "graph's run limit" in _row(await ui.page(run_url(run_waits)), reason="run_concurrency")

    box = html.unescape(text_of(_why_box(await ui.page(state_url(rate_waiting)))))
    assert "Node Beta is claimed at most 0.1 per second; the next claim is allowed at" in box
    assert re.search(r"Expected to start at \d\d:\d\d:\d\d UTC \(in (9|10) s\)\.", box), box
    assert re.search(
        r"node's rate limit 1 .* in (9|10) s$", _row(await ui.page(run_url(rate_waits)), reason="rate_limit")
    )

    nodes = await ui.page("/ui/ns/testns/nodes")
    runs = _row(nodes, graph="one-run", kind="run_concurrency")
    assert runs == "one-run runs of the graph 1 at once all 1/1 1 —"
    rate = _row(nodes, graph="rated", identifier="b", kind="rate_limit")
    assert re.fullmatch(r"rated b Beta 0\.1 per second all — 1 \d\d:\d\d:\d\d UTC in (9|10) s", rate), rate


async def test_a_state_whose_join_waits_links_the_open_branches_and_follows_them(api: Api, ui: Ui) -> None:
    body = graph(
        template("a", "Alpha", {"x": "go"}, ["b", "c"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        template("c", "Gamma", {"x": "${{ a.outputs.y }}"}),
        template("j", "Delta", {"x": "${{ b.outputs.y[*] }} ${{ c.outputs.y[*] }}"}, unites="a"),
    )
    await api.setup("g", body, ALPHA, BETA, node("Gamma"), node("Delta"))
    await api.trigger("g")
    [a] = await api.claim("Alpha")
    await api.executed(a["state_id"], [{"y": "1"}])
    [b] = await api.claim("Beta")
    await api.executed(b["state_id"], [{"y": "done"}])
    [c] = await api.claim("Gamma")

    page = await ui.page(state_url(a["state_id"]))

    box = _why_box(page)
    assert 'data-reason="join"' in box and "join j waits for the branches below it: 1 of 2 settled" in box
    assert f'href="/ui/ns/testns/states/{c["state_id"]}"' in box
    assert "data-poll=" in page  # a state that ran, followed while its join waits
    await api.executed(c["state_id"], [{"y": "done"}])
    page = await ui.page(state_url(a["state_id"]))
    assert 'id="why"' not in page and "data-poll=" not in page


async def test_pages_without_limits_or_waiting_read_nothing_more(
    api: Api, ui: Ui, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), ALPHA)
    run_id = (await api.trigger("g"))["run_id"]
    [a] = await api.claim("Alpha")
    await api.executed(a["state_id"], [{"y": "done"}])

    def refuse(*args: Any) -> None:
        raise AssertionError("why was asked about a run or state that cannot wait")

    monkeypatch.setattr(why, "run_why", refuse)
    monkeypatch.setattr(why, "state_why", refuse)
    assert 'id="why"' not in await ui.page(run_url(run_id))  # ended
    assert 'id="why"' not in await ui.page(state_url(a["state_id"]))  # ran, nothing below it
    assert "No limits set" in text_of(await ui.page("/ui/ns/testns/nodes"))
