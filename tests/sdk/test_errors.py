from __future__ import annotations

import asyncio

import httpx
import pytest

from exospherehost import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ExosphereError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    StateManager,
    StateManagerError,
    TransportError,
)
from exospherehost.errors import error_for_status

from .fake_server import API_KEY, BASE_URL, NAMESPACE


def manager(handler: httpx.MockTransport) -> StateManager:
    return StateManager(NAMESPACE, BASE_URL, API_KEY, transport=handler)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, BadRequestError),
        (500, ServerError),
        (503, ServerError),
        (418, StateManagerError),
    ],
)
async def test_status_codes_map_to_typed_errors(status: int, error_type: type[StateManagerError]) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json={"detail": "nope"}))

    with pytest.raises(error_type) as caught:
        await manager(transport).get_graph("g")

    assert type(caught.value) is error_type
    assert caught.value.status_code == status
    assert caught.value.detail == "nope"
    assert f"/v0/namespace/{NAMESPACE}/graph/g" in str(caught.value)


async def test_validation_error_list_is_readable() -> None:
    detail = [{"type": "missing", "loc": ["body", "secrets"], "msg": "Field required"}]
    transport = httpx.MockTransport(lambda _: httpx.Response(422, json={"detail": detail}))

    with pytest.raises(BadRequestError) as caught:
        await manager(transport).trigger("g")

    assert caught.value.detail == detail
    assert "body.secrets: Field required" in str(caught.value)


async def test_non_json_error_body_keeps_the_text() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(502, text="<html>bad gateway</html>"))

    with pytest.raises(ServerError, match="bad gateway"):
        await manager(transport).get_graph("g")


async def test_network_failure_is_a_transport_error_keeping_but_not_chaining_the_cause() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError) as caught:
        await manager(httpx.MockTransport(refuse)).get_graph("g")

    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # not printed
    assert isinstance(caught.value.__context__, httpx.ConnectError)
    assert isinstance(caught.value, ExosphereError)


async def test_unreadable_success_body_is_a_transport_error() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, text="not json"))

    with pytest.raises(TransportError, match="not JSON"):
        await manager(transport).get_graph("g")


async def test_every_request_carries_the_api_key() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    await manager(httpx.MockTransport(record)).get_graph("g")

    assert seen[0].headers["x-api-key"] == API_KEY


async def test_path_segments_are_percent_encoded() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    await manager(httpx.MockTransport(record)).get_graph("a/b c")

    assert seen[0].url.raw_path == f"/v0/namespace/{NAMESPACE}/graph/a%2Fb%20c".encode()


def test_one_manager_works_across_event_loops() -> None:
    """A module-level StateManager used from two `asyncio.run` calls keeps working."""
    sm = manager(httpx.MockTransport(lambda _: httpx.Response(200, json={"validation_status": "VALID"})))

    first = asyncio.run(sm.get_graph("g"))
    second = asyncio.run(sm.get_graph("g"))

    assert first == second == {"validation_status": "VALID"}


async def test_the_machine_readable_code_of_an_error_body_is_kept() -> None:
    body = {"detail": "State s1 was cancelled: its run r1 was cancelled", "code": "STATE_CANCELLED"}
    transport = httpx.MockTransport(lambda _: httpx.Response(409, json=body))

    with pytest.raises(ConflictError) as caught:
        await manager(transport).get_graph("g")

    assert caught.value.code == "STATE_CANCELLED"
    assert caught.value.detail == body["detail"]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(409, json={"detail": "lease lost"}),
        httpx.Response(409, json={"detail": "lease lost", "code": 7}),
        httpx.Response(502, text="<html>bad gateway</html>"),
    ],
    ids=["no-code", "not-a-string", "not-json"],
)
async def test_an_error_without_a_code_has_code_none(response: httpx.Response) -> None:
    with pytest.raises(StateManagerError) as caught:
        await manager(httpx.MockTransport(lambda _: response)).get_graph("g")

    assert caught.value.code is None


def test_error_for_status_keeps_the_code() -> None:
    error = error_for_status(409, "cancelled", method="POST", path="/p", code="STATE_CANCELLED")

    assert type(error) is ConflictError
    assert error.code == "STATE_CANCELLED"
    assert error_for_status(409, "lease lost").code is None
