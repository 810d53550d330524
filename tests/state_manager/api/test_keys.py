"""Scoped API keys (issue 19): made, listed and revoked by an admin of all namespaces; each key
is refused what its role or namespaces do not allow, and a revoked or expired one is refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from state_manager.db.documents import ApiKey
from state_manager.services.context import AppContext
from tests.factories import Api, Json, graph, node, template

A = node("Alpha")


async def _make(client: httpx.AsyncClient, role: str, namespaces: list[str], **more: Any) -> Json:
    body = {"name": f"{role}-key", "role": role, "namespaces": namespaces, **more}
    answer = await client.post("/v0/keys", json=body)
    assert answer.status_code == 201, answer.text
    made: Json = answer.json()
    return made


def _as(key: str) -> dict[str, str]:
    return {"x-api-key": key}


async def test_a_key_is_shown_once_and_stored_hashed(api: Api) -> None:
    made = await _make(api.client, "worker", ["testns"])

    assert made["key"].startswith(f"exo_{made['id']}_") and made["role"] == "worker"
    listed = (await api.client.get("/v0/keys")).json()["keys"]
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    [stored] = [doc async for doc in ApiKey.get_motor_collection().find({})]
    secret = made["key"].rsplit("_", 1)[1]
    assert secret not in str(stored) and stored["secret_hash"] != secret


async def test_a_worker_key_runs_work_and_nothing_else(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    worker = _as((await _make(api.client, "worker", ["testns"]))["key"])
    await api.trigger("g")

    claimed = await api.client.post(
        api.url("/states/enqueue"), json={"nodes": ["Alpha"], "batch_size": 1, "wait_ms": 0}, headers=worker
    )
    assert claimed.status_code == 200 and len(claimed.json()["states"]) == 1
    trigger = await api.client.post(api.url("/graph/g/trigger"), json={}, headers=worker)
    assert trigger.status_code == 403
    assert trigger.json()["detail"] == (
        "Key 'worker-key' has role worker, which may not trigger a graph (start a run) in namespace testns"
    )
    elsewhere = await api.client.post(
        api.url("/states/enqueue", "other"), json={"nodes": ["Alpha"]}, headers=worker
    )
    assert elsewhere.status_code == 403 and "it is limited to testns" in elsewhere.json()["detail"]
    assert (await api.client.get(api.url("/graph/g"), headers=worker)).status_code == 403


async def test_a_viewer_reads_but_cannot_cancel(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    run_id = (await api.trigger("g"))["run_id"]
    viewer = _as((await _make(api.client, "viewer", ["*"]))["key"])

    assert (await api.client.get(api.url(f"/run/{run_id}"), headers=viewer)).status_code == 200
    cancel = await api.client.post(api.url(f"/run/{run_id}/cancel"), headers=viewer)
    assert cancel.status_code == 403 and "role viewer, which may not cancel a run" in cancel.json()["detail"]
    assert (await api.run_summary(run_id))["status"] == "PENDING"  # nothing was cancelled


async def test_only_an_admin_of_every_namespace_manages_keys(api: Api) -> None:
    local_admin = _as((await _make(api.client, "admin", ["testns"]))["key"])
    operator = _as((await _make(api.client, "operator", ["*"]))["key"])
    body = {"name": "x", "role": "viewer", "namespaces": ["testns"]}

    refused = await api.client.post("/v0/keys", json=body, headers=local_admin)
    assert (
        refused.status_code == 403 and "only an admin of all namespaces (*) may" in refused.json()["detail"]
    )
    assert (await api.client.get("/v0/keys", headers=operator)).status_code == 403
    admin = _as((await _make(api.client, "admin", ["*"]))["key"])
    assert (await api.client.post("/v0/keys", json=body, headers=admin)).status_code == 201


async def test_a_revoked_key_is_refused_at_once_and_a_repeat_changes_nothing(api: Api) -> None:
    made = await _make(api.client, "viewer", ["testns"])
    assert (await api.client.get(api.url("/graphs/"), headers=_as(made["key"]))).status_code == 200

    revoked = await api.client.delete(f"/v0/keys/{made['id']}")
    again = await api.client.delete(f"/v0/keys/{made['id']}")

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] == again.json()["revoked_at"]
    answer = await api.client.get(api.url("/graphs/"), headers=_as(made["key"]))
    assert (answer.status_code, answer.json()["detail"]) == (401, "API key 'viewer-key' was revoked")
    assert (await api.client.delete("/v0/keys/0123456789abcdef")).status_code == 404


async def test_an_expired_key_is_refused(api: Api, ctx: AppContext) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=60)
    made = await _make(api.client, "viewer", ["testns"], expires_at=soon.isoformat())
    await ApiKey.get_motor_collection().update_one({"key_id": made["id"]}, {"$set": {"expires_ms": 1}})
    ctx.api_keys.clear()  # as after KEY_CACHE_SECONDS

    answer = await api.client.get(api.url("/graphs/"), headers=_as(made["key"]))

    assert (answer.status_code, answer.json()["detail"]) == (401, "API key 'viewer-key' has expired")


async def test_a_key_that_is_not_one_is_refused_alike(api: Api) -> None:
    made = await _make(api.client, "viewer", ["testns"])
    forged = made["key"][:-4] + "AAAA"
    for key in (forged, "exo_0123456789abcdef_" + "A" * 43, "nonsense", ""):
        answer = await api.client.get(api.url("/graphs/"), headers=_as(key))
        assert (answer.status_code, answer.json()["detail"]) == (401, "Invalid API key")


async def test_bad_key_requests_get_a_clear_400(api: Api) -> None:
    cases = [
        ({"name": "", "role": "viewer", "namespaces": ["a"]}, "Invalid key name"),
        ({"name": "k", "role": "owner", "namespaces": ["a"]}, "Invalid role 'owner'"),
        ({"name": "k", "role": "viewer", "namespaces": []}, "namespaces"),
        (
            {"name": "k", "role": "viewer", "namespaces": ["a"], "expires_at": "2001-01-01T00:00:00Z"},
            "expires_at",
        ),
    ]
    for body, message in cases:
        answer = await api.client.post("/v0/keys", json=body)
        assert answer.status_code == 400 and message in answer.json()["detail"], (body, answer.text)
    assert (await api.client.get("/v0/keys")).json()["keys"] == []


async def test_a_key_sees_only_its_namespaces(api: Api) -> None:
    await api.register(A)
    await api.register(A, namespace="other")
    viewer = _as((await _make(api.client, "viewer", ["testns"]))["key"])

    listed = (await api.client.get("/v0/namespaces", headers=viewer)).json()

    assert listed["namespaces"] == ["testns"]


async def test_an_expiry_that_names_no_zone_is_utc(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # a server whose local time is not UTC
    time.tzset()
    try:
        made = await _make(api.client, "viewer", ["testns"], expires_at="2031-01-02T03:04:05")
    finally:
        monkeypatch.undo()
        time.tzset()

    assert made["expires_at"] == "2031-01-02T03:04:05+00:00"
