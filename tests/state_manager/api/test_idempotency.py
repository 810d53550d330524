"""Idempotent triggers: a retrying client starts one run, whatever happens to its requests."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from state_manager.clock import utcnow
from state_manager.db.documents import IdempotencyKey
from tests.factories import ALPHA, BETA, NAMESPACE, Api, Json, chain

BODY: Json = {"inputs": {"x": "1"}, "store": {"k": "v"}}


async def _trigger(api: Api, key: str, body: Json = BODY, graph: str = "g", expect: int = 200) -> Json:
    answer = await api.client.post(
        api.url(f"/graph/{graph}/trigger"), json=body, headers={"Idempotency-Key": key}
    )
    assert answer.status_code == expect, answer.text
    result: Json = answer.json()
    return result


async def _runs(api: Api) -> int:
    return int((await api.call("GET", "/runs/1/100"))["total"])


async def test_a_repeat_with_the_same_key_answers_the_first_response(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    first = await _trigger(api, "order-42")
    again = await _trigger(api, "order-42")

    assert again == first
    assert await _runs(api) == 1
    assert len(await api.run_states(first["run_id"])) == 1


async def test_the_same_key_with_another_body_is_422_naming_the_header(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await _trigger(api, "order-42")

    answer = await _trigger(api, "order-42", {"inputs": {"x": "2"}}, expect=422)

    assert "Idempotency-Key" in answer["detail"]
    assert await _runs(api) == 1


async def test_concurrent_requests_with_one_key_start_one_run(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    answers = await asyncio.gather(*(_trigger(api, "burst") for _ in range(5)))

    assert len({answer["run_id"] for answer in answers}) == 1
    assert await _runs(api) == 1


async def test_keys_are_per_graph_and_expire(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.upsert("h", chain())
    first = await _trigger(api, "k")
    other_graph = await _trigger(api, "k", graph="h")
    await IdempotencyKey.get_motor_collection().update_many(
        {"graph_name": "g"}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}}
    )
    after_expiry = await _trigger(api, "k", {"inputs": {"x": "other"}})

    assert len({first["run_id"], other_graph["run_id"], after_expiry["run_id"]}) == 3


async def test_a_key_recorded_before_a_crash_starts_that_run(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    first = await _trigger(api, "crash")
    # As if the server died after recording the key, before writing the run.
    await IdempotencyKey.get_motor_collection().update_one(
        {"namespace": NAMESPACE, "key": "crash"}, {"$set": {"run_id": "planned-run"}}
    )

    again = await _trigger(api, "crash")

    assert again["run_id"] == "planned-run" != first["run_id"]
    assert len(await api.run_states("planned-run")) == 1


async def test_an_empty_key_is_422(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    answer = await _trigger(api, "", expect=422)
    assert "Idempotency-Key" in str(answer["detail"])
