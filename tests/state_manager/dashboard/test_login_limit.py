"""Wrong API keys are limited per client address: past the allowance a login answers 429 with
Retry-After, the key unchecked, until the window (from the first failure) has passed. First the
limiter alone on a fake clock, then the login page over the in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from state_manager.dashboard.login_limit import LoginLimiter, client_key
from tests.factories import API_KEY
from tests.state_manager.dashboard.conftest import BASE, Ui

MAX_FAILURES = 3
WINDOW = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _limiter(clock: FakeClock, **kw: Any) -> LoginLimiter:
    return LoginLimiter(MAX_FAILURES, WINDOW, clock=clock, **kw)


def _fail(limiter: LoginLimiter, address: str, times: int) -> None:
    for _ in range(times):
        limiter.failed(address)


# --- the limiter alone --------------------------------------------------------------------------


def test_an_address_is_stopped_after_its_allowance_until_the_window_from_its_first_failure_ends() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    _fail(limiter, "10.0.0.1", MAX_FAILURES - 1)
    assert limiter.retry_after("10.0.0.1") is None

    clock.now += 10
    limiter.failed("10.0.0.1")

    assert limiter.retry_after("10.0.0.1") == 50  # the window started at the first failure
    clock.now += 49.5
    assert limiter.retry_after("10.0.0.1") == 1  # whole seconds, rounded up
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1") is None


def test_after_the_window_the_count_starts_over() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    _fail(limiter, "10.0.0.1", MAX_FAILURES)
    clock.now += WINDOW

    _fail(limiter, "10.0.0.1", MAX_FAILURES - 1)
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == WINDOW


def test_only_the_failure_that_uses_up_the_allowance_says_so() -> None:
    limiter = _limiter(FakeClock())

    said = [limiter.failed("10.0.0.1") for _ in range(MAX_FAILURES + 2)]

    assert said == [False] * (MAX_FAILURES - 1) + [True, False, False]


def test_other_addresses_are_counted_apart() -> None:
    limiter = _limiter(FakeClock())
    _fail(limiter, "10.0.0.1", MAX_FAILURES)

    assert limiter.retry_after("10.0.0.1") is not None
    assert limiter.retry_after("10.0.0.2") is None


def test_a_success_forgets_the_failures_of_its_address() -> None:
    limiter = _limiter(FakeClock())
    _fail(limiter, "10.0.0.1", MAX_FAILURES - 1)

    limiter.succeeded("10.0.0.1")
    _fail(limiter, "10.0.0.1", MAX_FAILURES - 1)

    assert limiter.retry_after("10.0.0.1") is None


def test_memory_stays_bounded_under_failures_from_many_addresses() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, max_addresses=100)

    for n in range(5_000):
        limiter.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")

    assert len(limiter) == 100


def test_the_oldest_windows_are_dropped_first_so_a_blocked_address_stays_blocked() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, max_addresses=3)
    _fail(limiter, "10.0.0.1", 1)
    _fail(limiter, "10.0.0.2", 1)
    clock.now += WINDOW / 2
    _fail(limiter, "10.0.0.3", MAX_FAILURES)  # blocked, the newest window
    clock.now += WINDOW / 2  # the first two windows end, the third goes on

    _fail(limiter, "10.0.0.4", 1)
    _fail(limiter, "10.0.0.5", 1)

    assert len(limiter) == 3 and limiter.retry_after("10.0.0.3") is not None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
    ],
)
def test_ipv6_addresses_are_counted_by_their_64_network(address: str, key: str) -> None:
    assert client_key(address) == key


def test_one_ipv6_64_network_shares_one_allowance() -> None:
    limiter = _limiter(FakeClock())
    for n in range(MAX_FAILURES):
        limiter.failed(f"2001:db8::{n + 1:x}")

    assert limiter.retry_after("2001:db8::ffff") is not None
    assert limiter.retry_after("2001:db8:0:1::1") is None


# --- the login page -----------------------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"dashboard_login_max_failures": MAX_FAILURES, "dashboard_login_window_seconds": WINDOW}


@pytest.fixture
def clock(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The app's own limiter (built from the settings above), on a clock the test moves."""
    fake = FakeClock()
    monkeypatch.setattr(app.state.login_limiter, "clock", fake)
    return fake


@pytest.fixture
async def neighbour(app: FastAPI) -> AsyncIterator[Ui]:
    """A browser at another address than `guest` (127.0.0.1)."""
    transport = httpx.ASGITransport(app=app.state.asgi, client=("127.0.0.2", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield Ui(http)


async def _fail_logins(ui: Ui, times: int) -> None:
    for _ in range(times):
        assert (await ui.login("wrong-key")).status_code == 401


def test_the_app_limits_with_the_configured_allowance(app: FastAPI) -> None:
    limiter = app.state.login_limiter
    assert (limiter.max_failures, limiter.window_seconds) == (MAX_FAILURES, WINDOW)


async def test_the_attempt_after_the_allowance_is_429_with_retry_after_even_with_the_right_key(
    guest: Ui, clock: FakeClock
) -> None:
    await _fail_logins(guest, MAX_FAILURES)

    wrong = await guest.login("wrong-key")
    right = await guest.login(API_KEY)

    for response in (wrong, right):
        assert response.status_code == 429 and response.headers["retry-after"] == "60"
        assert "Too many wrong API keys" in response.text and "Wait 60 seconds" in response.text
        assert "set-cookie" not in response.headers
    await guest.get("/ui/ns/testns/runs", expect=303)  # still logged out


async def test_the_right_key_logs_in_while_under_the_allowance_and_clears_the_count(
    guest: Ui, clock: FakeClock
) -> None:
    await _fail_logins(guest, MAX_FAILURES - 1)

    response = await guest.login(API_KEY)

    assert response.status_code == 303 and "set-cookie" in response.headers
    await guest.post("/ui/logout")
    await _fail_logins(guest, MAX_FAILURES - 1)  # the earlier failures no longer count
    assert (await guest.login(API_KEY)).status_code == 303


async def test_another_address_is_not_affected(guest: Ui, neighbour: Ui, clock: FakeClock) -> None:
    await _fail_logins(guest, MAX_FAILURES)
    assert (await guest.login(API_KEY)).status_code == 429

    assert (await neighbour.login("wrong-key")).status_code == 401
    assert (await neighbour.login(API_KEY)).status_code == 303


async def test_logins_work_again_once_the_window_has_passed(guest: Ui, clock: FakeClock) -> None:
    await _fail_logins(guest, MAX_FAILURES)
    clock.now += WINDOW - 1
    still = await guest.login(API_KEY)
    assert still.status_code == 429 and still.headers["retry-after"] == "1"

    clock.now += 1

    assert (await guest.login("wrong-key")).status_code == 401
    assert (await guest.login(API_KEY)).status_code == 303


async def test_the_address_that_used_up_its_allowance_is_logged_once(guest: Ui, clock: FakeClock) -> None:
    with structlog.testing.capture_logs() as logs:
        await _fail_logins(guest, MAX_FAILURES)
        await guest.login("wrong-key")

    limited = [line for line in logs if line["event"] == "dashboard_login_limited"]
    assert len(limited) == 1
    assert limited[0]["client"] == "127.0.0.1" and limited[0]["log_level"] == "warning"
