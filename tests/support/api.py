"""A small synchronous REST client for OUR state manager, for asserting what a run did.

It speaks the v0 API with plain httpx (no SDK), so a test observes the server independently of the
client under test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

PENDING_STATUSES = frozenset({"CREATED", "QUEUED", "EXECUTED"})
TERMINAL_STATUSES = frozenset(
    {"SUCCESS", "PRUNED", "ERRORED", "NEXT_CREATED_ERROR", "RETRY_CREATED", "CANCELLED", "TIMEDOUT"}
)

State = dict[str, Any]


def summarize_states(states: list[State]) -> str:
    """One line per state, for assertion messages."""
    rows = [
        json.dumps(
            {
                key: state.get(key)
                for key in ("id", "identifier", "node_name", "status", "inputs", "outputs", "error")
            },
            sort_keys=True,
        )
        for state in states
    ]
    return "\n".join(rows) or "(no states)"


class StateManagerAPI:
    """``GET`` helpers under ``/v0/namespace/{ns}`` plus bounded waits on runs."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        self.client = httpx.Client(base_url=base_url, headers={"x-api-key": api_key}, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def get(self, path: str, expected_status: int = 200) -> Any:
        response = self.client.get(path)
        assert response.status_code == expected_status, (
            f"GET {path}: expected {expected_status}, got {response.status_code}: {response.text[:2000]}"
        )
        return response.json()

    def send(self, method: str, path: str, body: Any = None, expected_status: int = 200) -> Any:
        response = self.client.request(method, path, json=body)
        assert response.status_code == expected_status, (
            f"{method} {path}: expected {expected_status}, got {response.status_code}: {response.text[:2000]}"
        )
        return response.json()

    def get_text(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, f"GET {path}: got {response.status_code}: {response.text[:2000]}"
        return response.text

    # -- resources ------------------------------------------------------------------------------

    def nodes(self, namespace: str) -> list[dict[str, Any]]:
        body = self.get(f"/v0/namespace/{namespace}/nodes/")
        assert body.get("namespace") == namespace, body
        nodes: list[dict[str, Any]] = body["nodes"]
        assert body.get("count") == len(nodes), body
        return nodes

    def graph(self, namespace: str, graph_name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/v0/namespace/{namespace}/graph/{graph_name}")
        return result

    def run_states(self, namespace: str, run_id: str) -> list[State]:
        body = self.get(f"/v0/namespace/{namespace}/states/run/{run_id}")
        assert body.get("run_id") == run_id, body
        states: list[State] = body["states"]
        assert body.get("count") == len(states), body
        return states

    def run_summary(self, namespace: str, run_id: str, page_size: int = 100) -> dict[str, Any]:
        """The row of ``GET /runs/{page}/{size}`` for one run (searched over all pages)."""
        page = 1
        while True:
            body = self.get(f"/v0/namespace/{namespace}/runs/{page}/{page_size}")
            for run in body["runs"]:
                if run["run_id"] == run_id:
                    return dict(run)
            if len(body["runs"]) < page_size:
                raise AssertionError(f"run {run_id} not listed by GET /runs in {namespace}: {body}")
            page += 1

    # -- waiting --------------------------------------------------------------------------------

    def wait_run(
        self,
        namespace: str,
        run_id: str,
        *,
        min_states: int = 1,
        until: Callable[[list[State]], bool] | None = None,
        timeout: float = 60.0,
        grace: float = 0.5,
    ) -> list[State]:
        """Poll the run's states until it settles, and return them.

        Settled means: at least ``min_states`` states, none of them pending (CREATED, QUEUED,
        EXECUTED), ``until(states)`` holds if given, and the same picture is seen again after
        ``grace`` seconds (so children or duplicates written just after are not missed).
        """
        deadline = time.monotonic() + timeout
        states: list[State] = []
        while time.monotonic() < deadline:
            states = self.run_states(namespace, run_id)
            if self._settled(states, min_states, until):
                time.sleep(grace)
                again = self.run_states(namespace, run_id)
                if _fingerprint(again) == _fingerprint(states):
                    return again
                states = again
                continue
            time.sleep(0.25)
        raise AssertionError(
            f"run {run_id} in {namespace} did not settle within {timeout:.0f}s "
            f"(wanted >= {min_states} states, none pending); last seen:\n{summarize_states(states)}"
        )

    @staticmethod
    def _settled(states: list[State], min_states: int, until: Callable[[list[State]], bool] | None) -> bool:
        if len(states) < min_states:
            return False
        if any(state["status"] not in TERMINAL_STATUSES for state in states):
            return False
        return until is None or until(states)


def _fingerprint(states: list[State]) -> list[tuple[str, str]]:
    return sorted((str(state.get("id")), str(state.get("status"))) for state in states)


def group_by_identifier(states: list[State]) -> dict[str, list[State]]:
    """States of a run keyed by graph identifier, in the order the server listed them."""
    grouped: dict[str, list[State]] = {}
    for state in states:
        grouped.setdefault(str(state["identifier"]), []).append(state)
    return grouped
