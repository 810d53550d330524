"""The browser suite: Debian's Chromium, driven by Playwright for Python through its
`executable_path` (nothing is downloaded), against a real server on the embedded store and a
real runtime of our SDK in a process of its own.

A missing /usr/bin/chromium FAILS every test of the suite (never a skip): `.ci/run` installs it.
A failing test leaves a screenshot of its page in .cache/browser-failures/.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    async_playwright,
    expect,
)

from tests.support.live_server import REPO_ROOT, LiveServer, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
FAILURES = REPO_ROOT / ".cache" / "browser-failures"
NS = "web"
IDLE_NS = "web-idle"
# Stalled after one second without a poll, so the nodes page can show its warning quickly.
SERVER_ENV = {"QUEUE_STALL_SECONDS": 1, "RECOVERY_INTERVAL_SECONDS": 0.5}

expect.set_options(timeout=20_000)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser suite needs Debian's chromium "
            "(apt-get install -y chromium; .ci/run does this itself)",
            pytrace=False,
        )
    return CHROMIUM


class Rest:
    """The REST API with the key, for setting up and observing what the pages show."""

    def __init__(self, server: LiveServer) -> None:
        self.http = httpx.Client(base_url=server.base_url, headers=server.headers, timeout=15)

    def call(self, method: str, path: str, body: Any = None, ns: str = NS, expect: int = 200) -> Any:
        response = self.http.request(method, f"/v0/namespace/{ns}{path}", json=body)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def trigger(self, graph: str, ns: str = NS, **body: Any) -> str:
        run_id: str = self.call("POST", f"/graph/{graph}/trigger", body, ns=ns)["run_id"]
        return run_id

    def run(self, run_id: str, ns: str = NS) -> Any:
        return self.call("GET", f"/run/{run_id}", ns=ns)

    async def wait_run(self, run_id: str, status: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id))["status"] != status:
            assert time.monotonic() < deadline, f"run {run_id} is {run['status']}, not {status}"
            await asyncio.sleep(0.1)
        return run


def _graph(node: str, identifier: str, inputs: dict[str, str]) -> dict[str, Any]:
    return {"node_name": node, "namespace": NS, "identifier": identifier, "inputs": inputs, "next_nodes": []}


def _set_up_graphs(rest: Rest) -> None:
    deadline = time.monotonic() + 20
    while {n["name"] for n in rest.call("GET", "/nodes/")["nodes"]} < {"Pause", "FailOnce"}:
        assert time.monotonic() < deadline, "the runtime did not register its nodes"
        time.sleep(0.1)
    pause = {
        "secrets": {},
        "nodes": [_graph("Pause", "pause", {"seconds": "${{ store.seconds }}"})],
        "store_config": {"default_values": {"seconds": "0.1"}},
        "retry_policy": {"max_retries": 0},
    }
    flaky = {
        "secrets": {},
        "nodes": [
            {**_graph("Pause", "start", {"seconds": "0.1"}), "next_nodes": ["flaky"]},
            _graph(
                "FailOnce", "flaky", {"marker": "${{ store.marker }}", "text": "${{ start.outputs.slept }}"}
            ),
        ],
        "store_config": {"required_keys": ["marker"]},
        "retry_policy": {"max_retries": 0},
    }
    for name, body in (("pause", pause), ("flaky", flaky)):
        stored = rest.call("PUT", f"/graph/{name}", body, expect=201)
        assert stored["validation_status"] == "VALID", stored


@pytest.fixture(scope="session")
def dashboard_server(chromium: Path) -> Iterator[LiveServer]:
    live = start_server(**SERVER_ENV)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def rest(dashboard_server: LiveServer) -> Iterator[Rest]:
    client = Rest(dashboard_server)
    yield client
    client.http.close()


@pytest.fixture(scope="session")
def runtime(
    dashboard_server: LiveServer, rest: Rest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Our SDK's Runtime serving NS, in its own process, with the graphs of the suite stored."""
    log = (tmp_path_factory.mktemp("runtime") / "runtime.log").open("wb")
    server = dashboard_server
    env = {**os.environ, "EXOSPHERE_STATE_MANAGER_URI": server.base_url, "EXOSPHERE_API_KEY": server.api_key}
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("runtime_app.py")), NS],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _set_up_graphs(rest)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
async def chromium_browser(chromium: Path) -> AsyncIterator[Browser]:
    """Per test (Playwright's driver lives in the test's event loop)."""
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Watch:
    """What a page did that a user would not see: console errors (a CSP violation is one) and
    requests to anywhere but the server. A page the server answers with a 4xx on purpose (a
    refused form shown again with the reason) is what the user sees, not an error: Chromium's
    console line about its status is left out."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.logged: list[tuple[str, str]] = []  # (text, url) of each console error
        self.refused_pages: set[str] = set()
        self.foreign: list[str] = []

    @property
    def console_errors(self) -> list[str]:
        return [
            text
            for text, url in self.logged
            if not (url in self.refused_pages and text.startswith("Failed to load resource"))
        ]

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.logged.append((message.text, message.location.get("url", "")))

    def on_response(self, response: Response) -> None:
        if response.request.resource_type == "document" and 400 <= response.status < 500:
            self.refused_pages.add(response.url)

    def on_request(self, request: Request) -> None:
        if not request.url.startswith(self.base_url) and not request.url.startswith("data:"):
            self.foreign.append(request.url)


@pytest.fixture
async def page(
    chromium_browser: Browser, dashboard_server: LiveServer, runtime: None, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    context = await chromium_browser.new_context(
        base_url=dashboard_server.base_url, viewport={"width": 1360, "height": 900}
    )
    watch = Watch(dashboard_server.base_url)
    tab = await context.new_page()
    tab.on("console", watch.on_console)
    tab.on("response", watch.on_response)
    tab.on("request", watch.on_request)
    try:
        yield tab
        assert not watch.foreign, f"the page loaded something from elsewhere: {watch.foreign}"
        assert not watch.console_errors, f"console errors (CSP violations?): {watch.console_errors}"
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            FAILURES.mkdir(parents=True, exist_ok=True)
            shot = FAILURES / f"{request.node.name}.png"
            await tab.screenshot(path=str(shot), full_page=True)
            sys.stderr.write(f"\nscreenshot of the failing page: {shot}\n")
        await context.close()


async def log_in(page: Page, server: LiveServer, path: str = "/ui") -> None:
    """Open `path`, meet the login page, log in with the server's key, land on `path`."""
    await page.goto(path)
    await expect(page).to_have_url(re.compile(r"/ui/login"))
    await page.fill("input[name=api_key]", server.api_key)
    await page.click("button[type=submit]")
    await expect(page.locator("input[name=api_key]")).to_have_count(0)
