"""What the CLI reads from the user: `k=v` pairs, value maps, `${ENV}` secrets, `--since`."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import click
import pytest

from exospherehost.cli.inputs import (
    parse_node_pairs,
    parse_pairs,
    parse_since,
    string_map,
    substitute_secrets,
)


def test_pairs_split_at_the_first_equals_sign() -> None:
    assert parse_pairs(["url=https://x/?a=b", "empty="], "-i") == {"url": "https://x/?a=b", "empty": ""}


@pytest.mark.parametrize("pair", ["novalue", "=value"])
def test_a_pair_without_a_key_is_refused(pair: str) -> None:
    with pytest.raises(click.BadParameter, match="KEY=VALUE"):
        parse_pairs([pair], "-i")


def test_node_pairs_group_the_fields_by_node() -> None:
    pairs = ["draft.prompt=Be brief: a=b", "draft.tone=dry", "score.min=", "draft.prompt=Again"]

    assert parse_node_pairs(pairs, "-i") == {
        "draft": {"prompt": "Again", "tone": "dry"},
        "score": {"min": ""},
    }


@pytest.mark.parametrize("pair", ["nodots", "draft=x", "draft.prompt", ".prompt=x", "draft.=x", "=x"])
def test_a_node_pair_without_a_node_a_field_or_a_value_is_refused(pair: str) -> None:
    with pytest.raises(click.BadParameter, match=f"expected NODE.FIELD=VALUE, got '{re.escape(pair)}'"):
        parse_node_pairs([pair], "-i/--input")


def test_value_maps_write_numbers_out_and_refuse_the_rest() -> None:
    assert string_map({"n": 3, "f": 1.5, "s": "x"}, "--inputs-file") == {"n": "3", "f": "1.5", "s": "x"}
    with pytest.raises(click.BadParameter, match="'flag' should be a string"):
        string_map({"flag": True}, "--inputs-file")


def test_secrets_read_every_reference_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_A", "alice")
    monkeypatch.setenv("PASS_A", "s3cret")

    resolved = substitute_secrets({"dsn": "pg://${USER_A}:${PASS_A}@db", "plain": "as-is ${{ x }}"}, "g.yaml")

    assert resolved == {"dsn": "pg://alice:s3cret@db", "plain": "as-is ${{ x }}"}


def test_an_unset_variable_names_the_secret_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)

    with pytest.raises(click.UsageError, match=r"secret 'token' refers to \$\{NOT_SET_ANYWHERE\}"):
        substitute_secrets({"token": "${NOT_SET_ANYWHERE}"}, "g.yaml")


def test_since_accepts_durations_epoch_ms_and_iso_times() -> None:
    now_ms = time.time() * 1000

    assert abs(int(parse_since("2h") or 0) - (now_ms - 7_200_000)) < 5_000
    assert abs(int(parse_since("30m") or 0) - (now_ms - 1_800_000)) < 5_000
    assert abs(int(parse_since("1h30m") or 0) - (now_ms - 5_400_000)) < 5_000
    assert parse_since("1700000000000") == "1700000000000"
    expected = int(datetime(2025, 1, 31, 12, tzinfo=UTC).timestamp() * 1000)
    assert parse_since("2025-01-31T12:00:00Z") == str(expected)
    with pytest.raises(click.BadParameter):
        parse_since("yesterday-ish")
