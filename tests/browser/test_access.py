"""Scoped keys on the dashboard in Chromium (issue 19): a viewer key sees its namespace only and no
Cancel; root makes a key on the Keys page (shown once) and revokes it; the audit log filtered by
action. Saves the screenshots of the Keys and Audit pages of docs/dashboard.md."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import NS, Rest, log_in
from tests.support.live_server import REPO_ROOT, LiveServer

pytestmark = pytest.mark.browser

IMAGES = REPO_ROOT / "docs" / "images"
KEY = re.compile(r"^exo_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")


def _make_key(rest: Rest, name: str, role: str, namespaces: list[str]) -> Any:
    answer = rest.http.post("/v0/keys", json={"name": name, "role": role, "namespaces": namespaces})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _log_in_with(page: Page, key: str, path: str) -> None:
    await page.goto(path)
    await expect(page).to_have_url(re.compile(r"/ui/login"))
    await page.fill("input[name=api_key]", key)
    await page.click("button[type=submit]")
    await expect(page.locator("input[name=api_key]")).to_have_count(0)


async def test_a_viewer_sees_only_its_namespace_and_no_cancel_button(page: Page, rest: Rest) -> None:
    run_id = rest.trigger("pause", start_delay=3_600_000)  # waits an hour: Cancel would be offered
    support = _make_key(rest, "support", "viewer", [NS])
    try:
        await _log_in_with(page, support["key"], f"/ui/ns/{NS}/runs/{run_id}")

        await expect(page.locator("#run-status .badge")).to_have_text("PENDING")
        await expect(page.locator(".who")).to_contain_text("support")
        await expect(page.get_by_text("Cancel run")).to_have_count(0)
        await page.click("details.ns-switch summary")
        assert await page.locator("details.ns-switch li a").all_inner_texts() == [NS]
        await expect(page.locator(".topbar a", has_text="Keys")).to_have_count(0)

        await page.goto("/ui/keys")
        await expect(page.locator("h1")).to_have_text("Not allowed")
        await expect(page.locator(".alert")).to_contain_text("has role viewer, which may not manage API keys")
    finally:
        rest.call("POST", f"/run/{run_id}/cancel")
        rest.http.delete(f"/v0/keys/{support['id']}")


async def test_root_makes_a_key_shown_once_and_revokes_it(
    page: Page, dashboard_server: LiveServer, rest: Rest
) -> None:
    _make_key(rest, "web-runtime", "worker", [NS])
    _make_key(rest, "on-call", "operator", [NS, "web-idle"])
    await log_in(page, dashboard_server, "/ui/keys")

    await page.fill("input[name=name]", "ci-deploy")
    await page.select_option("select[name=role]", "admin")
    await page.fill("input[name=namespaces]", NS)
    await page.click("form.key-form button[type=submit]")

    shown = page.locator("#key-once")
    await expect(shown).to_have_text(KEY)
    key = (await shown.inner_text()).strip()
    await expect(page.locator("#new-key")).to_contain_text("this is the only time it is shown")
    row = page.locator(f'tr[data-key-id="{key.split("_")[1]}"]')
    await expect(row).to_have_attribute("data-status", "active")
    await expect(row).to_contain_text("ci-deploy")
    assert rest.http.get(f"/v0/namespace/{NS}/graphs/", headers={"x-api-key": key}).status_code == 200
    await page.screenshot(path=str(IMAGES / "dashboard-keys.png"), full_page=True)

    await page.goto("/ui/keys")
    await expect(page.locator("#key-once")).to_have_count(0)  # never shown again
    assert key not in await page.content()
    await row.get_by_role("link", name="Revoke").click()
    await expect(page.locator("h1")).to_have_text("Revoke key ci-deploy?")
    await page.click("text=Yes, revoke the key")

    await expect(page.locator(".notice")).to_contain_text("The key was revoked")
    await expect(row).to_have_attribute("data-status", "revoked")
    await expect(row.get_by_role("link", name="Revoke")).to_have_count(0)
    assert rest.http.get(f"/v0/namespace/{NS}/graphs/", headers={"x-api-key": key}).status_code == 401


async def test_the_audit_page_filters_by_action(page: Page, dashboard_server: LiveServer, rest: Rest) -> None:
    rest.call("POST", f"/run/{rest.trigger('pause', start_delay=3_600_000)}/cancel")
    await page.goto("/ui/login")
    await page.fill("input[name=api_key]", "not-a-key")
    await page.click("button[type=submit]")
    await expect(page.locator(".alert")).to_contain_text("not an API key of this server")
    await log_in(page, dashboard_server, "/ui/audit")

    rows = page.locator("tr[data-action]")
    await expect(rows.first).to_be_visible()
    actions = set(await rows.evaluate_all("rows => rows.map(r => r.dataset.action)"))
    assert {"dashboard.login", "dashboard.login_failed", "run.cancel", "run.trigger"} <= actions
    await page.screenshot(path=str(IMAGES / "dashboard-audit.png"), full_page=False)

    await page.select_option("select[name=action]", "run.cancel")
    await page.click("form.filters button[type=submit]")

    await expect(page).to_have_url(re.compile(r"action=run\.cancel"))
    await expect(rows.first).to_be_visible()
    assert set(await rows.evaluate_all("rows => rows.map(r => r.dataset.action)")) == {"run.cancel"}
    await expect(rows.first).to_contain_text("root")
