"""`python -m state_manager` refuses bad settings with a clear message, naming variables only."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the server command in an empty folder (so no `.env` is read); it must exit at once."""
    keys = ("STATE_MANAGER_SECRET", "SECRETS_ENCRYPTION_KEY")
    base = {k: v for k, v in os.environ.items() if k not in keys}
    return subprocess.run(
        [sys.executable, "-m", "state_manager", "--port", "0"],
        env={**base, **env},
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_keys_are_named() -> None:
    result = _start({})
    assert result.returncode == 2
    assert "STATE_MANAGER_SECRET: Field required" in result.stderr
    assert "SECRETS_ENCRYPTION_KEY: Field required" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STATE_MANAGER_SECRET": "a-real-key", "SECRETS_ENCRYPTION_KEY": "tooshort"}, "32 bytes"),
        (
            {
                "STATE_MANAGER_SECRET": "exosphere@123",
                "SECRETS_ENCRYPTION_KEY": "YTzpUlBGLSwm-3yKJRJTZnb0_aQuQQHyz64s8qAERVU=",
            },
            "published example value",
        ),
    ],
)
def test_bad_or_published_keys_are_refused_without_echoing_them(env: dict[str, str], message: str) -> None:
    result = _start(env)
    assert result.returncode == 2
    assert message in result.stderr
    for value in env.values():
        assert value not in result.stderr
