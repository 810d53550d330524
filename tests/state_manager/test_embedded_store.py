"""The embedded store's launcher (`state_manager.store`) and the one place that picks a database.

The engine is the real nx-27017, started and stopped in the test; the process-level behaviour of
`python -m state_manager` is in tests/e2e/test_embedded_restart.py.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pymongo
import pytest

from state_manager.config import Settings
from state_manager.db.database import NoDatabase, open_database
from state_manager.store import DataDirInUse, StoreError, open_data_dir, run_engine, temporary_store
from state_manager.store.keys import KEYS_FILE, load_or_create_dev_keys
from tests.support.live_server import new_encryption_key


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _client(uri: str) -> pymongo.MongoClient[dict[str, Any]]:
    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)


def test_data_written_to_an_engine_is_read_by_the_next_one(tmp_path: Path) -> None:
    with open_data_dir(tmp_path / "data") as data_dir:
        with run_engine(data_dir) as engine, _client(engine.uri) as client:
            client["db"]["graphs"].insert_one({"name": "kept"})
        assert not _alive(engine.pid)
        with run_engine(data_dir) as engine, _client(engine.uri) as client:
            assert client["db"]["graphs"].find_one({}, {"_id": 0}) == {"name": "kept"}
    assert (tmp_path / "data" / "store.db").is_file()


def test_an_in_memory_engine_keeps_nothing_and_leaves_no_files(tmp_path: Path) -> None:
    with run_engine(None) as engine, _client(engine.uri) as client:
        client["db"]["graphs"].insert_one({"name": "gone"})
        assert engine.data_dir is None
        workdir = engine.log_path.parent
    with run_engine(None) as engine, _client(engine.uri) as client:
        assert client["db"]["graphs"].find_one() is None
    assert not workdir.exists()
    assert not _alive(engine.pid)


def test_a_locked_data_directory_is_refused_naming_it(tmp_path: Path) -> None:
    with open_data_dir(tmp_path) as data_dir:
        with pytest.raises(DataDirInUse) as refused, open_data_dir(tmp_path, lock_wait_seconds=0.2):
            pass
        assert f"(pid {os.getpid()}) is using the data directory {data_dir.path}" in str(refused.value)
    with open_data_dir(tmp_path):  # released with the block
        pass


def test_the_engine_holds_the_lock_too(tmp_path: Path) -> None:
    """A server killed with SIGKILL releases nothing while its engine still runs on the files."""
    with open_data_dir(tmp_path) as data_dir, run_engine(data_dir) as engine:
        open_files = {os.readlink(fd) for fd in Path(f"/proc/{engine.pid}/fd").iterdir()}
        assert str(data_dir.path / "server.lock") in open_files


def test_a_directory_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")

    with pytest.raises(StoreError) as refused, open_data_dir(tmp_path / "file" / "sub"):
        pass

    assert str(refused.value).startswith(f"the data directory {tmp_path / 'file' / 'sub'} cannot be used")


def test_an_engine_that_cannot_start_is_reported_with_its_log_and_stopped(tmp_path: Path) -> None:
    (tmp_path / "store.db").write_bytes(b"not a SQLite database" * 100)

    with open_data_dir(tmp_path) as data_dir, pytest.raises(StoreError) as failed, run_engine(data_dir):
        pass

    message = str(failed.value)
    assert message.startswith("the embedded store (nx-27017) exited with code 1 before it listened")
    assert "file is not a database" in message  # the tail of its log
    assert "set MONGO_URI" in message


def test_an_engine_that_does_not_listen_in_time_is_stopped(tmp_path: Path) -> None:
    before = set(_children())
    with (
        open_data_dir(tmp_path) as data_dir,
        pytest.raises(StoreError) as failed,
        run_engine(data_dir, start_timeout=0),
    ):
        pass
    assert "did not listen within 0 s" in str(failed.value)
    assert not [pid for pid in set(_children()) - before if _alive(pid)]


def _children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == os.getpid():
                found.append(int(entry.name))
    return found


def test_temporary_store_serves_and_stops() -> None:
    with temporary_store() as uri, _client(uri) as client:
        client["db"]["c"].insert_one({"a": 1})
        assert client["db"]["c"].count_documents({}) == 1
    port = int(uri.rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_dev_keys_are_generated_once_and_private(tmp_path: Path) -> None:
    first = load_or_create_dev_keys(tmp_path)
    again = load_or_create_dev_keys(tmp_path)

    assert again == first
    assert first.path == tmp_path / KEYS_FILE
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert json.loads(first.path.read_text()) == {
        "state_manager_secret": first.state_manager_secret,
        "secrets_encryption_key": first.secrets_encryption_key,
    }
    assert [p.name for p in tmp_path.iterdir()] == [KEYS_FILE]  # no draft left behind


def test_damaged_dev_keys_are_refused_with_the_remedy(tmp_path: Path) -> None:
    (tmp_path / KEYS_FILE).write_text(
        json.dumps({"state_manager_secret": "k", "secrets_encryption_key": "x"})
    )

    with pytest.raises(StoreError) as refused:
        load_or_create_dev_keys(tmp_path)

    assert f"the development keys in {tmp_path / KEYS_FILE} are not valid" in str(refused.value)
    assert "delete" in str(refused.value)


async def test_an_app_without_a_database_is_refused_rather_than_given_a_mock() -> None:
    settings = Settings(
        state_manager_secret="a-real-key", secrets_encryption_key=new_encryption_key(), _env_file=None
    )
    assert settings.mongo_uri is None
    assert not settings.mock_store

    with pytest.raises(NoDatabase, match="MONGO_URI is not set"):
        await open_database(settings)
