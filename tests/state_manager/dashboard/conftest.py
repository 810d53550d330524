"""The dashboard over the in-process tier: the app of the root conftest (mock store, no
background loops), a browser-like client without the API key (cookies kept, redirects not
followed), and a logged-in one. Test data is made through the REST API (`api`, `Worker`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import API_KEY

BASE = "http://test"
SAME_ORIGIN = {"origin": BASE}


class Ui:
    """A browser: cookies, the Origin header of this server's pages on POSTs."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, path: str, expect: int = 200) -> httpx.Response:
        response = await self.client.get(path)
        assert response.status_code == expect, f"GET {path}: {response.status_code} {response.text[:1500]}"
        return response

    async def page(self, path: str) -> str:
        return (await self.get(path)).text

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            path, data=data or {}, headers=SAME_ORIGIN if headers is None else headers
        )

    async def login(self, key: str = API_KEY) -> httpx.Response:
        return await self.post("/ui/login", {"api_key": key})


@pytest.fixture
async def guest(app: FastAPI) -> AsyncIterator[Ui]:
    """Not logged in."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app.state.asgi), base_url=BASE) as http:
        yield Ui(http)


@pytest.fixture
async def ui(guest: Ui) -> Ui:
    """Logged in with the server's key."""
    response = await guest.login()
    assert response.status_code == 303, response.text
    return guest


def rows(html: str, attribute: str, tag: str = "tr") -> list[str]:
    """The values of `attribute` on the `tag` elements of the page, in order (e.g. the runs
    listed: `rows(page, "data-run-id")`)."""
    return re.findall(rf'<{tag}\b[^>]*\b{attribute}="([^"]*)"', html)


def text_of(html: str) -> str:
    """The page's text without its tags (for asserting what a reader sees)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def svg_of(html: str) -> str:
    match = re.search(r'<svg class="dag".*?</svg>', html, re.S)
    assert match, "no DAG on the page"
    return match.group(0)


def run_url(run_id: str, ns: str = "testns", suffix: str = "") -> str:
    return f"/ui/ns/{ns}/runs/{run_id}{suffix}"


Json = dict[str, Any]
