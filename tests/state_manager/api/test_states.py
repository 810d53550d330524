"""Workers' calls: claim, executed, errored, signals, heartbeat and secrets."""

from __future__ import annotations

import asyncio

import pytest

from tests.factories import (
    ALPHA,
    BETA,
    NAMESPACE,
    NO_RETRY,
    OTHER_NAMESPACE,
    Api,
    Json,
    Worker,
    chain,
    fixed_retry,
    graph,
    node,
    now_ms,
    template,
)

DEFAULT_LEASE_MS = 300_000


async def _chain(api: Api, **graph_options: object) -> str:
    """Register and upsert the a -> b chain; returns a new run id."""
    await api.setup("g", chain(**graph_options), ALPHA, BETA)
    return str((await api.trigger("g"))["run_id"])


# Long enough that a loaded CI machine claims before the retry is due, short enough to wait out.
RETRY_DELAY_MS = 400
RETRY_WAIT_SECONDS = RETRY_DELAY_MS / 1000 + 0.05


@pytest.fixture
async def claimed(api: Api) -> Json:
    """The root state of a fresh a -> b run, claimed (graph retry policy: one quick retry)."""
    await _chain(api, retry_policy=fixed_retry(1, RETRY_DELAY_MS), secrets={"token": "t0p-secret"})
    return await Worker(api, "Alpha").claim_one()


# ---------------------------------------------------------------- claiming


