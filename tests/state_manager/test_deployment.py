"""What a self-hoster deploys with: every setting is documented in .env.example and reaches the
server under docker compose; the database name and the credentials are the same everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from state_manager.config import Settings
from state_manager.db.database import client_options

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVER = COMPOSE["services"]["state-manager"]


def _listed(name: str) -> bool:
    return re.search(rf"^#?\s*{name}=", ENV_EXAMPLE, re.MULTILINE) is not None


def test_every_setting_is_listed_in_env_example() -> None:
    missing = [name.upper() for name in Settings.model_fields if not _listed(name.upper())]
    assert missing == [], f"settings missing from .env.example: {missing}"


def test_compose_passes_the_whole_env_file_to_the_server() -> None:
    env_file = SERVER["env_file"]
    files = (
        [env_file]
        if isinstance(env_file, str)
        else [e if isinstance(e, str) else e["path"] for e in env_file]
    )
    assert ".env" in files
    # Whatever compose sets itself is either the database wiring or a required secret.
    assert set(SERVER["environment"]) == {
        "MONGO_URI",
        "MONGO_USERNAME",
        "MONGO_PASSWORD",
        "STATE_MANAGER_SECRET",
        "SECRETS_ENCRYPTION_KEY",
    }


def test_compose_keeps_credentials_out_of_the_uri() -> None:
    uri = SERVER["environment"]["MONGO_URI"]
    assert "@" not in uri and "${" not in uri
    assert SERVER["environment"]["MONGO_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD")


def test_a_password_with_url_characters_reaches_the_driver_unchanged() -> None:
    settings = Settings(
        state_manager_secret="k",
        secrets_encryption_key="ZGV2LW9ubHktY2hhbmdlLW1lLWRldi1vbmx5LWtleSE=",
        mongo_uri="mongodb://db:27017/?authSource=admin",
        mongo_username="admin",
        mongo_password="p@ss:w/rd%",
        _env_file=None,  # type: ignore[call-arg]
    )

    assert client_options(settings) == {"tz_aware": True, "username": "admin", "password": "p@ss:w/rd%"}


def test_one_default_database_name_everywhere() -> None:
    default = Settings.model_fields["mongo_database_name"].default
    assert re.search(rf"^MONGO_DATABASE_NAME={re.escape(default)}$", ENV_EXAMPLE, re.MULTILINE)
    assert "MONGO_DATABASE_NAME" not in SERVER["environment"]  # taken from .env, with that default
    assert f"default `{default}`" in (ROOT / "docs" / "self-hosting.md").read_text()
