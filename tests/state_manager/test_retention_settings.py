"""RUN_RETENTION, RETENTION_INTERVAL and AUDIT_RETENTION: durations read from the environment."""

from __future__ import annotations

import pydantic
import pytest

from state_manager.config import Settings

KEY = "ZGV2LW9ubHktY2hhbmdlLW1lLWRldi1vbmx5LWtleSE="


def _settings() -> Settings:
    return Settings(state_manager_secret="k", secrets_encryption_key=KEY, _env_file=None)  # type: ignore[call-arg]


def test_by_default_finished_runs_are_kept_forever_and_the_audit_log_a_year() -> None:
    settings = _settings()

    assert settings.run_retention is None
    assert settings.retention_interval == 600  # 10 minutes
    assert settings.audit_retention == 365 * 86_400


def test_the_settings_read_durations_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_RETENTION", "30d")
    monkeypatch.setenv("RETENTION_INTERVAL", "0.5s")
    monkeypatch.setenv("AUDIT_RETENTION", "90d")

    settings = _settings()

    assert (settings.run_retention, settings.retention_interval) == (30 * 86_400, 0.5)
    assert settings.audit_retention == 90 * 86_400


def test_a_bare_number_is_seconds_and_an_empty_value_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_RETENTION", "")
    monkeypatch.setenv("RETENTION_INTERVAL", "90")

    settings = _settings()

    assert (settings.run_retention, settings.retention_interval) == (None, 90)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30 days", "expected a duration like 90s, 12h, 30d"),
        ("-1d", "cannot be negative"),
        ("0s", "greater than 0"),
    ],
)
def test_a_bad_duration_is_refused_at_startup_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("RUN_RETENTION", value)

    with pytest.raises(pydantic.ValidationError, match="run_retention") as refused:
        _settings()
    assert message in str(refused.value)
