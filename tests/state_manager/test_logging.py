"""A log line written from an `except` block carries the traceback, so a failure can be diagnosed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from state_manager.observability import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging is process-wide (and caches loggers): give later tests the defaults back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def _recover_once() -> None:
    raise RuntimeError("the database went away")


def test_a_logged_exception_carries_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    log = structlog.get_logger("tests.logging")
    try:
        _recover_once()
    except RuntimeError:
        log.exception("background_pass_failed", loop="recovery")

    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "background_pass_failed"
    assert line["level"] == "error"
    assert line["loop"] == "recovery"
    assert "exc_info" not in line
    traceback = line["exception"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert "in _recover_once" in traceback
    assert traceback.rstrip().endswith("RuntimeError: the database went away")