async def test_enqueue_claims_only_the_listed_nodes_of_the_namespace(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.register(ALPHA, namespace=OTHER_NAMESPACE)
    await api.upsert(
        "g", graph(template("a", "Alpha", {"x": "1"}, namespace=OTHER_NAMESPACE)), namespace=OTHER_NAMESPACE
    )
    seeded = await api.trigger(
        "g",
        {"states": [{"identifier": "a", "inputs": {"x": "1"}}, {"identifier": "b", "inputs": {"x": "2"}}]},
    )
    await api.call("POST", "/graph/g/trigger", {}, namespace=OTHER_NAMESPACE)

    claimed = await api.claim("Alpha", batch_size=10)

    assert [(s["identifier"], s["run_id"]) for s in claimed] == [("a", seeded["run_id"])]
    statuses = {s["identifier"]: s["status"] for s in await api.run_states(seeded["run_id"])}
    assert statuses == {"a": "QUEUED", "b": "CREATED"}
    other = await api.call("GET", "/states/", namespace=OTHER_NAMESPACE)
    assert [s["status"] for s in other["states"]] == ["CREATED"]
    answer = await api.call("POST", "/states/enqueue", {"nodes": ["Alpha"], "batch_size": 10})
    assert answer == {"count": 0, "namespace": NAMESPACE, "status": "QUEUED", "states": []}


async def test_enqueue_answers_with_the_claimed_state_and_a_lease(api: Api) -> None:
    run_id = await _chain(api)
    before = now_ms()

    answer = await api.call("POST", "/states/enqueue", {"nodes": ["Alpha"], "batch_size": 5})

    assert (answer["count"], answer["namespace"], answer["status"]) == (1, NAMESPACE, "QUEUED")
    [state] = answer["states"]
    assert state["node_name"] == "Alpha"
    assert state["identifier"] == "a"
    assert state["inputs"] == {"x": "start"}
    assert state["run_id"] == run_id
    assert state["graph_name"] == "g"
    assert state["retry_count"] == 0
    assert state["created_at"]
    assert before + DEFAULT_LEASE_MS <= state["lease_expires_at"] <= now_ms() + DEFAULT_LEASE_MS


async def test_enqueue_is_first_in_first_out_and_bounded_by_batch_size(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_ids = [(await api.trigger("g"))["run_id"] for _ in range(5)]

    one = await api.claim("Alpha", batch_size=1)
    two = await api.claim("Alpha", batch_size=2)
    rest = await api.claim("Alpha", batch_size=10)

    assert [len(one), len(two), len(rest)] == [1, 2, 2]
    assert [s["run_id"] for s in one + two + rest] == run_ids


async def test_a_claimed_state_is_not_claimed_twice(api: Api) -> None:
    await _chain(api)

    first, second = await asyncio.gather(api.claim("Alpha"), api.claim("Alpha"))

    assert len(first) + len(second) == 1


async def test_enqueue_with_malformed_body_is_422(api: Api, subtests: pytest.Subtests) -> None:
    bodies: list[Json] = [
        {"nodes": ["Alpha"], "batch_size": 0},
        {"nodes": ["Alpha"], "batch_size": 1001},
        {"nodes": ["Alpha"], "batch_size": -1},
        {"nodes": ["Alpha"]},
        {"batch_size": 1},
        {"nodes": ["Alpha"], "batch_size": 1, "wait_ms": -1},
    ]
    for body in bodies:
        with subtests.test(body=body):
            await api.call("POST", "/states/enqueue", body, expect=422)


async def test_enqueue_accepts_the_largest_batch(api: Api) -> None:
    await api.call("POST", "/states/enqueue", {"nodes": ["Alpha"], "batch_size": 1000})


# ---------------------------------------------------------------- executed


@pytest.mark.parametrize("path", ["state", "states"])
async def test_executed_on_either_path_succeeds_and_creates_the_next_state(api: Api, path: str) -> None:
    run_id = await _chain(api)
    state = await Worker(api, "Alpha").claim_one()

    answer = await api.executed(state["state_id"], [{"y": "hello"}], path=path)

    assert answer == {"status": "EXECUTED"}
    states = await api.by_identifier(run_id)
    assert states["a"][0]["status"] == "SUCCESS"
    assert states["a"][0]["outputs"] == {"y": "hello"}
    assert [(s["status"], s["inputs"]) for s in states["b"]] == [("CREATED", {"x": "from a: hello"})]
    assert states["b"][0]["parents"] == {"a": state["state_id"]}


async def test_executed_twice_with_the_same_body_is_harmless(api: Api, claimed: Json) -> None:
    first = await api.executed(claimed["state_id"], [{"y": "v"}])
    second = await api.executed(claimed["state_id"], [{"y": "v"}])

    assert first == second == {"status": "EXECUTED"}
    states = await api.by_identifier(claimed["run_id"])
    assert len(states["b"]) == 1
    assert len(states["a"]) == 1


async def test_concurrent_identical_reports_create_children_once(api: Api) -> None:
    run_id = await _chain(api)
    state = await Worker(api, "Alpha").claim_one()
    outputs = [{"y": "one"}, {"y": "two"}, {"y": "three"}]

    answers = await asyncio.gather(*(api.executed(state["state_id"], outputs) for _ in range(3)))

    assert answers == [{"status": "EXECUTED"}] * 3
    states = await api.by_identifier(run_id)
    assert len(states["a"]) == 3
    assert sorted(s["inputs"]["x"] for s in states["b"]) == ["from a: one", "from a: three", "from a: two"]


async def test_executed_again_with_different_outputs_is_400(api: Api, claimed: Json) -> None:
    await api.executed(claimed["state_id"], [{"y": "v"}])

    answer = await api.executed(claimed["state_id"], [{"y": "other"}], expect=400)

    assert answer == {"detail": "State is not queued"}
    states = await api.by_identifier(claimed["run_id"])
    assert states["a"][0]["outputs"] == {"y": "v"}
    assert len(states["b"]) == 1


async def test_executed_on_a_created_state_is_400(api: Api) -> None:
    run_id = await _chain(api)
    [root] = await api.run_states(run_id)

    answer = await api.executed(root["id"], [{"y": "v"}], expect=400)

    assert answer == {"detail": "State is not queued"}
    assert (await api.run_states(run_id))[0]["status"] == "CREATED"


async def test_executed_from_another_namespace_is_404(api: Api, claimed: Json) -> None:
    answer = await api.call(
        "POST",
        f"/state/{claimed['state_id']}/executed",
        {"outputs": [{"y": "v"}]},
        expect=404,
        namespace="elsewhere",
    )

    assert answer == {"detail": "State not found"}
    assert (await api.state(claimed["run_id"], claimed["state_id"]))["status"] == "QUEUED"


async def test_executed_without_outputs_field_is_422(api: Api, claimed: Json) -> None:
    await api.call("POST", f"/state/{claimed['state_id']}/executed", {}, expect=422)
    await api.call("POST", f"/state/{claimed['state_id']}/executed", {"outputs": ["text"]}, expect=422)


async def test_executed_with_no_outputs_finishes_a_leaf(api: Api) -> None:
    await api.setup("leaf", graph(template("a", "Alpha", {"x": "1"})), ALPHA)
    run_id = (await api.trigger("leaf"))["run_id"]

    await Worker(api, "Alpha").execute([])

    [state] = await api.run_states(run_id)
    assert (state["status"], state["outputs"]) == ("SUCCESS", {})
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_fan_out_gives_one_branch_per_output(api: Api) -> None:
    run_id = await _chain(api)
    outputs = [{"y": f"item-{i}"} for i in range(10)]

    await Worker(api, "Alpha").execute(outputs)

    states = await api.by_identifier(run_id)
    assert len(states["a"]) == 10
    assert {s["status"] for s in states["a"]} == {"SUCCESS"}
    assert sorted(s["outputs"]["y"] for s in states["a"]) == sorted(o["y"] for o in outputs)
    assert len(states["b"]) == 10
    assert sorted(s["inputs"]["x"] for s in states["b"]) == sorted(f"from a: item-{i}" for i in range(10))
    # each child descends from the clone that produced its input
    a_by_id = {s["id"]: s for s in states["a"]}
    for child in states["b"]:
        assert child["inputs"]["x"] == "from a: " + a_by_id[child["parents"]["a"]]["outputs"]["y"]
    assert len({s["fanout_id"] for s in states["a"]}) == 10


async def test_a_missing_output_field_fails_the_parent_with_a_message(api: Api) -> None:
    run_id = await _chain(api)

    await Worker(api, "Alpha").execute([{"not_y": "v"}])

    states = await api.by_identifier(run_id)
    parent = states["a"][0]
    assert parent["status"] == "NEXT_CREATED_ERROR"
    assert "'y'" in parent["error"]
    assert "b" in parent["error"]
    assert "b" not in states
    assert (await api.run_summary(run_id))["status"] == "FAILED"


async def test_a_non_string_output_fails_the_parent_with_a_message(api: Api) -> None:
    run_id = await _chain(api)

    await Worker(api, "Alpha").execute([{"y": 42}])

    [parent] = await api.run_states(run_id)
    assert parent["status"] == "NEXT_CREATED_ERROR"
    assert "string" in parent["error"]


# ---------------------------------------------------------------- errored


async def test_errored_with_retries_left_creates_a_delayed_retry(api: Api, claimed: Json) -> None:
    before = now_ms()

    answer = await api.errored(claimed["state_id"], "flaky")

    assert answer["retry_created"] is True
    states = await api.by_identifier(claimed["run_id"])
    original = next(s for s in states["a"] if s["id"] == claimed["state_id"])
    [retry] = [s for s in states["a"] if s["id"] != claimed["state_id"]]
    assert (original["status"], original["error"]) == ("RETRY_CREATED", "flaky")
    assert retry["status"] == "CREATED"
    assert retry["retry_count"] == 1
    assert retry["inputs"] == original["inputs"]
    assert retry["error"] is None
    assert before + RETRY_DELAY_MS <= retry["enqueue_after"] <= now_ms() + RETRY_DELAY_MS
    assert await api.claim("Alpha") == []  # not due yet
    await asyncio.sleep(RETRY_WAIT_SECONDS)
    again = await Worker(api, "Alpha").claim_one()
    assert (again["state_id"], again["retry_count"]) == (retry["id"], 1)


async def test_a_retry_that_succeeds_continues_the_run(api: Api, claimed: Json) -> None:
    await api.errored(claimed["state_id"], "flaky")
    await asyncio.sleep(RETRY_WAIT_SECONDS)

    await Worker(api, "Alpha").execute([{"y": "second try"}])
    await Worker(api, "Beta").execute()

    summary = await api.run_summary(claimed["run_id"])
    assert (summary["status"], summary["retried_count"], summary["success_count"]) == ("SUCCESS", 1, 2)


async def test_errored_without_retries_left_fails_the_run(api: Api) -> None:
    run_id = await _chain(api, retry_policy=NO_RETRY)

    _, answer = await Worker(api, "Alpha").fail("fatal")

    assert answer["retry_created"] is False
    [stored] = await api.run_states(run_id)
    assert (stored["status"], stored["error"]) == ("ERRORED", "fatal")
    summary = await api.run_summary(run_id)
    assert (summary["status"], summary["errored_count"], summary["pending_count"]) == ("FAILED", 1, 0)


async def test_retries_stop_after_max_retries(api: Api, claimed: Json) -> None:
    await api.errored(claimed["state_id"], "one")
    await asyncio.sleep(RETRY_WAIT_SECONDS)

    _, answer = await Worker(api, "Alpha").fail("two")

    assert answer["retry_created"] is False
    statuses = sorted(s["status"] for s in await api.run_states(claimed["run_id"]))
    assert statuses == ["ERRORED", "RETRY_CREATED"]
    assert (await api.run_summary(claimed["run_id"]))["status"] == "FAILED"


async def test_errored_repeated_is_harmless(api: Api, claimed: Json) -> None:
    first = await api.errored(claimed["state_id"], "flaky")
    second = await api.errored(claimed["state_id"], "flaky")

    assert first == second
    assert len(await api.run_states(claimed["run_id"])) == 2


async def test_errored_after_executed_is_400(api: Api, claimed: Json) -> None:
    await api.executed(claimed["state_id"], [{"y": "v"}])

    answer = await api.errored(claimed["state_id"], "too late", expect=400)

    assert answer == {"detail": "State is already executed"}
    assert (await api.state(claimed["run_id"], claimed["state_id"]))["status"] == "SUCCESS"


async def test_errored_on_a_created_state_is_400(api: Api) -> None:
    run_id = await _chain(api)
    [root] = await api.run_states(run_id)

    answer = await api.errored(root["id"], "x", expect=400)

    assert answer == {"detail": "State is not queued or executed"}


async def test_errored_from_another_namespace_is_404(api: Api, claimed: Json) -> None:
    await api.call(
        "POST", f"/state/{claimed['state_id']}/errored", {"error": "x"}, expect=404, namespace="elsewhere"
    )

    assert (await api.state(claimed["run_id"], claimed["state_id"]))["status"] == "QUEUED"


# ---------------------------------------------------------------- prune


async def test_prune_ends_the_branch(api: Api, claimed: Json) -> None:
    answer = await api.call("POST", f"/state/{claimed['state_id']}/prune", {"data": {"reason": "skip"}})

    assert answer["status"] == "PRUNED"
    assert isinstance(answer["enqueue_after"], int)
    [state] = await api.run_states(claimed["run_id"])
    assert (state["status"], state["data"]) == ("PRUNED", {"reason": "skip"})
    assert (await api.run_summary(claimed["run_id"]))["status"] == "SUCCESS"


async def test_prune_with_empty_data_is_accepted(api: Api, claimed: Json) -> None:
    answer = await api.call("POST", f"/state/{claimed['state_id']}/prune", {"data": {}})

    assert answer["status"] == "PRUNED"


async def test_prune_without_data_is_422(api: Api, claimed: Json) -> None:
    await api.call("POST", f"/state/{claimed['state_id']}/prune", {}, expect=422)

    assert (await api.state(claimed["run_id"], claimed["state_id"]))["status"] == "QUEUED"


async def test_prune_of_a_state_that_is_not_queued_is_400(api: Api, claimed: Json) -> None:
    await api.executed(claimed["state_id"], [{"y": "v"}])

    await api.call("POST", f"/state/{claimed['state_id']}/prune", {"data": {}}, expect=400)


# ---------------------------------------------------------------- re-enqueue-after


async def test_re_enqueue_after_puts_the_state_back_later(api: Api, claimed: Json) -> None:
    before = now_ms()

    answer = await api.call("POST", f"/state/{claimed['state_id']}/re-enqueue-after", {"enqueue_after": 400})

    assert answer["status"] == "CREATED"
    assert before + 400 <= answer["enqueue_after"] <= now_ms() + 400
    state = await api.state(claimed["run_id"], claimed["state_id"])
    assert (state["status"], state["enqueue_after"]) == ("CREATED", answer["enqueue_after"])
    assert await api.claim("Alpha") == []
    await asyncio.sleep(0.42)
    assert [s["state_id"] for s in await api.claim("Alpha")] == [claimed["state_id"]]


async def test_re_enqueue_after_on_a_finished_state_is_400(api: Api, claimed: Json) -> None:
    await api.executed(claimed["state_id"], [{"y": "v"}])

    await api.call(
        "POST", f"/state/{claimed['state_id']}/re-enqueue-after", {"enqueue_after": 100}, expect=400
    )

    assert (await api.state(claimed["run_id"], claimed["state_id"]))["status"] == "SUCCESS"


async def test_re_enqueue_after_needs_a_positive_delay(api: Api, claimed: Json) -> None:
    for delay in (0, -5):
        await api.call(
            "POST", f"/state/{claimed['state_id']}/re-enqueue-after", {"enqueue_after": delay}, expect=422
        )
    assert (await api.state(claimed["run_id"], claimed["state_id"]))["status"] == "QUEUED"


# ---------------------------------------------------------------- manual retry


async def _errored_state(api: Api) -> Json:
    await _chain(api, retry_policy=NO_RETRY)
    state, _ = await Worker(api, "Alpha").fail("fatal")
    return state


async def test_manual_retry_of_an_errored_state_creates_a_new_attempt(api: Api) -> None:
    failed = await _errored_state(api)

    answer = await api.call("POST", f"/state/{failed['state_id']}/manual-retry", {"fanout_id": "op-1"})

    assert answer["status"] == "CREATED"
    states = {s["id"]: s for s in await api.run_states(failed["run_id"])}
    assert states[failed["state_id"]]["status"] == "RETRY_CREATED"
    retry = states[answer["id"]]
    assert (retry["status"], retry["identifier"], retry["inputs"]) == ("CREATED", "a", failed["inputs"])
    assert (await api.run_summary(failed["run_id"]))["status"] == "PENDING"
    assert [s["state_id"] for s in await api.claim("Alpha")] == [answer["id"]]


async def test_manual_retry_of_a_failed_fan_in_lets_the_run_continue(api: Api) -> None:
    run_id = await _chain(api)
    await Worker(api, "Alpha").execute([{"wrong": "field"}])
    [failed] = await api.run_states(run_id)
    assert failed["status"] == "NEXT_CREATED_ERROR"

    answer = await api.call("POST", f"/state/{failed['id']}/manual-retry", {"fanout_id": "op-1"})
    await Worker(api, "Alpha").execute([{"y": "fixed"}])

    states = await api.by_identifier(run_id)
    assert [s["status"] for s in states["a"] if s["id"] == answer["id"]] == ["SUCCESS"]
    assert [s["inputs"] for s in states["b"]] == [{"x": "from a: fixed"}]


async def test_manual_retry_twice_with_the_same_fanout_id_is_409(api: Api) -> None:
    failed = await _errored_state(api)
    await api.call("POST", f"/state/{failed['state_id']}/manual-retry", {"fanout_id": "op-1"})

    answer = await api.call(
        "POST", f"/state/{failed['state_id']}/manual-retry", {"fanout_id": "op-1"}, expect=409
    )

    assert answer == {"detail": "Duplicate retry state detected"}
    assert len(await api.run_states(failed["run_id"])) == 2


async def test_manual_retries_that_race_create_one_retry_and_the_loser_gets_409(api: Api) -> None:
    failed = await _errored_state(api)
    url = api.url(f"/state/{failed['state_id']}/manual-retry")

    answers = await asyncio.gather(
        *(api.client.post(url, json={"fanout_id": f"operator-{n}"}) for n in range(3))
    )
    late = await api.client.post(url, json={"fanout_id": "operator-late"})

    assert sorted(a.status_code for a in answers) == [200, 409, 409]
    assert late.status_code == 409 and "already being retried" in late.json()["detail"]
    assert len(await api.run_states(failed["run_id"])) == 2


async def test_manual_retry_of_a_successful_state_is_400(api: Api, claimed: Json) -> None:
    await api.executed(claimed["state_id"], [{"y": "v"}])

    await api.call("POST", f"/state/{claimed['state_id']}/manual-retry", {"fanout_id": "op-1"}, expect=400)

    assert len((await api.by_identifier(claimed["run_id"]))["a"]) == 1


async def test_manual_retry_needs_a_fanout_id(api: Api) -> None:
    failed = await _errored_state(api)

    await api.call("POST", f"/state/{failed['state_id']}/manual-retry", {}, expect=422)
    await api.call("POST", f"/state/{failed['state_id']}/manual-retry", {"fanout_id": " "}, expect=422)


# ---------------------------------------------------------------- heartbeat


async def test_heartbeat_extends_the_lease(api: Api, claimed: Json) -> None:
    await asyncio.sleep(0.01)

    answer = await api.call("POST", f"/state/{claimed['state_id']}/heartbeat")

    assert answer["status"] == "QUEUED"
    assert answer["lease_expires_at"] > claimed["lease_expires_at"]


async def test_concurrent_heartbeats_of_the_holder_all_succeed(api: Api, claimed: Json) -> None:
    url = api.url(f"/state/{claimed['state_id']}/heartbeat")

    responses = await asyncio.gather(*(api.client.post(url) for _ in range(50)))

    assert [r.status_code for r in responses] == [200] * 50


async def test_heartbeat_of_a_state_that_is_not_queued_is_409(api: Api, claimed: Json) -> None:
    await api.executed(claimed["state_id"], [{"y": "v"}])

    await api.call("POST", f"/state/{claimed['state_id']}/heartbeat", expect=409)


# ---------------------------------------------------------------- secrets


async def test_secrets_are_given_to_the_worker_holding_the_state(api: Api, claimed: Json) -> None:
    answer = await api.call("GET", f"/state/{claimed['state_id']}/secrets")

    assert answer == {"secrets": {"token": "t0p-secret"}}


async def test_secrets_of_a_state_that_is_not_claimed_are_refused(api: Api, claimed: Json) -> None:
    await api.executed(claimed["state_id"], [{"y": "v"}])
    states = await api.by_identifier(claimed["run_id"])
    [succeeded], [created] = states["a"], states["b"]
    assert (succeeded["status"], created["status"]) == ("SUCCESS", "CREATED")

    for state_id in (succeeded["id"], created["id"]):
        answer = await api.call("GET", f"/state/{state_id}/secrets", expect=409)
        assert "t0p-secret" not in str(answer)


async def test_secrets_from_another_namespace_are_404(api: Api, claimed: Json) -> None:
    answer = await api.call("GET", f"/state/{claimed['state_id']}/secrets", expect=404, namespace="elsewhere")

    assert answer == {"detail": "State not found"}


async def test_secrets_of_a_graph_without_secrets_are_empty(api: Api) -> None:
    await _chain(api)
    state = await Worker(api, "Alpha").claim_one()

    assert await api.call("GET", f"/state/{state['state_id']}/secrets") == {"secrets": {}}


async def test_nodes_of_another_namespace_are_claimed_there(api: Api) -> None:
    await api.register(node("Remote"), namespace=OTHER_NAMESPACE)
    await api.register(ALPHA)
    await api.setup(
        "g",
        graph(
            template("a", "Alpha", {"x": "1"}, ["r"]),
            template("r", "Remote", {"x": "${{ a.outputs.y }}"}, namespace=OTHER_NAMESPACE),
            secrets={"token": "shared"},
        ),
    )
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": "v"}])

    assert await api.claim("Remote") == []
    [remote] = await api.claim("Remote", namespace=OTHER_NAMESPACE)
    secrets = await api.call("GET", f"/state/{remote['state_id']}/secrets", namespace=OTHER_NAMESPACE)
    await api.call(
        "POST", f"/state/{remote['state_id']}/executed", {"outputs": [{"y": "ok"}]}, namespace=OTHER_NAMESPACE
    )

    assert remote["inputs"] == {"x": "v"}
    assert secrets == {"secrets": {"token": "shared"}}
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_a_node_of_another_namespace_is_retried_where_it_is_read(api: Api) -> None:
    """A graph may use a node registered in another namespace: its states are read, and retried,
    under the graph's namespace (and, as upstream, under the node's)."""
    await api.register(node("Tool"), namespace="tools")
    await api.setup(
        "uses-tool", graph(template("t", "Tool", {"x": "go"}, namespace="tools"), retry_policy=NO_RETRY)
    )
    run_id = (await api.trigger("uses-tool"))["run_id"]
    [state] = await api.claim("Tool", namespace="tools")
    await api.call("POST", f"/state/{state['state_id']}/errored", {"error": "boom"}, namespace="tools")

    view = await api.call("GET", f"/state/{state['state_id']}/view")
    retried = await api.call("POST", f"/state/{state['state_id']}/manual-retry", {"fanout_id": "op"})

    assert view["status"] == "ERRORED"
    assert retried["status"] == "CREATED"
    [again] = await api.claim("Tool", namespace="tools")
    assert again["state_id"] == retried["id"]
    await api.call("POST", f"/state/{state['state_id']}/manual-retry", {"fanout_id": "op2"}, expect=409)
    assert (await api.run_summary(run_id))["status"] != "FAILED"


async def test_an_errored_report_keeps_the_whole_error_of_its_attempt(api: Api) -> None:
    await api.setup(
        "whole", graph(template("a", "Alpha", {"x": "go"}), retry_policy=fixed_retry(1, 1)), ALPHA
    )
    await api.trigger("whole")
    [state] = await api.claim("Alpha")
    details = {
        "type": "builtins.ValueError",
        "traceback": "Traceback ...\nValueError: bad\n",
        "logs": ["INFO a"],
    }

    await api.call("POST", f"/state/{state['state_id']}/errored", {"error": "bad", "details": details})
    await api.call("POST", f"/state/{state['state_id']}/errored", {"error": "bad"}, expect=200)  # a repeat

    view = await api.call("GET", f"/state/{state['state_id']}/view")
    assert (view["error"], view["error_details"]) == ("bad", details)
    [retry] = await api.claim("Alpha", wait_ms=2000)
    assert (await api.call("GET", f"/state/{retry['state_id']}/view"))["error_details"] is None
    too_long = {**details, "logs": ["x" * 4000] * 20}
    answer = await api.call(
        "POST", f"/state/{retry['state_id']}/errored", {"error": "e", "details": too_long}, expect=422
    )
    assert "logs" in str(answer)
