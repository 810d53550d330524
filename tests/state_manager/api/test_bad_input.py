"""Bad input from a client is a 4xx that names the field or the node, never a 500, and nothing
stored changes: text the store cannot encode, field names that would become query paths,
integers beyond 64 bits, page numbers past any skip, and oversized bodies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import ALPHA, API_KEY, BETA, NO_RETRY, Api, Json, Worker, chain, graph, node, template

LONE_SURROGATE = '"\\ud800"'  # valid JSON, but no UTF-8 string: BSON cannot hold it
BEYOND_64_BITS = 2**64


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_request_bytes": 64 * 1024}


async def _raw(api: Api, method: str, suffix: str, text: str) -> httpx.Response:
    """Send `text` as the JSON body, byte for byte (httpx would refuse to encode a lone surrogate)."""
    headers = {"content-type": "application/json"}
    return await api.client.request(method, api.url(suffix), content=text.encode(), headers=headers)


def _detail(response: httpx.Response) -> str:
    return json.dumps(response.json()["detail"])


# ---------------------------------------------------------------- field names


@pytest.mark.parametrize("identifier", ["a.b", "$a", "a\x00b"])
async def test_identifiers_that_are_not_safe_field_names_are_a_400_naming_the_node(
    api: Api, identifier: str
) -> None:
    await api.register(ALPHA, BETA)
    body = graph(
        template("r", "Alpha", {"x": "1"}, [identifier]),
        template(identifier, "Beta", {"x": "2"}),
        template("j", "Beta", {"x": "3"}, unites=identifier),
    )

    answer = await api.upsert("g", body, expect=400)

    assert repr(identifier) in answer["detail"]
    await api.get_graph("g", expect=404)


async def test_a_dotted_join_anchor_cannot_make_a_join_fire_early(api: Api) -> None:
    """The reproduced bug: `parents.<anchor>` became a nested path and the join fired at once."""
    await api.register(ALPHA, BETA)
    body = graph(
        template("r.x", "Alpha", {"x": "1"}, ["b"]),
        template("b", "Beta", {"x": "2"}),
        template("j", "Beta", {"x": "3"}, unites="r.x"),
    )
    answer = await api.upsert("g", body, expect=400)
    assert "'r.x'" in answer["detail"] and "must not contain '.'" in answer["detail"]


async def test_node_input_names_must_be_safe_field_names(api: Api) -> None:
    await api.register(ALPHA)
    answer = await api.upsert("g", graph(template("a", "Alpha", {"x": "1", "$where": "2"})), expect=400)
    assert "'$where'" in answer["detail"] and "node a" in answer["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": {"a.b": "1"}}, "'a.b'"),
        ({"store": {"$set": "1"}}, "'$set'"),
        ({"states": [{"identifier": "a", "inputs": {"x.y": "1"}}]}, "'x.y'"),
    ],
)
async def test_trigger_keys_must_be_safe_field_names(api: Api, body: Json, field: str) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    answer = await api.call("POST", "/graph/g/trigger", body, expect=422)
    assert field in json.dumps(answer["detail"])
    assert (await api.call("GET", "/runs/1/10"))["total"] == 0


async def test_store_and_secret_names_are_checked_at_upsert(api: Api) -> None:
    await api.register(ALPHA)
    body = graph(template("a", "Alpha", {"x": "1"}), store_config={"default_values": {"$k": "v"}})
    assert "'$k'" in json.dumps((await api.upsert("g", body, expect=422))["detail"])
    body = graph(template("a", "Alpha", {"x": "1"}), secrets={"db.password": "hunter2"})
    answer = await api.upsert("g", body, expect=422)
    assert "'db.password'" in json.dumps(answer["detail"])
    assert "hunter2" not in json.dumps(answer)  # a 422 never echoes what was sent


async def test_output_names_must_be_safe_and_a_refused_report_changes_nothing(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    state = await Worker(api, "Alpha").claim_one()

    for outputs in ([{"y.z": "1"}], [{"y": "1"}, {"$y": "2"}]):
        answer = await api.executed(state["state_id"], outputs, expect=422)
        assert "Output key" in json.dumps(answer["detail"])
    assert (await api.run_states(run_id))[0]["status"] == "QUEUED"
    await api.executed(state["state_id"], [{"y": "fine"}])


# ---------------------------------------------------------------- text and numbers the store cannot hold


async def test_lone_surrogates_are_a_422_naming_the_field_wherever_they_are(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    state = await Worker(api, "Alpha").claim_one()
    sid = state["state_id"]

    cases = [
        ("POST", "/graph/g/trigger", f'{{"inputs": {{"x": {LONE_SURROGATE}}}}}', "body.inputs.x"),
        ("POST", "/graph/g/trigger", f'{{"store": {{"k": {LONE_SURROGATE}}}}}', "body.store.k"),
        (
            "POST",
            f"/state/{sid}/executed",
            f'{{"outputs": [{{"y": {LONE_SURROGATE}}}]}}',
            "body.outputs[0].y",
        ),
        ("POST", f"/state/{sid}/errored", f'{{"error": {LONE_SURROGATE}}}', "body.error"),
        ("POST", f"/state/{sid}/prune", f'{{"data": {{"why": [1, {LONE_SURROGATE}]}}}}', "body.data.why[1]"),
        ("POST", "/graph/g/trigger", '{"inputs": {"\\udc00": "v"}}', "field name is not valid Unicode"),
    ]
    for method, suffix, text, field in cases:
        answer = await _raw(api, method, suffix, text)
        assert answer.status_code == 422, f"{suffix}: {answer.status_code} {answer.text}"
        assert field in _detail(answer), answer.text

    assert (await api.call("GET", "/runs/1/10"))["total"] == 1
    [stored] = await api.run_states(run_id)
    assert (stored["status"], stored["error"]) == ("QUEUED", None)


async def test_a_nul_in_a_field_name_is_a_422(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    state = await Worker(api, "Alpha").claim_one()

    answer = await _raw(api, "POST", f"/state/{state['state_id']}/prune", '{"data": {"a\\u0000b": 1}}')

    assert answer.status_code == 422 and "NUL" in _detail(answer)


@pytest.mark.parametrize(
    ("method", "suffix", "body", "field"),
    [
        ("POST", "/graph/g/trigger", {"start_delay": BEYOND_64_BITS}, "start_delay"),
        ("POST", "/graph/g/trigger", {"start_delay": 10**15}, "start_delay"),
        ("PUT", "/graph/g", {**chain(), "retry_policy": {"max_retries": BEYOND_64_BITS}}, "max_retries"),
        ("PUT", "/graph/g", {**chain(), "retry_policy": {"backoff_factor": 10**16}}, "backoff_factor"),
        ("PUT", "/graph/g", {**chain(), "retry_policy": {"exponent": 10**6}}, "exponent"),
        ("PUT", "/graph/g", {**chain(), "retry_policy": {"max_delay": BEYOND_64_BITS}}, "max_delay"),
        (
            "PUT",
            "/nodes/",
            {"runtime_name": "r", "nodes": [{**node("N"), "inputs_schema": {"maxLength": BEYOND_64_BITS}}]},
            "inputs_schema.maxLength",
        ),
    ],
)
async def test_numbers_beyond_what_can_be_stored_are_a_422_naming_the_field(
    api: Api, method: str, suffix: str, body: Json, field: str
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    answer = await api.call(method, suffix, body, expect=422)

    assert field in json.dumps(answer["detail"])
    assert (await api.call("GET", "/runs/1/10"))["total"] == 0


async def test_a_reported_integer_beyond_64_bits_is_a_422(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    state = await Worker(api, "Alpha").claim_one()

    answer = await api.executed(state["state_id"], [{"y": BEYOND_64_BITS}], expect=422)
    assert "body.outputs[0].y" in json.dumps(answer["detail"])
    answer = await api.call(
        "POST", f"/state/{state['state_id']}/re-enqueue-after", {"enqueue_after": BEYOND_64_BITS}, expect=422
    )
    assert "enqueue_after" in json.dumps(answer["detail"])


async def test_a_page_number_past_any_skip_is_a_422(api: Api) -> None:
    answer = await api.call("GET", f"/runs/{10**20}/10", expect=422)
    assert "page" in json.dumps(answer["detail"])


# ---------------------------------------------------------------- body size and the key


async def test_a_body_over_the_limit_is_413_and_names_the_setting(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    state = await Worker(api, "Alpha").claim_one()

    answer = await api.executed(state["state_id"], [{"y": "x" * 70_000}], expect=413)

    assert "MAX_REQUEST_BYTES" in answer["detail"]
    assert (await api.run_states(state["run_id"]))[0]["status"] == "QUEUED"


async def test_a_chunked_body_over_the_limit_is_413_without_reading_all_of_it(api: Api) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(100):
            sent.append(index)
            yield b" " * 16 * 1024

    answer = await api.client.post(api.url("/graph/g/trigger"), content=chunks())

    assert answer.status_code == 413
    assert len(sent) < 100


async def test_a_request_without_the_key_is_refused_before_its_body_is_read(app: FastAPI) -> None:
    read: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(1)
        yield b"this is not JSON"

    transport = httpx.ASGITransport(app=app.state.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": API_KEY + "x"}):
            answer = await client.post("/v0/namespace/ns/graph/g/trigger", content=body(), headers=headers)
            assert (answer.status_code, answer.json()) == (401, {"detail": "Invalid API key"})
            oversized = await client.post(
                "/v0/namespace/ns/graph/g/trigger", content=b"x" * 10**6, headers=headers
            )
            assert oversized.status_code == 401
    assert read == []
