"""When each attempt was claimed and when it ended, and how a run was started: what a dashboard
or a CLI shows next to a state's creation and due times."""

from __future__ import annotations

from state_manager.db.documents import Run
from state_manager.services.context import AppContext
from state_manager.services.crons import fire_due
from tests.factories import ALPHA, BETA, Api, Worker, chain, cron, fixed_retry, now_ms


async def test_an_attempt_records_when_it_was_claimed_and_when_it_ended(api: Api) -> None:
    await api.setup("g", chain(retry_policy=fixed_retry(1, 1)), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    before = now_ms()
    failed, _ = await Worker(api, "Alpha").fail()

    states = (await api.by_identifier(run_id))["a"]
    first = next(s for s in states if s["id"] == failed["state_id"])
    [retry] = [s for s in states if s["id"] != failed["state_id"]]
    assert before <= first["claimed_ms"] <= first["ended_ms"] <= now_ms()
    assert (retry["claimed_ms"], retry["ended_ms"]) == (None, None)  # a new attempt starts afresh


async def test_a_run_records_whether_the_api_or_a_cron_started_it(api: Api, ctx: AppContext) -> None:
    await api.setup("g", chain(triggers=[cron("* * * * *")]), ALPHA, BETA)
    await api.trigger("g")
    await Run.get_motor_collection().database["CronSchedule"].update_many({}, {"$set": {"next_fire_ms": 0}})
    await fire_due(ctx)

    sources = sorted(run.triggered_by for run in await Run.find({}).to_list())
    assert sources == ["api", "cron"]
