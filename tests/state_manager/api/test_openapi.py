"""The API reference (`/openapi.json`) is complete and true.

Complete: every operation has a summary, a description, a response model and its error answers,
with the error body's shape. True: the request examples work as given against a server, every
answer of that walk-through fits the documented schema, and every error status the server gives
to a probe of each operation is one the reference lists, with a body of the documented shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import API_KEY
from tests.state_manager.api.openapi_schema import (
    Operation,
    documented_body_schema,
    example_values,
    mismatches,
    operations,
    success_schema,
)

Json = dict[str, Any]

MAX_BODY = 64 * 1024
UNKNOWN_ID = "0123456789abcdef01234567"
WORKER_PROTOCOL = {
    ("PUT", "/v0/namespace/{namespace_name}/nodes/"),
    ("POST", "/v0/namespace/{namespace_name}/states/enqueue"),
    ("POST", "/v0/namespace/{namespace_name}/state/{state_id}/executed"),
    ("POST", "/v0/namespace/{namespace_name}/states/{state_id}/executed"),
    ("POST", "/v0/namespace/{namespace_name}/state/{state_id}/errored"),
    ("POST", "/v0/namespace/{namespace_name}/states/{state_id}/errored"),
    ("POST", "/v0/namespace/{namespace_name}/state/{state_id}/prune"),
    ("POST", "/v0/namespace/{namespace_name}/state/{state_id}/re-enqueue-after"),
    ("POST", "/v0/namespace/{namespace_name}/state/{state_id}/heartbeat"),
    ("GET", "/v0/namespace/{namespace_name}/state/{state_id}/secrets"),
}
USER_TAGS = {"graphs", "runs", "nodes"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The debug routes are in the reference too; a small body limit makes the 413 probe cheap.
    return {"count_db_commands": True, "max_request_bytes": MAX_BODY, "implicit_wait_ms": 0}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> Json:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec: Json = response.json()
    return spec


def _report(problems: list[str]) -> str:
    return "\n".join(["the API reference is incomplete:", *problems])


# ---------------------------------------------------------------- complete


def test_every_operation_has_a_summary_a_description_and_a_response_model(document: Json) -> None:
    problems: list[str] = []
    for op in operations(document):
        if not op.spec.get("summary"):
            problems.append(f"{op}: no summary")
        if not op.spec.get("description", "").strip():
            problems.append(f"{op}: no description")
        if problem := success_schema(document, op)[1]:
            problems.append(f"{op}: {problem}")

    assert not problems, _report(problems)


def test_every_operation_documents_its_errors_with_the_error_body(document: Json) -> None:
    problems: list[str] = []
    for op in operations(document):
        responses = op.spec["responses"]
        expected = set()
        if op.path.startswith("/v0/"):
            expected.add("401")
        if "requestBody" in op.spec:
            expected |= {"413", "422"}
        if op.spec.get("parameters"):
            expected.add("422")
        if missing := sorted(expected - set(responses)):
            problems.append(f"{op}: does not document {', '.join(missing)}")
        for code in (c for c in responses if c.startswith("4")):
            want = "ValidationErrorBody" if code == "422" else "ErrorBody"
            if documented_body_schema(op, code) != {"$ref": f"#/components/schemas/{want}"}:
                problems.append(f"{op}: {code} does not show the error body {want}")

    assert not problems, _report(problems)
    # FastAPI's own 422 shape (with `input` and `ctx`) is not what this server answers.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_error_body_shape_is_the_one_the_handlers_write(document: Json) -> None:
    schemas = document["components"]["schemas"]

    assert schemas["ErrorBody"]["required"] == ["detail"]
    assert set(schemas["ErrorBody"]["properties"]) == {"detail", "code"}
    assert set(schemas["ValidationIssue"]["properties"]) == {"type", "loc", "msg"}


def test_tags_separate_the_user_api_from_the_worker_protocol(document: Json) -> None:
    declared = {tag["name"]: tag.get("description", "") for tag in document["tags"]}
    problems: list[str] = []
    for op in operations(document):
        tags = op.spec.get("tags", [])
        if (op.method, op.path) in WORKER_PROTOCOL:
            if tags != ["worker protocol"]:
                problems.append(f"{op}: a worker call tagged {tags}")
        elif op.path.startswith("/v0/namespace") and (len(tags) != 1 or tags[0] not in USER_TAGS):
            problems.append(f"{op}: a user call tagged {tags}, not one of {sorted(USER_TAGS)}")
        problems += [
            f"{op}: tag {t!r} is not declared with a description" for t in tags if not declared.get(t)
        ]

    assert not problems, _report(problems)
    grouped = {tag for group in document["x-tagGroups"] for tag in group["tags"]}
    assert set(declared) >= grouped >= {t for op in operations(document) for t in op.spec["tags"]}


# ---------------------------------------------------------------- true: the examples


class Walk:
    """Sends documented examples, as the reference shows them, and checks each answer."""

    def __init__(self, client: httpx.AsyncClient, document: Json) -> None:
        self.client = client
        self.document = document
        self.ops = {(op.method, op.path): op for op in operations(document)}
        self.problems: list[str] = []

    def examples(self, method: str, path: str) -> dict[str, Any]:
        return example_values(self.ops[(method, path)])

    def url(self, path: str, **values: str) -> str:
        op = self.ops[next(key for key in self.ops if key[1] == path)]
        for parameter in op.spec.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] not in values:
                documented = parameter.get("examples", {})
                assert documented, f"{op}: no example for path parameter {parameter['name']}"
                values[parameter["name"]] = next(iter(documented.values()))["value"]
        return path.format(**values)

    async def send(
        self, method: str, path: str, body: Any = None, *, expect: int = 200, **values: str
    ) -> Any:
        op = self.ops[(method, path)]
        response = await self.client.request(method, self.url(path, **values), json=body)
        assert response.status_code == expect, f"{op} with {body}: {response.status_code} {response.text}"
        schema, _ = success_schema(self.document, op)
        self.problems += [f"{op}: {p}" for p in mismatches(self.document, response.json(), schema)]
        return response.json()


NODES = "/v0/namespace/{namespace_name}/nodes/"
GRAPH = "/v0/namespace/{namespace_name}/graph/{graph_name}"
TRIGGER = GRAPH + "/trigger"
CREATE = GRAPH + "/states/create"
ENQUEUE = "/v0/namespace/{namespace_name}/states/enqueue"
STATE = "/v0/namespace/{namespace_name}/state/{state_id}"


async def test_request_examples_work_as_given(client: httpx.AsyncClient, document: Json) -> None:
    walk = Walk(client, document)
    await walk.send("PUT", NODES, walk.examples("PUT", NODES)["runtime"])
    stored = await walk.send("PUT", GRAPH, walk.examples("PUT", GRAPH)["chain"], expect=201)
    assert stored["validation_status"] == "VALID", stored["validation_errors"]

    trigger = walk.examples("POST", TRIGGER)
    head = await walk.send("POST", TRIGGER, trigger["head"])
    seed = await walk.send("POST", TRIGGER, trigger["seed"])
    assert head["states"][0]["inputs"] == trigger["head"]["inputs"]
    assert seed["states"][0]["inputs"] == trigger["seed"]["states"][0]["inputs"]
    for _ in range(2):
        await walk.send("POST", TRIGGER, trigger["head"])
    await walk.send("POST", CREATE, walk.examples("POST", CREATE)["seed"])

    claimed = await walk.send("POST", ENQUEUE, walk.examples("POST", ENQUEUE)["long_poll"])
    ids = [state["state_id"] for state in claimed["states"]]
    assert len(ids) == 5
    executed = walk.examples("POST", STATE + "/executed")
    await walk.send("POST", STATE + "/executed", executed["one_output"], state_id=ids[0])
    await walk.send("POST", STATE + "/executed", executed["fan_out"], state_id=ids[1])
    await walk.send(
        "POST", STATE + "/errored", walk.examples("POST", STATE + "/errored")["failure"], state_id=ids[2]
    )
    await walk.send(
        "POST", STATE + "/prune", walk.examples("POST", STATE + "/prune")["prune"], state_id=ids[3]
    )
    later = walk.examples("POST", STATE + "/re-enqueue-after")["one_minute"]
    await walk.send("POST", STATE + "/re-enqueue-after", later, state_id=ids[4])

    # The next node of the example graph reads the example's secret.
    summarise = await walk.send("POST", ENQUEUE, {"nodes": ["Summarise"], "batch_size": 10, "wait_ms": 0})
    assert summarise["count"] == 3  # one after the single output, two after the fan-out
    assert {s["inputs"]["language"] for s in summarise["states"]} == {"fr", "en"}
    first = summarise["states"][0]["state_id"]
    await walk.send("POST", STATE + "/heartbeat", state_id=first)
    secrets = await walk.send("GET", STATE + "/secrets", state_id=first)
    assert secrets == {"secrets": {"openai_api_key": "sk-replace-me"}}

    assert not walk.problems, _report(walk.problems)


async def test_the_manual_retry_example_retries_a_failed_state(
    client: httpx.AsyncClient, document: Json
) -> None:
    walk = Walk(client, document)
    await walk.send("PUT", NODES, walk.examples("PUT", NODES)["runtime"])
    no_retries = {**walk.examples("PUT", GRAPH)["chain"], "retry_policy": {"max_retries": 0}}
    await walk.send("PUT", GRAPH, no_retries, expect=201)
    await walk.send("POST", TRIGGER, walk.examples("POST", TRIGGER)["head"])
    claimed = await walk.send("POST", ENQUEUE, walk.examples("POST", ENQUEUE)["long_poll"])
    failed = claimed["states"][0]["state_id"]
    await walk.send("POST", STATE + "/errored", {"error": "boom"}, state_id=failed)

    retry = await walk.send(
        "POST",
        STATE + "/manual-retry",
        walk.examples("POST", STATE + "/manual-retry")["retry"],
        state_id=failed,
    )

    assert retry["status"] == "CREATED" and retry["id"] != failed
    assert not walk.problems, _report(walk.problems)


def test_the_trigger_examples_do_not_mix_the_two_forms(document: Json) -> None:
    examples = example_values(next(op for op in operations(document) if op.path == TRIGGER))

    assert set(examples) == {"head", "seed"}
    assert set(examples["head"]) == {"inputs", "store", "start_delay"}
    assert set(examples["seed"]) == {"states"}


def test_every_request_body_has_an_example(document: Json) -> None:
    missing = [str(op) for op in operations(document) if "requestBody" in op.spec and not example_values(op)]
    assert not missing, _report([f"{op}: no request example" for op in missing])


# ---------------------------------------------------------------- true: the errors


def _probes(op: Operation) -> Iterator[tuple[str, dict[str, str], Any, dict[str, str]]]:
    """(what, path values, body, headers) of requests that provoke this operation's errors."""
    body = next(iter(example_values(op).values()), {}) if "requestBody" in op.spec else None
    values = {"namespace_name": "probe", "graph_name": "no-such-graph", "run_id": "no-such-run"}
    values |= {"state_id": UNKNOWN_ID, "node_id": UNKNOWN_ID, "page": "1", "size": "10"}
    values |= {"a": "no-such-run", "b": "no-such-run"}  # the two runs of a diff
    values |= {"key_id": "0123456789abcdef"}  # an API key
    key = {"x-api-key": API_KEY}
    yield "without a key", values, body, {}
    yield "with unknown names and ids", values, body, key
    if "{state_id}" in op.path:
        yield "with a malformed state id", values | {"state_id": "not-an-id"}, body, key
    if body is not None:
        yield "with a body of the wrong type", values, [], key
        yield "with a stale claim token", values, body, key | {"x-exosphere-claim-token": "stale"}
        yield "with a body over the limit", values, body, key


async def test_every_error_the_server_answers_is_documented(app: FastAPI, document: Json) -> None:
    problems: list[str] = []
    transport = httpx.ASGITransport(app=app.state.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for op in operations(document):
            for what, values, body, headers in _probes(op):
                url = op.path.format_map(values)
                if what == "with a body over the limit":
                    big = b"[" + b" " * MAX_BODY + b"]"
                    headers |= {"content-type": "application/json"}
                    response = await http.request(op.method, url, content=big, headers=headers)
                else:
                    response = await http.request(op.method, url, json=body, headers=headers)
                problems += _check_answer(document, op, what, response)

    assert not problems, _report(problems)


def _check_answer(document: Json, op: Operation, what: str, response: httpx.Response) -> list[str]:
    code = str(response.status_code)
    if response.status_code >= 500:
        return [f"{op} {what}: {code} {response.text[:200]}"]
    if response.status_code < 400:
        return []
    if code not in op.spec["responses"]:
        return [f"{op} {what}: answers {code}, which is not documented ({response.text[:120]})"]
    schema = documented_body_schema(op, code)
    return [f"{op} {what}: {code} {p}" for p in mismatches(document, response.json(), schema)]
