"""Every claim has an identity: a call carrying an earlier claim's token is refused (409) and
changes nothing, whoever holds the state now. Calls without a token (the official SDKs) keep
their behaviour: see test_states.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.factories import ALPHA, BETA, Api, Json, chain, graph, node, template

TOKEN = "x-exosphere-claim-token"


async def _call(api: Api, method: str, suffix: str, token: str, body: Any = None) -> Any:
    return await api.client.request(method, api.url(suffix), json=body, headers={TOKEN: token})


async def _claimed_root(api: Api) -> Json:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    [state] = await api.claim("Alpha", batch_size=1)
    return state


async def _requeue(api: Api, state: Json, token: str) -> Any:
    return await _call(
        api, "POST", f"/state/{state['state_id']}/re-enqueue-after", token, {"enqueue_after": 1}
    )


async def _reclaim(api: Api) -> Json:
    """Claim the same state again once its short re-enqueue delay has passed."""
    for _ in range(200):
        claimed = await api.claim("Alpha", batch_size=1, wait_ms=50)
        if claimed:
            return claimed[0]
    raise AssertionError("the re-enqueued state never came back")


async def test_enqueue_gives_each_claim_a_token_and_the_remaining_lease(api: Api) -> None:
    state = await _claimed_root(api)

    assert isinstance(state["claim_token"], str) and len(state["claim_token"]) >= 16
    assert 0 < state["lease_ms"] <= 300_000
    assert state["lease_expires_at"] > 0


async def test_replayed_calls_of_earlier_holders_do_not_touch_the_current_claim(api: Api) -> None:
    """The reproduced case: A's replayed re-enqueue revoked B's claim, and B's retried report was
    then accepted while C held the state."""
    a = await _claimed_root(api)
    sid = a["state_id"]
    assert (await _requeue(api, a, a["claim_token"])).status_code == 200
    b = await _reclaim(api)
    assert b["state_id"] == sid and b["claim_token"] != a["claim_token"]

    replay = await _requeue(api, a, a["claim_token"])
    assert replay.status_code == 409, replay.text
    [stored] = await api.run_states(a["run_id"])
    assert stored["status"] == "QUEUED"  # B still holds it

    assert (await _requeue(api, b, b["claim_token"])).status_code == 200
    c = await _reclaim(api)
    late = await _call(api, "POST", f"/state/{sid}/executed", b["claim_token"], {"outputs": [{"y": "B"}]})
    assert late.status_code == 409, late.text
    [stored] = await api.run_states(a["run_id"])
    assert (stored["status"], stored["outputs"]) == ("QUEUED", {})

    done = await _call(api, "POST", f"/state/{sid}/executed", c["claim_token"], {"outputs": [{"y": "C"}]})
    assert done.status_code == 200
    states = await api.by_identifier(a["run_id"])
    assert states["a"][0]["outputs"] == {"y": "C"}
    assert [s["inputs"] for s in states["b"]] == [{"x": "from a: C"}]


async def test_a_repeat_of_the_current_holders_report_answers_the_same(api: Api) -> None:
    state = await _claimed_root(api)
    suffix, body = f"/state/{state['state_id']}/executed", {"outputs": [{"y": "v"}]}

    first = await _call(api, "POST", suffix, state["claim_token"], body)
    again = await _call(api, "POST", suffix, state["claim_token"], body)

    assert (first.status_code, again.status_code) == (200, 200)
    assert len((await api.by_identifier(state["run_id"]))["b"]) == 1


async def test_a_stale_token_is_refused_for_every_kind_of_call(api: Api) -> None:
    a = await _claimed_root(api)
    sid = a["state_id"]
    await _requeue(api, a, a["claim_token"])
    b = await _reclaim(api)
    stale = a["claim_token"]

    calls: list[tuple[str, str, Any]] = [
        ("POST", f"/state/{sid}/executed", {"outputs": [{"y": "x"}]}),
        ("POST", f"/states/{sid}/executed", {"outputs": [{"y": "x"}]}),
        ("POST", f"/state/{sid}/errored", {"error": "late"}),
        ("POST", f"/state/{sid}/prune", {"data": {}}),
        ("POST", f"/state/{sid}/re-enqueue-after", {"enqueue_after": 10}),
        ("POST", f"/state/{sid}/heartbeat", {}),
        ("GET", f"/state/{sid}/secrets", None),
    ]
    for method, suffix, body in calls:
        answer = await _call(api, method, suffix, stale, body)
        assert answer.status_code == 409, f"{method} {suffix}: {answer.status_code} {answer.text}"
        assert "claimed again" in answer.json()["detail"]

    [stored] = await api.run_states(a["run_id"])
    assert (stored["status"], stored["error"], stored["outputs"]) == ("QUEUED", None, {})
    beat = await _call(api, "POST", f"/state/{sid}/heartbeat", b["claim_token"], {})
    assert beat.status_code == 200 and beat.json()["lease_ms"] > 0


async def test_secrets_with_a_token_answer_only_the_current_holder(api: Api) -> None:
    await api.register(node("Alpha", secrets=["api_key"]))
    await api.upsert("s", graph(template("a", "Alpha", {"x": "1"}), secrets={"api_key": "s3cret"}))
    await api.trigger("s")
    [a] = await api.claim("Alpha", batch_size=1)
    suffix = f"/state/{a['state_id']}/secrets"

    mine = await _call(api, "GET", suffix, a["claim_token"])
    assert (mine.status_code, mine.json()) == (200, {"secrets": {"api_key": "s3cret"}})

    await _requeue(api, a, a["claim_token"])
    answer = await _call(api, "GET", suffix, a["claim_token"])  # not re-claimed yet: nobody holds it
    assert answer.status_code == 409
    assert "s3cret" not in answer.text


async def test_a_repeated_re_enqueue_of_the_holder_answers_the_same(api: Api) -> None:
    state = await _claimed_root(api)

    first = await _requeue(api, state, state["claim_token"])
    again = await _requeue(api, state, state["claim_token"])

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "CREATED"


async def test_a_batch_claim_takes_the_oldest_due_first_and_two_claims_never_share_a_state(
    api: Api,
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    runs = [(await api.trigger("g"))["run_id"] for _ in range(15)]

    first, second = await asyncio.gather(api.claim("Alpha", batch_size=10), api.claim("Alpha", batch_size=10))

    ids = [s["state_id"] for s in first + second]
    assert len(ids) == len(set(ids)) == 15
    by_run = {s["run_id"]: s for s in first + second}
    assert set(by_run) == set(runs)
    oldest = min((first, second), key=lambda batch: batch[0]["state_id"])
    assert [s["run_id"] for s in oldest] == runs[: len(oldest)]  # in trigger order
    assert len({s["claim_token"] for s in first}) == 1 != len({s["claim_token"] for s in first + second})
