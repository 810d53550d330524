"""The session cookie and the origin check, as pure functions."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from state_manager.dashboard import session

KEY = session.session_key("server-key")


def test_a_session_is_valid_from_its_issue_until_its_expiry() -> None:
    value = session.issue(KEY, now_ms=1_000, lifetime_ms=500)

    assert session.is_valid(KEY, value, 1_000) and session.is_valid(KEY, value, 1_499)
    assert not session.is_valid(KEY, value, 1_500) and not session.is_valid(KEY, value, 999)


def test_the_signing_key_is_derived_from_the_api_key_and_is_not_it() -> None:
    assert session.session_key("server-key") == KEY != session.session_key("other-key")
    assert b"server-key" not in KEY
    value = session.issue(KEY, 1_000)
    assert not session.is_valid(session.session_key("other-key"), value, 1_000)
    assert "server-key" not in value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "x",
        "a.b.c",
        "e30.AAAA",
        "!!!.???",
        "a.é",
        "é.é",
        "a." + "é" * 43,
        "a.\x00\x01",
        "a.\udcff",  # a lone surrogate: what undecodable bytes become with surrogateescape
        "%C3%A9.%00",
        "A" * 100_000 + "." + "B" * 43,
    ],
)
def test_garbage_is_no_session(value: str | None) -> None:
    assert not session.is_valid(KEY, value, 1_000)


def _signed(payload: bytes) -> str:
    """`payload` as a session value with a correct signature (as only the key's holder makes)."""
    text = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    signature = hmac.new(KEY, text.encode(), hashlib.sha256).digest()
    return f"{text}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b"not json",
        b"\xff\xfe",
        b"{}",
        b'{"iat": 500}',
        b'{"iat": "500", "exp": "2000"}',
        b'{"iat": 500.0, "exp": 2000.0}',
        b'{"iat": -1e400, "exp": 1e400}',  # infinities: int() of them raises OverflowError
        b'{"iat": false, "exp": 2000}',
        b"[" * 600 + b"]" * 600,
        b'{"iat": 500, "exp": 2000}',  # no kid: signed before sessions named their key
        b'{"iat": 500, "exp": 2000, "kid": null}',
        b'{"iat": 500, "exp": 2000, "kid": 7}',
        b'{"iat": 500, "exp": 2000, "kid": "ROOT"}',
        b'{"iat": 500, "exp": 2000, "kid": "exo_0123456789abcdef_x"}',  # never a key itself
    ],
)
def test_a_signed_payload_without_two_integer_times_and_a_kid_is_no_session(payload: bytes) -> None:
    assert not session.is_valid(KEY, _signed(payload), 1_000)


def test_a_signed_payload_with_two_integer_times_and_a_kid_is_a_session_of_that_kid() -> None:
    """The counterpart of the test above: `_signed` makes values `is_valid` accepts."""
    assert session.holder(KEY, _signed(b'{"iat": 500, "exp": 2000, "kid": "root"}'), 1_000) == "root"
    scoped = _signed(b'{"iat": 500, "exp": 2000, "kid": "0123456789abcdef"}')
    assert session.holder(KEY, scoped, 1_000) == "0123456789abcdef"


def test_a_session_names_its_key_by_id_root_by_default() -> None:
    assert session.holder(KEY, session.issue(KEY, 1_000), 1_000) == session.ROOT_KID == "root"
    assert session.holder(KEY, session.issue(KEY, 1_000, kid="0123456789abcdef"), 1_000) == "0123456789abcdef"


def test_the_key_comparison_accepts_only_the_exact_key() -> None:
    assert session.key_matches("abc", "abc")
    assert (
        not session.key_matches("abc", "abcd")
        and not session.key_matches("abc", "")
        and not session.key_matches("abc", "ABC")
    )


@pytest.mark.parametrize(
    ("origin", "referer", "ok"),
    [
        ("http://h:8000", None, True),
        ("https://h:8000", None, True),  # TLS ended at a proxy: the host is what counts
        (None, "http://h:8000/ui/ns/x/runs", True),
        ("null", "http://h:8000/ui/", True),
        ("http://evil:8000", "http://h:8000/ui/", False),  # the Origin wins over the Referer
        ("http://h:8001", None, False),
        (None, None, False),
        ("null", None, False),
        ("file://h:8000", None, False),
    ],
)
def test_a_post_must_come_from_this_host(origin: str | None, referer: str | None, ok: bool) -> None:
    assert session.same_origin("h:8000", origin, referer) is ok


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/ui/ns/a/runs?x=1", True),
        ("/ui/", True),
        ("/v0/namespace/a/graphs", False),
        ("//evil.example/ui/", False),
        ("https://evil.example/ui/", False),
        ("/ui\\..\\evil", False),
        ("", False),
    ],
)
def test_only_dashboard_paths_are_followed_after_login(target: str, kept: bool) -> None:
    assert session.safe_next(target) == (target if kept else None)
