"""The dashboard with scoped keys (issue 19): any valid key logs in, each key sees only its
namespaces and the buttons its role may use, the POSTs refuse what the role may not do, a revoked
or expired key's session ends, a worker key is told it can read nothing here, the Keys and Audit
pages are for an admin of all namespaces, and logins and actions are in the audit log."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from state_manager import dashboard
from state_manager.dashboard import access, admin, session
from state_manager.db.documents import ApiKey
from state_manager.services.context import AppContext
from tests.factories import Api, Json, graph, node, now_ms, template
from tests.state_manager.dashboard.conftest import BASE, Ui, rows, text_of

WEB, OTHER = "web", "other"
Browser = Callable[[], Awaitable[Ui]]


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[Browser]:
    """A new browser (its own cookies) each call, not logged in."""
    async with AsyncExitStack() as stack:

        async def new() -> Ui:
            transport = httpx.ASGITransport(app=app.state.asgi)
            http = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url=BASE))
            return Ui(http)

        yield new


async def _key(api: Api, name: str, role: str, namespaces: list[str], **more: Any) -> Json:
    answer = await api.client.post(
        "/v0/keys", json={"name": name, "role": role, "namespaces": namespaces, **more}
    )
    assert answer.status_code == 201, answer.text
    made: Json = answer.json()
    return made


async def _logged_in(browser: Browser, key: str) -> Ui:
    ui = await browser()
    response = await ui.login(key)
    assert response.status_code == 303, response.text
    return ui


async def _pending_run(api: Api, namespace: str) -> str:
    """A run in `namespace` that waits an hour before it starts (so it can be cancelled)."""
    where = Api(api.client, namespace)
    await where.setup("g", graph(template("a", "Alpha", {"x": "go"}, namespace=namespace)), node("Alpha"))
    run_id: str = (await where.trigger("g", {"start_delay": 3_600_000}))["run_id"]
    return run_id


async def _audit(api: Api, **query: str) -> list[Json]:
    answer = await api.client.get("/v0/audit", params=query)
    assert answer.status_code == 200, answer.text
    records: list[Json] = answer.json()["records"]
    return records


def _switcher(page: str) -> list[str]:
    match = re.search(r'<details class="ns-switch">.*?</details>', page, re.S)
    assert match, "no namespace switcher"
    return re.findall(r"<li><a [^>]*>([^<]*)</a></li>", match.group(0))


def _text(page: str) -> str:
    return html.unescape(text_of(page))


async def test_a_viewer_sees_only_its_namespace_and_no_button_and_a_forged_cancel_is_refused(
    api: Api, browser: Browser
) -> None:
    run_id = await _pending_run(api, WEB)
    await _pending_run(api, OTHER)
    viewer = await _logged_in(browser, (await _key(api, "support", "viewer", [WEB]))["key"])

    way_in = await viewer.get("/ui", expect=303)
    assert way_in.headers["location"] == f"/ui/ns/{WEB}/runs"
    runs = await viewer.page(f"/ui/ns/{WEB}/runs")
    assert _switcher(runs) == [WEB] and run_id in runs
    assert "support" in _text(runs) and 'href="/ui/keys"' not in runs and 'href="/ui/audit"' not in runs
    page = await viewer.page(f"/ui/ns/{WEB}/runs/{run_id}")
    assert 'data-status="PENDING"' in page and "Cancel run" not in page and "/cancel" not in page

    elsewhere = await viewer.get(f"/ui/ns/{OTHER}/runs", expect=403)
    assert "Key 'support' (viewer) may not read runs in namespace other" in _text(elsewhere.text)
    assert elsewhere.headers["content-type"].startswith("text/html") and "Not allowed" in elsewhere.text
    confirm = await viewer.get(f"/ui/ns/{WEB}/runs/{run_id}/cancel", expect=403)
    assert "has role viewer, which may not cancel a run or retry its failed states" in _text(confirm.text)

    forged = await viewer.post(f"/ui/ns/{WEB}/runs/{run_id}/cancel")
    assert forged.status_code == 403
    assert "Key 'support' has role viewer, which may not cancel a run in namespace web" in _text(forged.text)
    assert (await Api(api.client, WEB).call("GET", f"/run/{run_id}"))["status"] == "PENDING"
    for path in (f"/ui/ns/{WEB}/runs/{run_id}/retry-failed", f"/ui/ns/{WEB}/runs/{run_id}/fork"):
        assert (await viewer.post(path)).status_code == 403, path
    [refused] = await _audit(api, action="run.cancel")
    assert (refused["key_name"], refused["role"], refused["status"]) == ("support", "viewer", 403)


async def test_an_operator_sees_and_uses_cancel_and_the_audit_log_records_it(
    api: Api, browser: Browser
) -> None:
    run_id = await _pending_run(api, WEB)
    made = await _key(api, "on-call", "operator", [WEB])
    operator = await _logged_in(browser, made["key"])

    page = await operator.page(f"/ui/ns/{WEB}/runs/{run_id}")
    assert f'href="/ui/ns/{WEB}/runs/{run_id}/cancel"' in page and "Cancel run" in page
    assert "Cancel this run?" in await operator.page(f"/ui/ns/{WEB}/runs/{run_id}/cancel")
    done = await operator.post(f"/ui/ns/{WEB}/runs/{run_id}/cancel")

    assert done.status_code == 303 and done.headers["location"].endswith("?msg=cancelled")
    assert (await Api(api.client, WEB).call("GET", f"/run/{run_id}"))["status"] == "CANCELLED"
    [record] = await _audit(api, action="run.cancel")
    assert (record["key_id"], record["key_name"], record["role"]) == (made["id"], "on-call", "operator")
    assert (record["namespace"], record["target"], record["status"]) == (WEB, {"run": run_id}, 303)
    assert record["client"] and record["request_id"]
    # An operator of web cannot act in another namespace either.
    other_run = await _pending_run(api, OTHER)
    assert (await operator.post(f"/ui/ns/{OTHER}/runs/{other_run}/cancel")).status_code == 403
    assert (await Api(api.client, OTHER).call("GET", f"/run/{other_run}"))["status"] == "PENDING"


async def test_a_revoked_keys_session_ends_on_its_next_request(
    api: Api, browser: Browser, ctx: AppContext
) -> None:
    made = await _key(api, "support", "viewer", [WEB])
    viewer = await _logged_in(browser, made["key"])
    await viewer.get(f"/ui/ns/{WEB}/runs")
    cookie = viewer.client.cookies[session.COOKIE_NAME]
    assert made["key"] not in cookie and made["key"].split("_")[2] not in cookie

    assert (await api.client.delete(f"/v0/keys/{made['id']}")).status_code == 200
    ctx.api_keys.clear()  # stands for the 2 s after which every replica reads the key again

    ended = await viewer.get(f"/ui/ns/{WEB}/runs", expect=303)
    assert ended.headers["location"].startswith("/ui/login?msg=session-revoked&next=")
    assert session.COOKIE_NAME not in viewer.client.cookies  # removed
    login = await viewer.page(ended.headers["location"])
    assert "the API key you logged in with was revoked" in login
    # The same cookie, kept by someone, opens nothing either, and its POSTs are refused.
    copy = {"cookie": f"{session.COOKIE_NAME}={cookie}"}
    again = await viewer.client.get(f"/ui/ns/{WEB}/runs", headers=copy)
    assert again.status_code == 303 and "session-revoked" in again.headers["location"]
    posted = await viewer.client.post("/ui/logout", headers={**copy, "origin": BASE})
    assert posted.status_code == 403
    refused = await viewer.login(made["key"])
    assert refused.status_code == 401 and "API key 'support' was revoked" in _text(refused.text)


async def test_an_expired_keys_session_ends(api: Api, browser: Browser, ctx: AppContext) -> None:
    made = await _key(api, "temp", "viewer", [WEB], expires_at="2099-01-01T00:00:00Z")
    viewer = await _logged_in(browser, made["key"])
    await viewer.get(f"/ui/ns/{WEB}/runs")

    await ApiKey.get_motor_collection().update_one(
        {"key_id": made["id"]}, {"$set": {"expires_ms": now_ms() - 1}}
    )
    ctx.api_keys.clear()

    ended = await viewer.get(f"/ui/ns/{WEB}/runs", expect=303)
    assert ended.headers["location"].startswith("/ui/login?msg=session-expired&next=")
    assert "has expired" in await viewer.page(ended.headers["location"])


async def test_a_worker_key_is_told_it_cannot_read_anything_here(api: Api, browser: Browser) -> None:
    await _pending_run(api, WEB)
    worker = await _logged_in(browser, (await _key(api, "web-runtime", "worker", [WEB]))["key"])

    for path in ("/ui", f"/ui/ns/{WEB}/runs", f"/ui/ns/{WEB}/nodes", "/ui/keys"):
        response = await worker.get(path, expect=403)
        assert "This key (worker) cannot read anything in the dashboard." in response.text, path
        assert 'action="/ui/logout"' in response.text and "Traceback" not in response.text
    assert (await worker.post("/ui/logout")).status_code == 303


async def test_the_keys_page_makes_a_key_shown_once_and_revokes_it(
    api: Api, ui: Ui, browser: Browser
) -> None:
    page = await ui.page("/ui/keys")
    assert "No keys yet" in page and 'href="/ui/keys" class="active"' in page

    made = await ui.post("/ui/keys", {"name": "ci deploy", "role": "admin", "namespaces": "web, other"})

    assert made.status_code == 200, made.text
    [key] = re.findall(r"exo_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", made.text)
    shown = _text(made.text)
    assert "this is the only time it is shown" in shown and "cannot be shown again" in shown
    key_id = key.split("_")[1]
    listed = await ui.page("/ui/keys")
    assert key not in listed and key.split("_")[2] not in listed
    assert rows(listed, "data-key-id") == [key_id] and 'data-status="active"' in listed
    assert re.search(r"other\s*,\s*web", _text(listed))
    holder = await _logged_in(browser, key)
    way_in = (await holder.get("/ui", expect=303)).headers["location"]
    assert way_in in {"/ui/ns/other/runs", "/ui/ns/web/runs"}

    confirm = await ui.page(f"/ui/keys/{key_id}/revoke")
    assert "Revoke key ci deploy?" in confirm and f'action="/ui/keys/{key_id}/revoke"' in confirm
    revoked = await ui.post(f"/ui/keys/{key_id}/revoke")

    assert revoked.status_code == 303 and revoked.headers["location"] == "/ui/keys?msg=key-revoked"
    after = await ui.page(revoked.headers["location"])
    assert "The key was revoked" in after and 'data-status="revoked"' in after
    assert f"/ui/keys/{key_id}/revoke" not in after
    assert (await holder.get("/ui/ns/web/runs", expect=303)).headers["location"].startswith("/ui/login")
    [created] = await _audit(api, action="key.create")
    [gone] = await _audit(api, action="key.revoke")
    assert (created["key_name"], created["target"], created["status"]) == ("root", {"key": key_id}, 200)
    assert (gone["target"], gone["status"]) == ({"key": key_id}, 303)


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"name": "", "role": "viewer", "namespaces": "web"}, "Invalid key name"),
        ({"name": "x", "role": "boss", "namespaces": "web"}, "Invalid role 'boss'"),
        ({"name": "x", "role": "viewer", "namespaces": " , "}, "namespaces: list 1 to 100"),
        ({"name": "x", "role": "viewer", "namespaces": "web", "expires": "2001-01-01"}, "in the past"),
        ({"name": "x", "role": "viewer", "namespaces": "web", "expires": "soon"}, "is not a date"),
    ],
)
async def test_a_refused_key_is_not_made_and_the_form_keeps_what_was_typed(
    api: Api, ui: Ui, form: dict[str, str], error: str
) -> None:
    response = await ui.post("/ui/keys", form)

    assert response.status_code == 400 and "The key was not made." in response.text
    assert error in _text(response.text) and "exo_" not in response.text
    assert f'value="{html.escape(form["namespaces"].strip())}"' in response.text
    assert (await api.client.get("/v0/keys")).json()["keys"] == []


async def test_keys_and_audit_are_for_an_admin_of_all_namespaces_only(api: Api, browser: Browser) -> None:
    web_admin = await _logged_in(browser, (await _key(api, "web-admin", "admin", [WEB]))["key"])
    page = await web_admin.page(f"/ui/ns/{WEB}/runs")
    assert 'href="/ui/keys"' not in page and 'href="/ui/audit"' not in page
    for path in ("/ui/keys", "/ui/audit"):
        refused = await web_admin.get(path, expect=403)
        assert "only an admin of all namespaces (*) may" in _text(refused.text), path
    made = await web_admin.post("/ui/keys", {"name": "sneaky", "role": "admin", "namespaces": "*"})
    assert made.status_code == 403 and "exo_" not in made.text
    assert [k["name"] for k in (await api.client.get("/v0/keys")).json()["keys"]] == ["web-admin"]

    boss = await _logged_in(browser, (await _key(api, "boss", "admin", ["*"]))["key"])
    page = await boss.page(f"/ui/ns/{WEB}/runs")
    assert 'href="/ui/keys"' in page and 'href="/ui/audit"' in page
    assert "web-admin" in await boss.page("/ui/keys")
    await boss.get("/ui/audit")


async def test_logins_and_failed_logins_are_recorded(api: Api, guest: Ui) -> None:
    made = await _key(api, "support", "viewer", [WEB])
    assert (await guest.login("not-a-key")).status_code == 401
    assert (await guest.login(made["key"])).status_code == 303

    [ok] = await _audit(api, action="dashboard.login")
    [failed] = await _audit(api, action="dashboard.login_failed")
    assert (ok["key_id"], ok["key_name"], ok["role"], ok["status"]) == (made["id"], "support", "viewer", 303)
    assert (failed["key_id"], failed["key_name"], failed["status"]) == ("unknown", "unknown", 401)
    assert failed["client"] and failed["request_id"] and failed["namespace"] is None


async def test_the_audit_page_lists_newest_first_filters_and_pages(
    api: Api, ui: Ui, guest: Ui, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await _pending_run(api, WEB)
    await _pending_run(api, OTHER)
    for _ in range(3):
        await guest.login("wrong")
    assert (await ui.post(f"/ui/ns/{WEB}/runs/{run_id}/cancel")).status_code == 303

    page = await ui.page("/ui/audit")
    actions = rows(page, "data-action")
    assert actions[0] == "run.cancel" and actions.count("dashboard.login_failed") == 3
    assert actions.count("run.trigger") == 2 and actions[-1] == "dashboard.login"  # the fixture's
    assert f'href="/ui/ns/{WEB}/runs/{run_id}"' in page  # the target links to the run

    failed = await ui.page("/ui/audit?action=dashboard.login_failed")
    assert rows(failed, "data-action") == ["dashboard.login_failed"] * 3
    assert '<option value="dashboard.login_failed" selected>' in failed
    other = await ui.page(f"/ui/audit?namespace={OTHER}")
    assert rows(other, "data-action") == ["run.trigger", "graph.upsert"]
    assert set(rows(await ui.page("/ui/audit?key=unknown"), "data-action")) == {"dashboard.login_failed"}
    assert "No records match these filters" in await ui.page("/ui/audit?since=2099-01-01")
    assert (await ui.get("/ui/audit?since=yesterday", expect=400)).status_code == 400

    monkeypatch.setattr(admin, "AUDIT_PER_PAGE", 2)
    first = await ui.page("/ui/audit")
    assert rows(first, "data-action")[:1] == ["run.cancel"] and len(rows(first, "data-action")) == 2
    older = re.search(r'href="([^"]*cursor=[^"]*)" rel="next"', first)
    assert older, "no link to the next page"
    second = await ui.page("/ui/audit" + html.unescape(older.group(1)))
    assert rows(second, "data-action") == ["dashboard.login_failed"] * 2 and "← Newest" in second


def test_every_dashboard_route_has_an_access_rule() -> None:
    """Deny by default: a route missing from the table is refused to every key but root, so a
    new page is noticed here rather than by its users."""
    routes = [r for module in dashboard.PAGES for r in module.router.routes if isinstance(r, APIRoute)]
    names = {access.endpoint_name(route.endpoint) for route in routes} | {"auth.home"}

    assert len(routes) > 15 and names == set(access.RULES)
    for route in routes:
        rule = access.RULES[access.endpoint_name(route.endpoint)]
        if "POST" in route.methods and rule.action != access.Action.PUBLIC:
            assert rule.audited, f"{route.path}: a state-changing page must be audited"
