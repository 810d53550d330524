"""Durations as the CLI reads them (`250ms`, `60s`, `5m`, `1h30m`; a bare number in the option's
unit), and the waits between a watch's progress reads."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from exospherehost.cli.durations import Duration, parse_duration
from exospherehost.cli.watch import read_delays


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("60s", 60),
        ("5m", 300),
        ("1h30m", 5400),
        ("1m30s", 90),
        ("1h 30m", 5400),
        ("1.5s", 1.5),
        ("2d", 172_800),
        ("1w", 604_800),
        ("10MS", 0.01),
        ("0s", 0),
    ],
)
def test_a_duration_is_parts_with_units_added_up(text: str, seconds: float) -> None:
    assert parse_duration(text, bare_unit="ms") == pytest.approx(seconds)


def test_a_bare_number_is_in_the_unit_the_option_names() -> None:
    assert parse_duration("1500", bare_unit="ms") == pytest.approx(1.5)
    assert parse_duration("0.2", bare_unit="s") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="needs a unit"):
        parse_duration("30", bare_unit=None)


@pytest.mark.parametrize("text", ["5x", "-3s", "", "s", "1h30", "5 minutes", "1.s", "+3s", "3s-1s"])
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like 250ms, 60s, 5m or 1h30m"):
        parse_duration(text, bare_unit="ms")


def test_a_negative_duration_says_so() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration("-3s", bare_unit="ms")


def test_the_option_type_names_the_option_and_its_bare_unit() -> None:
    @click.command()
    @click.option("--start-delay", type=Duration("ms"), default="0")
    @click.option("--interval", type=Duration("s", minimum=0.05), default="1s")
    def command(start_delay: float, interval: float) -> None:
        click.echo(f"{start_delay} {interval}")

    runner = CliRunner()
    ok = runner.invoke(command, ["--start-delay", "60s", "--interval", "250ms"])
    defaults = runner.invoke(command, [])
    bad = runner.invoke(command, ["--start-delay", "5x"])
    too_fast = runner.invoke(command, ["--interval", "10ms"])

    assert (ok.exit_code, ok.output) == (0, "60.0 0.25\n")
    assert (defaults.exit_code, defaults.output) == (0, "0.0 1.0\n")
    assert bad.exit_code == 2
    assert "'--start-delay'" in bad.output and "expected a duration like 250ms" in bad.output
    assert "a bare number is milliseconds" in bad.output
    assert too_fast.exit_code == 2 and "at least 50ms" in too_fast.output


def test_a_watch_reads_fast_at_first_then_backs_off_to_its_interval() -> None:
    delays = read_delays(1.0)
    assert [round(next(delays), 3) for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert next(read_delays(0.05)) == 0.05
