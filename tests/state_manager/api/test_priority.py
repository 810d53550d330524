"""Priority (issue 18): every state of a run with priority P seconds is claimed as if it had been
due P seconds earlier; the claim takes the state due first (less its priority) first."""

from __future__ import annotations

from tests.factories import NO_RETRY, Api, Worker, chain, graph, node, template

A = node("Alpha")


async def _runs(api: Api, *priorities: int) -> list[str]:
    return [
        str((await api.call("POST", "/graph/g/trigger", {"priority": priority}))["run_id"])
        for priority in priorities
    ]


async def test_a_run_triggered_later_with_a_higher_priority_is_claimed_first(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    first, second, low = await _runs(api, 0, 0, -60)
    urgent, more_urgent = await _runs(api, 300, 600)

    order = [state["run_id"] for state in await api.claim("Alpha", batch_size=10)]

    assert order == [more_urgent, urgent, first, second]
    assert low not in order  # a negative priority: due a minute later


async def test_the_states_a_prioritized_run_makes_keep_its_priority(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), node("Alpha"), node("Beta"))
    plain = await _runs(api, 0)
    await Worker(api, "Alpha").execute([{"y": "plain"}])  # plain's b waits first
    urgent = await _runs(api, 300)
    await Worker(api, "Alpha").execute([{"y": "urgent"}])

    [b] = await api.claim("Beta", batch_size=1)

    assert b["run_id"] == urgent[0] != plain[0]


async def test_a_priority_composes_with_a_start_delay(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    await api.call("POST", "/graph/g/trigger", {"start_delay": 60_000})
    soon = (await api.call("POST", "/graph/g/trigger", {"start_delay": 60_000, "priority": 120}))["run_id"]

    assert [state["run_id"] for state in await api.claim("Alpha", batch_size=10)] == [soon]


async def test_a_nodes_own_wait_is_not_shortened_by_a_priority(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    await _runs(api, 3600)
    [state] = await api.claim("Alpha")
    await api.call("POST", f"/state/{state['state_id']}/re-enqueue-after", {"enqueue_after": 60_000})

    assert await api.claim("Alpha") == []


async def test_a_priority_out_of_bounds_is_refused_naming_the_field(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    answer = await api.call("POST", "/graph/g/trigger", {"priority": 10**9}, expect=422)
    assert "priority" in str(answer)


async def test_a_runs_priority_is_shown_with_it(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    [urgent] = await _runs(api, 300)
    assert (await api.call("GET", f"/run/{urgent}"))["priority"] == 300
