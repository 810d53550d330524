"""A SECRETS_ENCRYPTION_KEY that cannot decrypt the stored secrets is refused at startup.

The check itself runs against mongomock-motor; the process test runs `python -m state_manager`
against the nx-27017 wire-protocol store, as a user's server would run against MongoDB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest
from beanie import init_beanie
from mongomock_motor import AsyncMongoMockClient

from state_manager.config import Settings, decode_encryption_key
from state_manager.crypto import SecretCipher
from state_manager.db.documents import DOCUMENT_MODELS, GraphTemplate
from state_manager.services.startup import check_secrets_key, find_secrets_key_problem
from tests.support.durable_store import durable_store
from tests.support.live_server import free_port, new_encryption_key

KEY_A = new_encryption_key()
KEY_B = new_encryption_key()
PLAINTEXT = "sk-live-never-print-me"
DATABASE = "exosphere-startup-test"


def _settings(key: str, **values: Any) -> Settings:
    return Settings(
        state_manager_secret="a-real-api-key",
        secrets_encryption_key=key,
        mongo_database_name=DATABASE,
        _env_file=None,
        **values,
    )


def _encrypt(key: str, plaintext: str = PLAINTEXT) -> str:
    return SecretCipher(decode_encryption_key(key)).encrypt(plaintext)


def _assert_refused_naming(message: str | None, graph: str) -> None:
    assert message is not None
    assert "SECRETS_ENCRYPTION_KEY" in message
    assert f"graph {graph!r}" in message
    assert "encrypted with a different key" in message
    assert "restore the previous key, or re-upsert the graphs' secrets" in message
    for material in (KEY_A, KEY_B, PLAINTEXT):
        assert material not in message


@pytest.fixture
async def database() -> AsyncIterator[Any]:
    client: Any = AsyncMongoMockClient(tz_aware=True)
    db = client[DATABASE]
    await init_beanie(database=db, document_models=DOCUMENT_MODELS)
    yield db
    client.close()


def _graph(name: str, secrets: dict[str, str], *, age: timedelta = timedelta(0)) -> dict[str, Any]:
    """A GraphTemplate document as the graph upsert writes it (secrets: name -> ciphertext)."""
    written = datetime.now(UTC) - age
    return {
        "name": name,
        "namespace": "acme",
        "nodes": [],
        "secrets": secrets,
        "version": 1,
        "validation_status": "VALID",
        "created_at": written,
        "updated_at": written,
    }


async def _store_graph(name: str, secrets: dict[str, str], *, age: timedelta = timedelta(0)) -> None:
    await GraphTemplate.get_motor_collection().insert_one(_graph(name, secrets, age=age))


async def test_a_different_key_is_named_with_the_graph(database: Any) -> None:
    await _store_graph("billing", {"api_token": _encrypt(KEY_A)})

    _assert_refused_naming(await find_secrets_key_problem(database, _settings(KEY_B)), "billing")


async def test_the_key_that_encrypted_the_secrets_passes(database: Any) -> None:
    await _store_graph("billing", {"api_token": _encrypt(KEY_A)})

    assert await find_secrets_key_problem(database, _settings(KEY_A)) is None


async def test_nothing_to_check_without_stored_secrets(database: Any) -> None:
    await _store_graph("no-secrets", {})

    assert await find_secrets_key_problem(database, _settings(KEY_B)) is None


async def test_the_graph_written_last_decides(database: Any) -> None:
    """After a key change, graphs re-upserted under the new key let the server start."""
    await _store_graph("old", {"token": _encrypt(KEY_A)}, age=timedelta(days=1))
    await _store_graph("re-upserted", {"token": _encrypt(KEY_B)})

    assert await find_secrets_key_problem(database, _settings(KEY_B)) is None
    _assert_refused_naming(await find_secrets_key_problem(database, _settings(KEY_A)), "re-upserted")


async def test_a_database_that_cannot_be_reached_is_left_to_the_app() -> None:
    settings = _settings(KEY_B, mongo_uri=f"mongodb://127.0.0.1:{free_port()}")

    assert await check_secrets_key(settings, timeout_seconds=0.5) is None


def _store_graph_over_the_wire(uri: str) -> None:
    with pymongo.MongoClient[dict[str, Any]](uri, tz_aware=True) as client:
        client[DATABASE]["GraphTemplate"].insert_one(_graph("billing", {"api_token": _encrypt(KEY_A)}))


def test_the_server_refuses_to_start_with_a_different_key(tmp_path: Path) -> None:
    scrubbed = ("MONGO_URI", "MONGO_DATABASE_NAME", "STATE_MANAGER_SECRET", "SECRETS_ENCRYPTION_KEY", "MODE")
    base = {name: value for name, value in os.environ.items() if name not in scrubbed}
    with durable_store() as uri:
        _store_graph_over_the_wire(uri)
        result = subprocess.run(
            [sys.executable, "-m", "state_manager", "--host", "127.0.0.1", "--port", str(free_port())],
            env={
                **base,
                "MONGO_URI": uri,
                "MONGO_DATABASE_NAME": DATABASE,
                "STATE_MANAGER_SECRET": "a-real-api-key",
                "SECRETS_ENCRYPTION_KEY": KEY_B,
            },
            cwd=tmp_path,  # no .env here
            capture_output=True,
            text=True,
            timeout=30,  # a server that started anyway is killed, and the test fails
        )

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: SECRETS_ENCRYPTION_KEY cannot decrypt")
    _assert_refused_naming(result.stderr, "billing")
    assert "Traceback" not in result.stdout + result.stderr
    for material in (KEY_A, KEY_B, PLAINTEXT):
        assert material not in result.stdout
