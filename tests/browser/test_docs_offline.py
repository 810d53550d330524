"""The API reference renders in a real browser with every request off this host refused, as on a
server without internet access: Swagger UI lists every operation and can call the API, ReDoc
shows the operations, and neither page even tries to reach another host.

Runs Debian's Chromium (`/usr/bin/chromium`) through Playwright against a real server process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.live_server import LiveServer, live_server_factory

__all__ = ["live_server_factory"]  # the fixture, re-exported for pytest

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory()


@dataclass
class Offline:
    """A page whose requests to anything but 127.0.0.1 fail."""

    page: Page
    refused: list[str] = field(default_factory=list)  # requests to another host that were made
    blocked: list[str] = field(default_factory=list)  # what the page's CSP kept from being requested


async def _offline_page(browser: Browser) -> Offline:
    offline = Offline(await browser.new_page())

    async def only_this_host(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            offline.refused.append(route.request.url)
            await route.abort("internetdisconnected")

    def note_blocked(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            offline.blocked.append(message.text)

    await offline.page.route("**/*", only_this_host)
    offline.page.on("console", note_blocked)
    return offline


def _summaries(server: LiveServer) -> list[str]:
    document = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    return [op["summary"] for item in document["paths"].values() for op in item.values()]


async def test_swagger_ui_lists_every_operation_offline(browser: Browser, server: LiveServer) -> None:
    summaries = _summaries(server)
    offline = await _offline_page(browser)
    page = offline.page

    await page.goto(f"{server.base_url}/docs")
    await page.locator(".opblock").first.wait_for(timeout=RENDER_TIMEOUT_MS)

    assert await page.locator(".opblock").count() == len(summaries)
    shown = await page.locator(".opblock-summary-description").all_inner_texts()
    assert sorted(shown) == sorted(summaries)
    tags = await page.locator(".opblock-tag").all_inner_texts()
    assert any(tag.startswith("worker protocol") for tag in tags), tags
    assert offline.refused == [] and offline.blocked == []


async def test_swagger_ui_calls_the_api_with_the_key_offline(browser: Browser, server: LiveServer) -> None:
    offline = await _offline_page(browser)
    page = offline.page
    await page.goto(f"{server.base_url}/docs")

    await page.locator("button.authorize").first.click(timeout=RENDER_TIMEOUT_MS)
    await page.locator(".modal-ux input[type=text], .modal-ux input[type=password]").first.fill(
        server.api_key
    )
    await page.locator(".modal-ux button.authorize").click()
    await page.locator(".modal-ux button.btn-done").click()
    operation = page.locator("#operations-nodes-list_namespaces_v0_namespaces_get")
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    await operation.locator("button.execute").click()

    status = operation.locator(".live-responses-table tr.response .response-col_status").first
    await status.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert (await status.inner_text()).strip() == "200"
    body = await operation.locator(".live-responses-table .microlight").first.inner_text()
    assert '"namespaces"' in body
    assert offline.refused == [] and offline.blocked == []


async def test_redoc_shows_the_operations_offline(browser: Browser, server: LiveServer) -> None:
    summaries = _summaries(server)
    offline = await _offline_page(browser)
    page = offline.page

    await page.goto(f"{server.base_url}/redoc")
    heading = page.get_by_role("heading", name="Trigger a graph (start a run)")
    await heading.first.wait_for(timeout=RENDER_TIMEOUT_MS)

    menu = await page.locator("[role=menuitem], .menu-content label").all_inner_texts()
    listed = " ".join(menu)
    assert [s for s in summaries if s not in listed] == []
    assert "Worker protocol" in await page.content()
    assert offline.refused == []
    # ReDoc's attribution logo comes from its CDN: the page's policy keeps it from being fetched.
    assert all("https://cdn.redoc.ly/redoc/logo-mini.svg" in message for message in offline.blocked)
