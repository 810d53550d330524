"""Durations as the CLI reads them: `250ms`, `60s`, `5m`, `1h30m`, `1m30s`, `1.5h`, `2d`.

A duration is one or more `<number><unit>` parts, added up; the units are `ms`, `s`, `m`, `h`,
`d` and `w` (any case; spaces between parts are allowed). A bare number is in the option's own
unit: milliseconds for `--start-delay`, seconds for `--interval` and the `--timeout`s. Nothing
negative.
"""

from __future__ import annotations

import re
from typing import Any

import click

from .output import duration_text

__all__ = ["Duration", "parse_duration"]

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_UNIT_NAMES = {"ms": "milliseconds", "s": "seconds"}
_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d|w)")
_PARTS = re.compile(rf"(?:\s*{_NUMBER}\s*(?:ms|s|m|h|d|w))+\s*")
_BARE = re.compile(_NUMBER)


def parse_duration(text: str, *, bare_unit: str | None) -> float:
    """`"1h30m"` -> `5400.0`: the duration in seconds.

    Args:
        text: What the user wrote.
        bare_unit: The unit of a bare number (`"ms"` or `"s"`), or None to refuse one.

    Raises:
        ValueError: With a message that shows the accepted forms.
    """
    value = text.strip().lower()
    if _BARE.fullmatch(value):
        if bare_unit is None:
            raise ValueError(f"{text!r} needs a unit: {_forms(None)}")
        return float(value) * _UNIT_MS[bare_unit] / 1000
    if not _PARTS.fullmatch(value):
        negative = "a duration cannot be negative: " if value.startswith("-") else ""
        raise ValueError(f"{negative}expected a duration like {_forms(bare_unit)}, got {text!r}")
    return sum(float(number) * _UNIT_MS[unit] for number, unit in _PART.findall(value)) / 1000


def _forms(bare_unit: str | None) -> str:
    forms = "250ms, 60s, 5m or 1h30m"
    return f"{forms} (a bare number is {_UNIT_NAMES[bare_unit]})" if bare_unit else forms


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2; the SDK allows 8.1
    """A click type for a duration option; the value given to the command is in seconds.

    Args:
        bare_unit: The unit of a bare number, `"ms"` or `"s"`.
        minimum: The shortest duration allowed, in seconds.
        positive: Refuse zero as well.
    """

    name = "duration"

    def __init__(self, bare_unit: str, *, minimum: float = 0.0, positive: bool = False) -> None:
        self.bare_unit = bare_unit
        self.minimum = minimum
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = parse_duration(str(value), bare_unit=self.bare_unit)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.positive and seconds <= 0:
            self.fail(f"must be longer than 0, got {value!r}", param, ctx)
        if seconds < self.minimum:
            self.fail(
                f"must be at least {duration_text(round(self.minimum * 1000))}, got {value!r}", param, ctx
            )
        return seconds
