"""Durations as the settings read them (`RUN_RETENTION=30d`), and as people read them back.

A duration is one or more `<number><unit>` parts, added up: `90s`, `12h`, `30d`, `1h30m`, `1.5h`,
`2w`, `250ms`. The units are `ms`, `s`, `m`, `h`, `d` and `w` (any case; spaces between parts
are allowed), the same forms the CLI reads (`exosphere ... --interval 5m`). A bare number is
seconds, as in every `*_SECONDS` setting. Nothing negative.
"""

from __future__ import annotations

import re

__all__ = ["duration_words", "parse_duration"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d|w)")
_PARTS = re.compile(rf"(?:\s*{_NUMBER}\s*(?:ms|s|m|h|d|w))+\s*")
_BARE = re.compile(_NUMBER)
FORMS = "90s, 12h, 30d or 1h30m (a bare number is seconds)"

# Largest first: how `duration_words` names a duration.
_WORDS = (("week", 604_800), ("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1))


def parse_duration(text: str) -> float:
    """`"1h30m"` -> `5400.0`: the duration in seconds.

    Raises:
        ValueError: With a message that shows the accepted forms.
    """
    value = text.strip().lower()
    if _BARE.fullmatch(value):
        return float(value)
    if not _PARTS.fullmatch(value):
        negative = "a duration cannot be negative: " if value.startswith("-") else ""
        raise ValueError(f"{negative}expected a duration like {FORMS}, got {text!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(value))


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def duration_words(seconds: float) -> str:
    """`2592000` -> `"30 days"`, `129600` -> `"1 day 12 hours"`, `0.5` -> `"0.5 seconds"`.

    Whole weeks are named as weeks only when the duration is nothing but weeks (`14d` reads
    `"2 weeks"`, `10d` reads `"10 days"`); a fraction of a second is kept under a minute and
    rounded away above it.
    """
    if seconds < 60:
        return _plural(round(seconds, 3), "second")
    rest = round(seconds)
    if rest % _WORDS[0][1] == 0:
        return _plural(rest // _WORDS[0][1], _WORDS[0][0])
    parts = []
    for word, size in _WORDS[1:]:
        count, rest = divmod(rest, size)
        if count:
            parts.append(_plural(count, word))
    return " ".join(parts)
