"""Runs stored before runs kept their progress (an upgraded `./.exosphere` or MongoDB) are given
their status, counts, times and sort key when the server starts, so every listing shows them as
their states say; the upgrade is idempotent (a restart, or a second replica, changes nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest

from state_manager.app import create_app
from state_manager.domain.status import StateStatus
from state_manager.domain.status import tally as upstream_tally
from tests.factories import NAMESPACE
from tests.support.durable_store import durable_store
from tests.support.in_process import settings_for, started

CREATED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
CREATED_MS = int(CREATED_AT.timestamp() * 1000)


@pytest.fixture(scope="module")
def store_uri() -> Iterator[str]:
    with durable_store() as uri:
        yield uri


@pytest.fixture
def mongo(store_uri: str) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    with pymongo.MongoClient(store_uri) as client:
        yield client


def _legacy_run(run_id: str) -> dict[str, Any]:
    """A run document as versions before the stored run status wrote it."""
    return {
        "run_id": run_id,
        "namespace_name": NAMESPACE,
        "graph_name": "g",
        "graph_version": 1,
        "store": {},
        "seeds": [],
        "seeded": True,
        "final": None,
        "revision": 0,
        "cancelled_at": None,
        "cancelled_count": 0,
        "created_at": CREATED_AT,
    }


def _legacy_state(run_id: str, identifier: str, status: str, n: int) -> dict[str, Any]:
    return {
        "node_name": identifier.title(),
        "namespace_name": NAMESPACE,
        "identifier": identifier,
        "graph_name": "g",
        "graph_namespace": NAMESPACE,
        "run_id": run_id,
        "status": status,
        "inputs": {},
        "outputs": {},
        "parents": {},
        "spawn_key": f"{run_id}:{n}",
        "pending_effect": None,
        "updated_ms": CREATED_MS + 1000 * n,
        "enqueue_after": CREATED_MS,
    }


async def _runs_listed(uri: str, database: str, namespace: str = NAMESPACE) -> dict[str, dict[str, Any]]:
    app = create_app(settings_for(mongo_uri=uri, mongo_database_name=database))
    async with started(app) as http:
        page = (await http.get(f"/v0/namespace/{namespace}/runs")).json()
        upstream = (await http.get(f"/v0/namespace/{namespace}/runs/1/10")).json()
    statuses = {run["run_id"]: run for run in page["runs"]}
    for run in upstream["runs"]:
        statuses[run["run_id"]]["upstream"] = run
    return statuses


async def test_runs_stored_before_the_stored_status_are_listed_as_their_states_say(
    store_uri: str, mongo: pymongo.MongoClient[dict[str, Any]]
) -> None:
    database = f"db{uuid.uuid4().hex[:8]}"
    db = mongo[database]
    done, failed, going = "run-done", "run-failed", "run-going"
    db.runs.insert_many(
        [_legacy_run("run-corrupt"), _legacy_run(done), _legacy_run(failed), _legacy_run(going)]
    )
    db.State.insert_one(_legacy_state("run-corrupt", "a", "NOT-A-STATUS", 0))  # cannot be upgraded
    db.State.insert_many(
        [
            _legacy_state(done, "a", "SUCCESS", 1),
            _legacy_state(done, "b", "SUCCESS", 2),
            _legacy_state(failed, "a", "SUCCESS", 3),
            _legacy_state(failed, "b", "ERRORED", 4),
            _legacy_state(going, "a", "SUCCESS", 5),
            _legacy_state(going, "b", "QUEUED", 6),
        ]
    )

    listed = await _runs_listed(store_uri, database)

    # The corrupt run is left as it was (and logged); the server started and upgraded the others.
    assert db.runs.find_one({"run_id": "run-corrupt"}).get("open") is None
    assert {run_id: run["status"] for run_id, run in listed.items() if run_id != "run-corrupt"} == {
        done: "SUCCESS",
        failed: "FAILED",
        going: "RUNNING",
    }
    assert listed[done]["counts"]["SUCCESS"] == 2 and listed[failed]["counts"]["ERRORED"] == 1
    assert listed[failed]["upstream"]["errored_count"] == 1
    assert listed[going]["upstream"]["status"] == "PENDING"  # upstream knows no RUNNING
    stored = db.runs.find_one({"run_id": failed})
    assert stored["sort_key"] == f"{CREATED_MS:013d}:{failed}"
    assert stored["finished_ms"] == CREATED_MS + 4000
    assert stored["created_ms"] == CREATED_MS

    going_run = db.runs.find_one({"run_id": going})
    assert (going_run["created"], going_run["open"], going_run["settled"]) == (2, 1, {"SUCCESS": 1})
    queued = db.State.find_one({"run_id": going, "status": "QUEUED"})
    assert queued["owed_group"] == "u" and going_run["owed"] == {"u": {"0": 1}}  # counted when it settles

    # A waiting state stored before claims read queue keys is given its key.
    db.State.insert_one({**_legacy_state("run-waiting", "w", "CREATED", 7), "node_name": "Waiting"})
    db.ServerMeta.delete_one({"_id": "queue_keys_v1"})
    await _runs_listed(store_uri, database)
    waiting = db.State.find_one({"run_id": "run-waiting"})
    assert waiting["ready"].startswith(f"{NAMESPACE}\x1fWaiting\x1f") and waiting["delayed"] is None

    # A second start (or a second replica) changes nothing.
    before = list(db.runs.find({}, {"_id": 0}).sort("run_id", 1))
    again = await _runs_listed(store_uri, database)
    assert list(db.runs.find({}, {"_id": 0}).sort("run_id", 1)) == before
    assert {k: v["status"] for k, v in again.items()} == {k: v["status"] for k, v in listed.items()}


async def test_runs_stored_before_the_listing_key_are_listed_newest_first(
    store_uri: str, mongo: pymongo.MongoClient[dict[str, Any]]
) -> None:
    """Runs with their progress but no `listing_key` (written by the version before it). In a
    namespace of its own: the embedded engine keeps one set of collections for every database."""
    database, namespace = f"db{uuid.uuid4().hex[:8]}", "listed"
    db = mongo[database]
    older, newer = "run-older", "run-newer"
    for n, run_id in enumerate([older, newer]):
        created_ms = CREATED_MS + n
        db.runs.insert_one(
            {
                **_legacy_run(run_id),
                "namespace_name": namespace,
                "status": "SUCCESS",
                "created_ms": created_ms,
                "sort_key": f"{created_ms:013d}:{run_id}",
                "created": 1,
                "open": 0,
                "settled": {"SUCCESS": 1},
                "owed": {},
                "counts": {"SUCCESS": 1},
                "final": upstream_tally({StateStatus.SUCCESS: 1}),
            }
        )
    db.ServerMeta.insert_one({"_id": "runs_progress_v1"})  # that upgrade was done before

    listed = await _runs_listed(store_uri, database, namespace)

    assert list(listed) == [newer, older]
    assert [run["upstream"]["run_id"] for run in listed.values()] == [newer, older]
    assert db.runs.find_one({"run_id": older})["listing_key"] == f"{namespace}\x1f{CREATED_MS:013d}:{older}"
