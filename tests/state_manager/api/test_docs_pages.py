"""`/docs`, `/redoc` and the OAuth2 redirect page load everything from this server: no CDN, no
font service, no validator badge. The assets are the vendored files, served without a key.
(`tests/browser/test_docs_offline.py` renders the pages with the network cut off.)"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from state_manager.api.docs import STATIC_DIR

PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]
# src, href, spec-url and data-...-url attributes: everything a page loads or hands a script.
URL_ATTRIBUTE = re.compile(r'(?:src|href|spec-url|data-[a-z0-9-]*url)="([^"]+)"')


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app.state.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def _urls(html: str) -> list[str]:
    return URL_ATTRIBUTE.findall(html)


@pytest.mark.parametrize("page", PAGES)
async def test_a_reference_page_refers_only_to_this_server(anonymous: httpx.AsyncClient, page: str) -> None:
    response = await anonymous.get(page)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = _urls(response.text)
    assert urls, "the page loads nothing?"
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in response.text and "https://" not in response.text
    assert "<script>" not in response.text, "an inline script, which the page's policy refuses"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy


@pytest.mark.parametrize("page", PAGES)
async def test_what_a_reference_page_loads_is_served_without_a_key(
    anonymous: httpx.AsyncClient, page: str
) -> None:
    html = (await anonymous.get(page)).text

    for url in _urls(html):
        if url == "/docs/oauth2-redirect":
            continue  # a page, not an asset: tested as one
        response = await anonymous.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 100, url


async def test_swagger_ui_is_given_the_openapi_document_and_no_validator(
    anonymous: httpx.AsyncClient,
) -> None:
    html = (await anonymous.get("/docs")).text
    script = (await anonymous.get("/docs/assets/swagger-init.js")).text

    assert 'data-openapi-url="/openapi.json"' in html
    assert 'data-oauth2-redirect-url="/docs/oauth2-redirect"' in html
    assert "validatorUrl: null" in script


async def test_the_assets_are_the_vendored_files(anonymous: httpx.AsyncClient) -> None:
    for name, content_type in [
        ("swagger-ui/swagger-ui-bundle.js", "javascript"),
        ("swagger-ui/swagger-ui.css", "text/css"),
        ("redoc/redoc.standalone.js", "javascript"),
    ]:
        response = await anonymous.get(f"/docs/assets/{name}")
        assert response.status_code == 200
        assert content_type in response.headers["content-type"]
        assert response.content == (STATIC_DIR / name).read_bytes()


async def test_nothing_outside_the_assets_directory_is_served(anonymous: httpx.AsyncClient) -> None:
    for attempt in ["/docs/assets/../docs.py", "/docs/assets/%2e%2e/docs.py", "/docs/assets/nope.js"]:
        response = await anonymous.get(attempt)
        assert response.status_code == 404, attempt


def test_the_vendored_files_are_the_ones_their_readme_names_with_their_licences() -> None:
    readme = (STATIC_DIR / "README.md").read_text()
    listed = dict(re.findall(r"^ {4}(\S+)\s+([0-9a-f]{64})$", readme, re.MULTILINE))
    vendored = [STATIC_DIR / "swagger-ui", STATIC_DIR / "redoc"]
    shipped = {str(p.relative_to(STATIC_DIR)) for d in vendored for p in d.rglob("*") if p.is_file()}

    assert set(listed) == shipped
    for name, digest in listed.items():
        assert hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest() == digest, name
    assert {"swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"} <= shipped
    assert "swagger-ui-dist@5.35.0" in readme and "redoc@2.5.4" in readme


def test_every_asset_is_package_data_so_an_installed_server_has_it() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["state_manager.api"]
    package = STATIC_DIR.parent
    included = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}

    assert {path for path in STATIC_DIR.rglob("*") if path.is_file()} <= included


async def test_behind_a_path_prefix_the_pages_use_it(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app.state.asgi, root_path="/exosphere")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as prefixed:
        html = (await prefixed.get("/exosphere/docs")).text

    assert "/exosphere/docs/assets/swagger-ui/swagger-ui-bundle.js" in html
    assert 'data-openapi-url="/exosphere/openapi.json"' in html
