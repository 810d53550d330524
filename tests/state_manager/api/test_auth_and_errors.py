"""Authentication, request ids and the error answers every endpoint shares."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import ALPHA, NAMESPACE, OTHER_NAMESPACE, Api, graph, node, template

REQUEST_ID = "x-exosphere-request-id"
UNKNOWN_ID = "0123456789abcdef01234567"


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"x-api-key": ""})

    assert response.status_code == 200
    assert response.json() == {"message": "OK"}


async def test_missing_or_wrong_key_is_401(client: httpx.AsyncClient, subtests: pytest.Subtests) -> None:
    client.headers.pop("x-api-key")

    for headers in ({}, {"x-api-key": "wrong-key"}, {"x-api-key": ""}, {"x-api-key": "TEST-KEY"}):
        with subtests.test(headers=headers):
            response = await client.get(f"/v0/namespace/{NAMESPACE}/nodes/", headers=headers)

            assert response.status_code == 401
            assert response.json() == {"detail": "Invalid API key"}


async def test_global_routes_need_the_key_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/v0/namespaces", headers={"x-api-key": "nope"})

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


async def test_key_header_name_is_case_insensitive(client: httpx.AsyncClient) -> None:
    key = client.headers.pop("x-api-key")

    response = await client.get(f"/v0/namespace/{NAMESPACE}/nodes/", headers={"X-API-KEY": key})

    assert response.status_code == 200


async def test_a_uuid_request_id_is_echoed(client: httpx.AsyncClient, subtests: pytest.Subtests) -> None:
    cases = [
        ("GET", "/health", None, {}, 200),
        ("GET", f"/v0/namespace/{NAMESPACE}/nodes/", None, {"x-api-key": "wrong"}, 401),
        ("POST", f"/v0/namespace/{NAMESPACE}/states/enqueue", {"nodes": ["A"]}, {}, 422),
    ]
    for method, path, body, headers, status in cases:
        with subtests.test(status=status):
            request_id = str(uuid.uuid4())

            response = await client.request(
                method, path, json=body, headers={REQUEST_ID: request_id, **headers}
            )

            assert response.status_code == status
            assert response.headers[REQUEST_ID] == request_id


async def test_a_missing_or_invalid_request_id_is_replaced_by_a_new_uuid(
    client: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    for sent in (None, "not-a-uuid", "12345"):
        with subtests.test(sent=sent):
            headers = {REQUEST_ID: sent} if sent is not None else {}

            first = await client.get(f"/v0/namespace/{NAMESPACE}/nodes/", headers=headers)
            second = await client.get(f"/v0/namespace/{NAMESPACE}/nodes/", headers=headers)

            assert first.status_code == 200
            echoed = first.headers[REQUEST_ID]
            assert str(uuid.UUID(echoed)) == echoed
            assert echoed != sent
            assert second.headers[REQUEST_ID] != echoed


STATE_CALLS = [
    ("POST", "/state/{id}/executed", {"outputs": [{}]}),
    ("POST", "/states/{id}/executed", {"outputs": [{}]}),
    ("POST", "/state/{id}/errored", {"error": "x"}),
    ("POST", "/states/{id}/errored", {"error": "x"}),
    ("POST", "/state/{id}/prune", {"data": {}}),
    ("POST", "/state/{id}/re-enqueue-after", {"enqueue_after": 10}),
    ("POST", "/state/{id}/manual-retry", {"fanout_id": "f"}),
    ("POST", "/state/{id}/heartbeat", None),
    ("GET", "/state/{id}/secrets", None),
]


async def test_invalid_state_id_is_422_naming_the_id(api: Api, subtests: pytest.Subtests) -> None:
    for method, suffix, body in STATE_CALLS:
        with subtests.test(path=suffix):
            detail = await api.call(method, suffix.format(id="not-an-object-id"), body, expect=422)

            assert "not-an-object-id" in str(detail["detail"])


async def test_unknown_state_is_404(api: Api, subtests: pytest.Subtests) -> None:
    for method, suffix, body in STATE_CALLS:
        with subtests.test(path=suffix):
            answer = await api.call(method, suffix.format(id=UNKNOWN_ID), body, expect=404)

            assert answer == {"detail": "State not found"}


async def test_collection_without_trailing_slash_redirects(
    client: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    for collection in ("nodes", "graphs"):
        with subtests.test(collection=collection):
            response = await client.get(f"/v0/namespace/{NAMESPACE}/{collection}")

            assert response.status_code == 307
            assert response.headers["location"].endswith(f"/v0/namespace/{NAMESPACE}/{collection}/")


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.put(
        f"/v0/namespace/{NAMESPACE}/nodes/",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422


async def test_namespaces_lists_namespaces_with_registered_nodes(api: Api, client: httpx.AsyncClient) -> None:
    empty = await client.get("/v0/namespaces")
    assert empty.json() == {"namespaces": [], "count": 0}

    await api.register(ALPHA, namespace=OTHER_NAMESPACE)
    await api.register(ALPHA, node("Gamma"), namespace=NAMESPACE)
    graph_only = graph(template("a", "Alpha", {"x": "1"}, namespace="graphs-only"))
    await api.upsert("only-a-graph", graph_only, namespace="graphs-only")

    response = await client.get("/v0/namespaces")

    assert response.status_code == 200
    assert response.json() == {"namespaces": sorted([NAMESPACE, OTHER_NAMESPACE]), "count": 2}


async def test_the_generated_api_reference_is_served_without_a_key(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app.state.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
        page = await anonymous.get("/docs")
    assert page.status_code == 200
    assert "/v0/namespace/{namespace_name}/graph/{graph_name}/trigger" in spec["paths"]
    assert "/v0/namespace/{namespace_name}/state/{state_id}/heartbeat" in spec["paths"]
