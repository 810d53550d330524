"""Rendering: the Jinja2 environment (autoescape on for everything), its filters, and the
helper that turns a template into a response."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from state_manager import __version__
from state_manager.dashboard import access

HERE = Path(__file__).parent
POLL_MS = 2000


def ms_time(value: int | None) -> str:
    """Epoch ms as `YYYY-MM-DD HH:MM:SS` (UTC); an em dash for none."""
    if value is None:
        return "—"
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ms_iso(value: int | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="milliseconds")


def duration(ms: int | float | None) -> str:
    """A readable duration: `850 ms`, `4.2 s`, `3 min 04 s`, `2 h 05 min`, `3 d 4 h`."""
    if ms is None:
        return "—"
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def clock_at(ms: int, now: int) -> str:
    """`HH:MM:SS UTC` of epoch ms; with the date when that is not today (UTC)."""
    moment, today = (datetime.fromtimestamp(t / 1000, UTC) for t in (ms, now))
    return moment.strftime("%H:%M:%S UTC" if moment.date() == today.date() else "%Y-%m-%d %H:%M:%S UTC")


def countdown(ms: int) -> str:
    """A wait to come, to the second (rounded up): `59 s`, `4 min 05 s`, `2 h 00 min`."""
    seconds = max(-(-ms // 1000), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def ui_url(ns: str, *parts: str) -> str:
    """A dashboard path in namespace `ns`: every part URL-quoted (ids and names are user text)."""
    return "/".join(["/ui/ns", quote(ns, safe=""), *(quote(str(p), safe="") for p in parts)])


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def short_id(value: str) -> str:
    """An id short enough for a table: its first 4 and last 6 characters. Never the first ones
    alone: an ObjectId starts with its creation second (and the process that made it), so two
    states of one run share their first 10 characters, while the last ones (a counter) differ.
    Show it with the full id on hover (`title`) and in the link."""
    return value if len(value) <= 12 else f"{value[:4]}…{value[-6:]}"


# How pages name a state status (wire names stay in URLs, filter values and data attributes):
# QUEUED means a runtime claimed the state; RETRY_CREATED that a new attempt replaced it.
STATUS_LABELS = {"QUEUED": "claimed", "RETRY_CREATED": "retried", "TIMEDOUT": "timed out"}


def status_label(status: str) -> str:
    """`claimed` for QUEUED, `retried` for RETRY_CREATED, else the name in lower-case words."""
    return STATUS_LABELS.get(status, status.lower().replace("_", " "))


def plural(count: int, noun: str) -> str:
    """`1 new attempt`, `2 new attempts`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: node output is user text
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ms_time=ms_time,
        ms_iso=ms_iso,
        duration=duration,
        pretty_json=pretty_json,
        short_id=short_id,
        status_label=status_label,
        plural=plural,
        clock_at=clock_at,
        countdown=countdown,
    )
    # `may(me, "operate")`: whether the logged-in key's role grants an action (which buttons show).
    env.globals.update(version=__version__, poll_ms=POLL_MS, url=ui_url, may=access.allows)
    return env


ENV = _environment()


def query(request: Request, **changes: Any) -> str:
    """The current URL's query string with `changes` applied (None or "" removes a key)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    return ("?" + urlencode(params)) if params else "?"


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200, live: bool = False
) -> HTMLResponse:
    """The page `name`. `live` says whether what it shows may still change: the page then carries
    the polling marker (`data-poll` on `<main>`), and the script re-fetches it every POLL_MS and
    swaps its `data-live` regions; a page that is final carries no marker, so polling stops.
    `me` is who is logged in (None on the login page)."""
    values = {
        "request": request,
        "live": live,
        "query": lambda **kw: query(request, **kw),
        "me": access.principal(request),
        **context,
    }
    return HTMLResponse(ENV.get_template(name).render(values), status_code=status_code)
