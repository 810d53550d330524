"""A session cookie that is not a valid session, whatever its bytes, is no session: every `/ui`
page answers as it does without a cookie, never 500. Any site on the same host can set a cookie
of that name (cookies are not isolated by port), so its content is attacker-chosen.

The client here does not re-raise the app's exceptions: a crash shows as the 500 a browser gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from state_manager.dashboard import session
from tests.factories import API_KEY, now_ms
from tests.state_manager.dashboard.conftest import BASE, SAME_ORIGIN

NAME = session.COOKIE_NAME.encode()


def _good() -> str:
    return session.issue(session.session_key(API_KEY), now_ms())


# Raw `Cookie` header values, sent as bytes: exactly what a browser (or anyone) may send.
BAD_COOKIES: dict[str, bytes] = {
    "non-ascii": NAME + "=é".encode(),
    "non-ascii-signature": NAME + "=a.é".encode(),
    "non-ascii-both": NAME + "=é.é".encode(),
    "latin-1-byte": NAME + b"=a.\xe9",
    "not-utf-8": NAME + b"=\xff\xfe.\xc3\x28",
    "quoted-octal-escapes": NAME + b'="a.\\351"',  # unquoted by the cookie parser into "a.é"
    "control-characters": NAME + b"=a.\x01\x7f",
    "invalid-base64": NAME + b"=!!!.???",
    "empty-parts": NAME + b"=.",
    "many-dots": NAME + b"=a.b.c.d",
    "percent-encoded": NAME + b"=%C3%A9.%00%FF",
    "empty": NAME + b"=",
    "other-key": NAME + b"=" + session.issue(session.session_key("another-key"), 0).encode(),
    "huge": NAME + b"=" + b"A" * 200_000 + b"." + b"B" * 200_000,
}


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app.state.asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


async def _get(browser: httpx.AsyncClient, path: str, cookie: bytes) -> httpx.Response:
    return await browser.get(path, headers={"cookie": cookie})


@pytest.mark.parametrize("cookie", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
async def test_the_login_page_shows_the_form_whatever_the_cookie(
    browser: httpx.AsyncClient, cookie: bytes
) -> None:
    response = await _get(browser, "/ui/login", cookie)

    assert response.status_code == 200, response.text[:500]
    assert 'name="api_key"' in response.text


@pytest.mark.parametrize("cookie", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
@pytest.mark.parametrize("path", ["/ui", "/ui/ns/testns/runs", "/ui/ns/testns/nodes"])
async def test_every_page_leads_to_login_whatever_the_cookie(
    browser: httpx.AsyncClient, cookie: bytes, path: str
) -> None:
    response = await _get(browser, path, cookie)

    assert response.status_code == 303, response.text[:500]
    assert response.headers["location"].startswith("/ui/login?next=")


@pytest.mark.parametrize("cookie", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
async def test_a_post_is_refused_as_without_a_session_whatever_the_cookie(
    browser: httpx.AsyncClient, cookie: bytes
) -> None:
    response = await browser.post("/ui/logout", headers={**SAME_ORIGIN, "cookie": cookie})

    assert response.status_code == 403 and "log in again" in response.text


async def test_a_bad_cookie_next_to_a_good_one_of_another_name_changes_nothing(
    browser: httpx.AsyncClient,
) -> None:
    """The rejection is the value's, not the whole header's: the same request with the good
    session value is let in (so these tests cannot pass by refusing everything)."""
    junk = b"other=\xe9\xff; "
    bad = await _get(browser, "/ui/ns/testns/runs", junk + NAME + "=a.é".encode())
    good = await _get(browser, "/ui/ns/testns/runs", junk + NAME + b"=" + _good().encode())

    assert bad.status_code == 303 and good.status_code == 200
