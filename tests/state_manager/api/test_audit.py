"""The audit log (issue 19): every state-changing call is recorded, with who made it and what
it answered; a runtime's work is not; the log is read by an admin of all namespaces only."""

from __future__ import annotations

import httpx

from state_manager.db.documents import AuditRecord
from state_manager.services.audit import purge_old
from state_manager.services.context import AppContext
from tests.factories import Api, Json, graph, node, template

A = node("Alpha")


async def _key(client: httpx.AsyncClient, name: str, role: str, namespaces: list[str]) -> dict[str, str]:
    answer = await client.post("/v0/keys", json={"name": name, "role": role, "namespaces": namespaces})
    assert answer.status_code == 201, answer.text
    return {"x-api-key": answer.json()["key"]}


async def _log(client: httpx.AsyncClient, **query: str) -> list[Json]:
    answer = await client.get("/v0/audit", params=query)
    assert answer.status_code == 200, answer.text
    records: list[Json] = answer.json()["records"]
    return records


async def test_who_did_what_is_recorded_with_the_answer(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    ops = await _key(api.client, "on-call", "operator", ["testns"])
    support = await _key(api.client, "support", "viewer", ["testns"])
    run_id = (await api.client.post(api.url("/graph/g/trigger"), json={}, headers=ops)).json()["run_id"]
    refused = await api.client.post(api.url(f"/run/{run_id}/cancel"), headers=support)
    cancelled = await api.client.post(api.url(f"/run/{run_id}/cancel"), headers=ops)
    assert (refused.status_code, cancelled.status_code) == (403, 200)

    cancels = await _log(api.client, action="run.cancel")

    assert [(r["key_name"], r["role"], r["status"]) for r in cancels] == [
        ("on-call", "operator", 200),
        ("support", "viewer", 403),
    ]
    assert cancels[0]["namespace"] == "testns" and cancels[0]["target"] == {"run": run_id}
    assert cancels[0]["client"] and cancels[0]["request_id"]
    [trigger] = await _log(api.client, action="run.trigger")
    assert (trigger["key_name"], trigger["target"]) == ("on-call", {"graph": "g"})
    upserts = await _log(api.client, action="graph.upsert", key="root")
    assert [(r["key_id"], r["role"], r["status"]) for r in upserts] == [(None, "admin", 201)]


async def test_a_runtimes_work_and_every_read_is_not_recorded(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    await api.trigger("g")
    [state] = await api.claim("Alpha")
    await api.executed(state["state_id"], [{"y": "1"}])
    await api.call("GET", "/runs")

    assert [r["action"] for r in await _log(api.client)] == ["run.trigger", "graph.upsert"]


async def test_the_log_pages_and_filters(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    for _ in range(5):
        await api.trigger("g")
    await api.register(A, namespace="other")
    await api.upsert("h", graph(template("a", "Alpha", {"x": "go"}, namespace="other")), namespace="other")

    first = (await api.client.get("/v0/audit", params={"action": "run.trigger", "limit": 3})).json()
    second = (
        await api.client.get(
            "/v0/audit", params={"action": "run.trigger", "limit": 3, "cursor": first["next_cursor"]}
        )
    ).json()

    assert len(first["records"]) == 3 and len(second["records"]) == 2 and second["next_cursor"] is None
    assert [r["namespace"] for r in await _log(api.client, action="graph.upsert")] == ["other", "testns"]
    assert [r["target"] for r in await _log(api.client, namespace="other")] == [{"graph": "h"}]
    assert await _log(api.client, until="2001-01-01T00:00:00Z") == []
    assert len(await _log(api.client, since="2001-01-01T00:00:00Z")) == 7


async def test_only_an_admin_of_all_namespaces_reads_it_and_nobody_changes_it(api: Api) -> None:
    local = await _key(api.client, "local-admin", "admin", ["testns"])
    everywhere = await _key(api.client, "auditor", "admin", ["*"])

    assert (await api.client.get("/v0/audit", headers=local)).status_code == 403
    assert (await api.client.get("/v0/audit", headers=everywhere)).status_code == 200
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        assert (await api.client.request(method, "/v0/audit")).status_code == 405
    created = await _log(api.client, action="key.create")
    assert [r["target"] for r in created] == [{}, {}] and {r["key_name"] for r in created} == {"root"}


async def test_records_older_than_audit_retention_are_deleted_and_no_others(
    api: Api, ctx: AppContext
) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    await api.trigger("g")
    old = ctx.settings.audit_retention * 1000 + 60_000
    await AuditRecord.get_motor_collection().update_one(
        {"action": "graph.upsert"}, {"$inc": {"at_ms": -int(old)}}
    )

    assert await purge_old(ctx) == 1
    assert [r["action"] for r in await _log(api.client)] == ["run.trigger"]
    assert await purge_old(ctx) == 0
