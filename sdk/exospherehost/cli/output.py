"""Writing results: JSON, rich tables on a terminal, plain aligned text otherwise.

Results go to stdout, everything else (progress, notes, warnings) to stderr. Rich tables, colour
and live displays are used only when the stream is a terminal and `NO_COLOR` is not set; plain
aligned text otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .session import Config

__all__ = ["Output", "compact_json", "counts_text", "duration_text", "iso_text", "time_text"]

STATUS_STYLES = {
    "SUCCESS": "green",
    "VALID": "green",
    "EXECUTED": "green",
    "FAILED": "bold red",
    "INVALID": "bold red",
    "ERRORED": "red",
    "TIMEDOUT": "red",
    "NEXT_CREATED_ERROR": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "QUEUED": "cyan",
    "PRUNED": "dim",
    "NOT_STARTED": "dim",
    "RETRY_CREATED": "magenta",
}


def no_color() -> bool:
    """`NO_COLOR` set to anything non-empty (https://no-color.org)."""
    return bool(os.environ.get("NO_COLOR"))


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """One command's writer, in the format the options ask for."""

    def __init__(self, cfg: Config) -> None:
        self.json = cfg.json

    # ------------------------------------------------------------------ stdout

    def result(self, document: Any) -> None:
        """The command's one JSON document (only in json mode)."""
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))

    def line(self, text: str = "") -> None:
        click.echo(text)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        status_columns: Sequence[int] = (),
    ) -> None:
        """Rows under headers; the `status_columns` coloured by their value on a terminal."""
        console = self._console(sys.stdout)
        if console is None:
            _plain_table(headers, rows)
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            cells = [
                Text(cell, style=STATUS_STYLES.get(cell, "")) if i in status_columns else Text(cell)
                for i, cell in enumerate(row)
            ]
            table.add_row(*cells)
        console.print(table)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """`label  value` lines, labels aligned; values that name a status are coloured."""
        console = self._console(sys.stdout)
        width = max((len(label) for label, _ in pairs), default=0)
        for label, value in pairs:
            if console is None:
                click.echo(f"{label.ljust(width)}  {value}".rstrip())
            else:
                text = Text()
                text.append(f"{label.ljust(width)}  ", style="bold")
                text.append(value, style=STATUS_STYLES.get(value, ""))
                console.print(text, soft_wrap=True)

    # ------------------------------------------------------------------ stderr

    def note(self, message: str) -> None:
        click.echo(message, err=True)

    def stderr_console(self) -> Console | None:
        """A console for live progress on stderr, or None when it must stay plain."""
        return self._console(sys.stderr)

    @staticmethod
    def _console(stream: TextIO) -> Console | None:
        """Rich output only on a terminal and without `NO_COLOR`; else plain text."""
        if not is_terminal(stream) or no_color():
            return None
        return Console(file=stream, highlight=False, emoji=False)


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    cells = [[h.upper() for h in headers], *[[c.replace("\n", " ") for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def time_text(ms: int | None) -> str:
    """Epoch milliseconds as local time, `2025-01-31 14:05:09`; `-` for none."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso_text(value: Any) -> str:
    """An ISO 8601 time from the server as local time, like `time_text`; `-` for none."""
    if not value:
        return "-"
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration_text(ms: int | None) -> str:
    """`850ms`, `12.3s`, `4m05s`, `2h07m`; `-` for none."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def counts_text(counts: Mapping[str, Any]) -> str:
    """`SUCCESS 3, ERRORED 1` (non-zero only); `-` for none."""
    parts = [f"{status} {n}" for status, n in sorted(counts.items()) if n]
    return ", ".join(parts) or "-"


def compact_json(value: Any) -> str:
    """A value on one line, `{"text": "ABC"}`; `-` for none or an empty one."""
    if not value:
        return "-"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
