"""The whole error of a failed attempt: the exception's type, its traceback and the log lines
the node wrote while it ran, bounded and with the state's secret values redacted.

The log record factory keeps the lines of the attempt running in the current context (a context
variable set around the node's run; the runtime's worker threads run nodes in a copy of that
context), so that the log lines of concurrent attempts never mix. No handler is added anywhere:
what the application's logging shows, and how it is configured, are unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["MAX_LOG_LINES", "capture_logs", "error_details"]

MAX_LOG_LINES = 200
MAX_LINE_CHARS = 2000
MAX_LOG_CHARS = 60_000
MAX_TRACEBACK_CHARS = 30_000
_MIN_SECRET_CHARS = 4  # shorter values would redact ordinary text
REDACTED = "[secret]"

_lines: contextvars.ContextVar[deque[str] | None] = contextvars.ContextVar(
    "exosphere_attempt_log", default=None
)
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def _keep(record: logging.LogRecord) -> None:
    lines = _lines.get()
    if lines is None:
        return
    try:
        text = _FORMAT.format(record)
    except Exception:  # a bad log call of the node's must not fail it
        text = str(record.msg)
    for line in text.splitlines() or [""]:
        lines.append(line[:MAX_LINE_CHARS])


def _install() -> None:
    """Wrap the log record factory (once): every record created in an attempt's context is kept."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "keeps_attempt_logs", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _keep(record)
        return record

    factory.keeps_attempt_logs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


@contextlib.contextmanager
def capture_logs() -> Iterator[deque[str]]:
    """Keep the log lines written in this context (the last MAX_LOG_LINES) while the block runs."""
    _install()
    lines: deque[str] = deque(maxlen=MAX_LOG_LINES)
    token = _lines.set(lines)
    try:
        yield lines
    finally:
        _lines.reset(token)


def error_details(exc: BaseException, lines: Iterable[str], secrets: Iterable[Any]) -> dict[str, Any]:
    """What an errored report carries besides its message: `type`, `traceback` (its last part
    if long) and `logs` (the last lines, at most MAX_LOG_CHARS), every secret value redacted."""
    values = sorted({str(v) for v in secrets if v is not None and len(str(v)) >= _MIN_SECRET_CHARS}, key=len)
    kind = type(exc)
    formatted = "".join(traceback.format_exception(exc))
    logs: list[str] = []
    total = 0
    for line in reversed([redact(line, values) for line in lines]):
        total += len(line)
        if total > MAX_LOG_CHARS:
            break
        logs.append(line)
    return {
        "type": f"{kind.__module__}.{kind.__qualname__}"[:300],
        "traceback": redact(formatted, values)[-MAX_TRACEBACK_CHARS:],
        "logs": logs[::-1],
    }


def redact(text: str, secret_values: list[str]) -> str:
    """`text` with each of `secret_values` replaced (longest first)."""
    for value in reversed(secret_values):
        text = text.replace(value, REDACTED)
    return text
