"""Cron triggers: a schedule per expression, fired once per due tick, never replayed in a burst."""

from __future__ import annotations

import asyncio

from state_manager.db.documents import CronSchedule
from state_manager.services.context import AppContext
from state_manager.services.crons import fire_due
from tests.factories import ALPHA, BETA, NAMESPACE, Api, chain, cron, now_ms

EVERY_MINUTE = "* * * * *"


async def _schedules() -> list[CronSchedule]:
    return await CronSchedule.find({"namespace": NAMESPACE, "graph_name": "g"}).to_list()


async def _make_due(minutes_ago: int = 10) -> None:
    await CronSchedule.get_motor_collection().update_many(
        {}, {"$set": {"next_fire_ms": now_ms() - minutes_ago * 60_000}}
    )


async def _runs(api: Api) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = (await api.call("GET", "/runs/1/100"))["runs"]
    return runs


async def test_a_cron_trigger_gets_a_schedule(api: Api) -> None:
    before = now_ms()

    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE), cron("0 3 * * *")]), ALPHA, BETA)

    schedules = {s.expression: s for s in await _schedules()}
    assert set(schedules) == {EVERY_MINUTE, "0 3 * * *"}
    every_minute = schedules[EVERY_MINUTE].next_fire_ms
    assert before < every_minute <= before + 60_000


async def test_nothing_fires_before_it_is_due(api: Api, ctx: AppContext) -> None:
    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE)]), ALPHA, BETA)

    assert await fire_due(ctx) == 0
    assert await _runs(api) == []


async def test_a_due_schedule_fires_one_run_and_moves_on(api: Api, ctx: AppContext) -> None:
    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE)]), ALPHA, BETA)
    await _make_due(minutes_ago=10)  # ten ticks were missed

    fired = await fire_due(ctx)

    assert fired == 1
    [run] = await _runs(api)
    assert run["graph_name"] == "g"
    [root] = await api.run_states(str(run["run_id"]))
    assert (root["identifier"], root["inputs"], root["status"]) == ("a", {"x": "start"}, "CREATED")
    [schedule] = await _schedules()
    assert now_ms() < schedule.next_fire_ms <= now_ms() + 60_000
    assert schedule.last_run_id == run["run_id"]
    assert await fire_due(ctx) == 0
    assert len(await _runs(api)) == 1


async def test_concurrent_passes_fire_a_tick_once(api: Api, ctx: AppContext) -> None:
    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE)]), ALPHA, BETA)
    await _make_due()

    fired = await asyncio.gather(fire_due(ctx), fire_due(ctx), fire_due(ctx))

    assert sum(fired) == 1
    assert len(await _runs(api)) == 1


async def test_an_invalid_graph_is_scheduled_once_its_nodes_register(api: Api) -> None:
    await api.register(ALPHA)  # Beta is missing: the graph is INVALID
    await api.upsert("g", chain(triggers=[cron(EVERY_MINUTE)]))
    assert await _schedules() == []

    await api.register(BETA)  # re-validation makes it VALID

    [schedule] = await _schedules()
    assert schedule.expression == EVERY_MINUTE


async def test_a_failing_trigger_is_recorded_and_the_schedule_moves_on(api: Api, ctx: AppContext) -> None:
    # Cron runs get an empty store: a graph that requires a store key cannot start from cron.
    body = chain(triggers=[cron(EVERY_MINUTE)], store_config={"required_keys": ["tenant"]})
    await api.setup("g", body, ALPHA, BETA)
    await _make_due()

    assert await fire_due(ctx) == 1

    [schedule] = await _schedules()
    assert schedule.last_error == "Missing store keys: ['tenant']"
    assert schedule.next_fire_ms > now_ms()
    assert await _runs(api) == []


async def test_re_upsert_without_triggers_removes_the_schedule(api: Api, ctx: AppContext) -> None:
    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE)]), ALPHA, BETA)
    assert len(await _schedules()) == 1

    await api.setup("g", chain())
    await _make_due()

    assert await _schedules() == []
    assert await fire_due(ctx) == 0
    assert await _runs(api) == []


async def test_re_upsert_keeps_an_unchanged_schedule_and_drops_a_removed_one(api: Api) -> None:
    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE), cron("0 3 * * *")]), ALPHA, BETA)
    [kept_before] = [s for s in await _schedules() if s.expression == EVERY_MINUTE]

    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE)]))

    [kept] = await _schedules()
    assert (kept.id, kept.expression, kept.next_fire_ms) == (
        kept_before.id,
        EVERY_MINUTE,
        kept_before.next_fire_ms,
    )


async def test_schedules_of_a_same_named_graph_in_another_namespace_are_untouched(api: Api) -> None:
    await api.setup("g", chain(triggers=[cron(EVERY_MINUTE)]), ALPHA, BETA)
    await api.register(ALPHA, BETA, namespace="elsewhere")
    other = chain(triggers=[cron(EVERY_MINUTE)])
    for template in other["nodes"]:
        template["namespace"] = "elsewhere"
    await api.upsert("g", other, namespace="elsewhere")

    await api.setup("g", chain())

    remaining = await CronSchedule.find({"graph_name": "g"}).to_list()
    assert [s.namespace for s in remaining] == ["elsewhere"]
