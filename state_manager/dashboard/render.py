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


def ui_url(ns: str, *parts: str) -> str:
    """A dashboard path in namespace `ns`: every part URL-quoted (ids and names are user text)."""
    return "/".join(["/ui/ns", quote(ns, safe=""), *(quote(str(p), safe="") for p in parts)])


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def short_id(value: str, length: int = 8) -> str:
    return value if len(value) <= length + 1 else value[:length] + "…"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: node output is user text
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ms_time=ms_time, ms_iso=ms_iso, duration=duration, pretty_json=pretty_json, short_id=short_id
    )
    env.globals.update(version=__version__, poll_ms=POLL_MS, url=ui_url)
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
    swaps its `data-live` regions; a page that is final carries no marker, so polling stops."""
    values = {"request": request, "live": live, "query": lambda **kw: query(request, **kw), **context}
    return HTMLResponse(ENV.get_template(name).render(values), status_code=status_code)
