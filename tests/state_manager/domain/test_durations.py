"""Durations as settings are written (`RUN_RETENTION=30d`) and as the dashboard says them."""

from __future__ import annotations

import pytest

from state_manager.domain.durations import duration_words, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86_400),
        ("12h", 12 * 3600),
        ("90s", 90),
        ("10m", 600),
        ("250ms", 0.25),
        ("0.5s", 0.5),
        ("1.5h", 5400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2w", 14 * 86_400),
        ("1d12h", 36 * 3600),
        (" 30D ", 30 * 86_400),
        ("45", 45),  # a bare number is seconds, like every *_SECONDS setting
        ("2.5", 2.5),
    ],
)
def test_a_duration_is_its_parts_added_up_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "d", "30 days", "1y", "30d-1h", "1h,30m", "abc", "1e3s"])
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a duration like 90s, 12h, 30d or 1h30m"):
        parse_duration(text)


def test_a_negative_duration_is_refused_as_negative() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration("-1d")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (30 * 86_400, "30 days"),
        (86_400, "1 day"),
        (14 * 86_400, "2 weeks"),
        (10 * 86_400, "10 days"),
        (36 * 3600, "1 day 12 hours"),
        (12 * 3600, "12 hours"),
        (5400, "1 hour 30 minutes"),
        (600, "10 minutes"),
        (90, "1 minute 30 seconds"),
        (59, "59 seconds"),
        (1, "1 second"),
        (2, "2 seconds"),
        (0.5, "0.5 seconds"),
        (365 * 86_400, "365 days"),
    ],
)
def test_a_duration_reads_in_words(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


@pytest.mark.parametrize("text", ["30d", "12h", "90s", "1h30m", "2w", "0.5s"])
def test_what_is_parsed_reads_back_as_the_same_duration(text: str) -> None:
    assert parse_duration(_as_text(duration_words(parse_duration(text)))) == parse_duration(text)


def _as_text(words: str) -> str:
    """`"1 hour 30 minutes"` -> `"1h30m"`."""
    units = {"week": "w", "day": "d", "hour": "h", "minute": "m", "second": "s"}
    parts = words.split()
    return "".join(n + units[word.rstrip("s")] for n, word in zip(parts[::2], parts[1::2], strict=True))
