"""What every `/ui` answer carries (CSP, no framing, no caching of pages) and what no page
contains (inline script or style, event handlers, anything loaded from elsewhere)."""

from __future__ import annotations

import re

import pytest

from state_manager import __version__
from state_manager.dashboard.guard import CSP
from tests.factories import ALPHA, BETA, NO_RETRY, Api, Worker, chain
from tests.state_manager.dashboard.conftest import Ui


async def _pages(api: Api) -> list[str]:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = (await api.trigger("g", {"store": {"k": "v"}}))["run_id"]
    state = await Worker(api, "Alpha").execute()
    ns = "/ui/ns/testns"
    return [
        f"{ns}/runs",
        f"{ns}/runs?status=PENDING",
        *(f"{ns}/runs/{run_id}?tab={tab}" for tab in ("graph", "states", "timeline", "store")),
        f"{ns}/runs/{run_id}/cancel",
        f"{ns}/states/{state['state_id']}",
        f"{ns}/graphs",
        f"{ns}/graphs/g",
        f"{ns}/nodes",
        f"{ns}/runs/no-such-run",  # an error page
    ]


async def test_every_page_has_the_csp_and_refuses_framing_and_caching(api: Api, ui: Ui) -> None:
    for path in await _pages(api):
        response = await ui.client.get(path)
        assert response.status_code in {200, 404}, path
        headers = response.headers
        assert headers["content-security-policy"] == CSP, path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "same-origin"


def test_the_csp_allows_only_this_servers_scripts_and_styles() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CSP


@pytest.mark.parametrize("path", ["/ui/ns/testns/runs", "/ui/login", "/ui/static/dashboard.css", "/nope"])
async def test_redirects_static_assets_and_refusals_carry_the_headers_too(guest: Ui, path: str) -> None:
    response = await guest.client.get(path)
    if path == "/nope":  # outside /ui: the API's answers are not the dashboard's business
        assert "content-security-policy" not in response.headers
        return
    assert (
        response.headers["content-security-policy"] == CSP and response.headers["x-frame-options"] == "DENY"
    )
    refused = await guest.client.post("/ui/login", data={"api_key": "x"})
    assert refused.status_code == 403 and refused.headers["content-security-policy"] == CSP


async def test_no_page_has_inline_code_or_loads_anything_from_elsewhere(api: Api, ui: Ui) -> None:
    pages = [(path, (await ui.client.get(path)).text) for path in await _pages(api)]
    await ui.post("/ui/logout")
    pages.append(("/ui/login", (await ui.client.get("/ui/login")).text))
    for path, page in pages:
        assert re.findall(r"<script\b[^>]*>", page) == [
            f'<script src="/ui/static/dashboard.js?v={__version__}" defer>'
        ]
        assert "</script>" in page and not re.search(r"<script[^>]*>[^<]+</script>", page), path
        assert not re.search(r"\sstyle=", page) and "<style" not in page, path
        assert not re.search(r"\son[a-z]+=", page), path  # no event handler attributes
        assert "javascript:" not in page, path
        for url in re.findall(r'\s(?:src|href)="([^"]+)"', page):
            assert url == "/ui" or url.startswith(("/ui/", "?", "#")), f"{path} links to {url}"


async def test_the_static_assets_are_served_from_the_package(guest: Ui) -> None:
    css = await guest.client.get(f"/ui/static/dashboard.css?v={__version__}")
    script = await guest.client.get("/ui/static/dashboard.js")

    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "data-poll" in script.text and "http" not in re.sub(r"//.*", "", script.text)
    assert "@import" not in css.text and "url(http" not in css.text
