"""The runtime's default output: its log lines on stderr, unless the application set up logging.

`ensure_default_logging()` runs when a runtime starts serving. If neither the root logger nor the
`exospherehost` logger has a handler (a plain script that never configured logging), it attaches
ONE handler writing to stderr to the `exospherehost` logger (never to the root logger) and sets
that logger's level: INFO, or `EXOSPHERE_LOG_LEVEL` (a level name such as `DEBUG` or `WARNING`,
or a number). It does this once per process. An application that configured logging keeps full
control: nothing is attached, no level is changed, and the variable is not read. If it configures
logging later, the handler attached here falls silent, so that nothing is printed twice.
`EXOSPHERE_DISABLE_DEFAULT_LOGGING` (any value but empty, `0` or `false`) turns all this off, as
in the upstream SDK.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

__all__ = ["DISABLE_ENV", "LEVEL_ENV", "LOG_FORMAT", "ensure_default_logging"]

LEVEL_ENV = "EXOSPHERE_LOG_LEVEL"
DISABLE_ENV = "EXOSPHERE_DISABLE_DEFAULT_LOGGING"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

PACKAGE_LOGGER = "exospherehost"


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time (as `logging.lastResort` does), and stays
    quiet once the application has given the root logger handlers of its own."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().handlers:
            return False
        return bool(super().filter(record))


def ensure_default_logging() -> None:
    """Attach the stderr handler if nothing is configured (see the module docstring)."""
    if os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return
    package = logging.getLogger(PACKAGE_LOGGER)
    if logging.getLogger().handlers or package.handlers:
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    package.addHandler(handler)
    level, problem = _level_from_environment()
    package.setLevel(level)
    if problem:
        package.warning("%s", problem)


def _level_from_environment() -> tuple[int, str | None]:
    raw = os.environ.get(LEVEL_ENV, "").strip()
    if not raw:
        return logging.INFO, None
    if raw.isdigit():
        return int(raw), None
    level = logging.getLevelName(raw.upper())
    if isinstance(level, int):
        return level, None
    return logging.INFO, f"{LEVEL_ENV}={raw!r} is not a logging level (e.g. DEBUG, INFO, WARNING); using INFO"
