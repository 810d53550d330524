"""Login with the server's key, the signed session cookie, logout, and the origin check: without
a session every page leads to the login page and shows no data."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from state_manager.dashboard import session
from tests.factories import ALPHA, API_KEY, BETA, Api, Worker, chain, now_ms
from tests.state_manager.dashboard.conftest import Ui

PAGES = [
    "/ui",
    "/ui/ns/testns/runs",
    "/ui/ns/testns/runs/{run}",
    "/ui/ns/testns/runs/{run}?tab=states",
    "/ui/ns/testns/runs/{run}/cancel",
    "/ui/ns/testns/states/{state}",
    "/ui/ns/testns/graphs",
    "/ui/ns/testns/graphs/g",
    "/ui/ns/testns/nodes",
]


async def _a_run(api: Api) -> tuple[str, str]:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"store": {"secret_store_value": "s3cr3t-value"}}))["run_id"]
    state = await Worker(api, "Alpha").execute([{"y": "private-output"}])
    return run_id, state["state_id"]


@pytest.mark.parametrize("page", PAGES)
async def test_without_a_session_every_page_leads_to_login_and_shows_no_data(
    api: Api, guest: Ui, page: str
) -> None:
    run_id, state_id = await _a_run(api)
    path = page.format(run=run_id, state=state_id)

    response = await guest.get(path, expect=303)

    assert response.headers["location"].startswith("/ui/login?next=")
    for leaked in (run_id, state_id, "private-output", "s3cr3t-value", "Alpha"):
        assert leaked not in response.text
    login = await guest.page(response.headers["location"])
    assert 'name="api_key"' in login and 'type="password"' in login
    for leaked in ("private-output", "s3cr3t-value", "Alpha", "RUNNING"):
        assert leaked not in login


async def test_a_wrong_key_is_refused_and_sets_no_cookie(guest: Ui) -> None:
    response = await guest.login("not-the-key")

    assert response.status_code == 401
    assert "not an API key of this server" in response.text and "set-cookie" not in response.headers
    assert (await guest.get("/ui/ns/testns/runs", expect=303)).headers["location"].startswith("/ui/login")


async def test_the_right_key_sets_a_signed_httponly_strict_cookie_and_opens_the_pages(guest: Ui) -> None:
    response = await guest.login(API_KEY)

    assert response.status_code == 303 and response.headers["location"] == "/ui"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{session.COOKIE_NAME}=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/ui"} <= flags
    assert API_KEY not in cookie
    page = await guest.page("/ui/ns/testns/runs")
    assert "No runs in testns yet" in page


async def test_login_returns_to_the_page_asked_for_but_never_off_the_dashboard(guest: Ui) -> None:
    wanted = "/ui/ns/testns/nodes?x=1"
    response = await guest.post("/ui/login", {"api_key": API_KEY, "next": wanted})
    assert response.headers["location"] == wanted

    for evil in ("https://evil.example/ui/", "//evil.example/ui/", "/v0/namespace/x/graphs"):
        await guest.post("/ui/logout")
        response = await guest.post("/ui/login", {"api_key": API_KEY, "next": evil})
        assert response.headers["location"] == "/ui", evil


@pytest.mark.parametrize(
    "make",
    [
        lambda: "garbage",
        lambda: "a.b",
        # signed with a key derived from another server key
        lambda: session.issue(session.session_key("another-key"), now_ms()),
        # expired
        lambda: session.issue(session.session_key(API_KEY), now_ms() - 2_000, lifetime_ms=1_000),
        # issued in the future (made when the test runs, not when it is collected)
        lambda: session.issue(session.session_key(API_KEY), now_ms() + 60_000),
    ],
    ids=["garbage", "no-signature", "other-key", "expired", "future"],
)
async def test_a_forged_or_expired_cookie_is_no_session(guest: Ui, make: Callable[[], str]) -> None:
    response = await _with_cookie(guest, make())

    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


async def _with_cookie(guest: Ui, value: str) -> httpx.Response:
    return await guest.client.get("/ui/ns/testns/runs", headers={"cookie": f"{session.COOKIE_NAME}={value}"})


async def test_a_tampered_payload_breaks_the_signature(guest: Ui) -> None:
    good = session.issue(session.session_key(API_KEY), now_ms())
    payload, signature = good.split(".")
    longer = session.issue(session.session_key(API_KEY), now_ms(), lifetime_ms=10**12).split(".")[0]

    assert (await _with_cookie(guest, f"{longer}.{signature}")).status_code == 303
    assert (await _with_cookie(guest, f"{payload}.{signature}")).status_code == 200


async def test_logout_ends_the_session(ui: Ui) -> None:
    await ui.get("/ui/ns/testns/runs")

    response = await ui.post("/ui/logout")

    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")
    assert "You are logged out" in await ui.page(response.headers["location"])
    await ui.get("/ui/ns/testns/runs", expect=303)


@pytest.mark.parametrize(
    "headers",
    [{}, {"origin": "http://evil.example"}, {"referer": "http://evil.example/ui/"}, {"origin": "null"}],
)
async def test_a_post_from_another_origin_is_refused(guest: Ui, headers: dict[str, str]) -> None:
    response = await guest.post("/ui/login", {"api_key": API_KEY}, headers=headers)

    assert response.status_code == 403 and "set-cookie" not in response.headers


async def test_a_post_with_only_a_same_origin_referer_is_accepted(guest: Ui) -> None:
    response = await guest.post(
        "/ui/login", {"api_key": API_KEY}, headers={"referer": "http://test/ui/login"}
    )
    assert response.status_code == 303


async def test_a_post_without_a_session_is_refused(api: Api, guest: Ui) -> None:
    run_id, _ = await _a_run(api)

    response = await guest.post(f"/ui/ns/testns/runs/{run_id}/cancel")

    assert response.status_code == 403
    assert (await api.call("GET", f"/run/{run_id}"))["status"] == "RUNNING"


async def test_the_way_in_leads_to_the_namespace_of_the_newest_run(api: Api, ui: Ui) -> None:
    chooser = await ui.page("/ui")
    assert "Nothing here yet" in chooser

    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")

    response = await ui.get("/ui", expect=303)
    assert response.headers["location"] == "/ui/ns/testns/runs"
    already = await ui.get("/ui/login", expect=303)  # logged in: the login page moves on
    assert already.headers["location"] == "/ui"
