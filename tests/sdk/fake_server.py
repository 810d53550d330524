"""A tiny in-memory stand-in for the state manager, served through `httpx.MockTransport`.

It records every request, hands out queued states on enqueue (holding long-polls until work
arrives), and answers reports. Tests script failures with `fail(...)`. Heartbeats come from the
runtime's heartbeat thread (on a private event loop there), so recording is guarded by a lock.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

NAMESPACE = "test"
BASE_URL = "http://state-manager.test"
API_KEY = "test-key"
PREFIX = f"/v0/namespace/{NAMESPACE}"

Responder = Callable[[httpx.Request], httpx.Response | Exception]


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    headers: httpx.Headers
    at: float = field(default_factory=time.monotonic)

    @property
    def route(self) -> str:
        """The path under the namespace prefix, e.g. `state/s1/executed`."""
        return self.path.removeprefix(PREFIX + "/")


@dataclass
class FakeServer:
    states: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    graph_responses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    heartbeat_lease_ms: int | None = None
    """When set, heartbeat answers carry this `lease_ms` (and a `lease_expires_at` far in the past)."""
    deliveries: list[list[str]] = field(default_factory=list)
    """The state ids each answered enqueue handed out, in order."""
    abandoned_polls: int = 0
    """Enqueue requests the client gave up on while the server held them."""
    _failures: list[tuple[re.Pattern[str], Responder]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 0
    _work: asyncio.Event | None = None

    # ------------------------------------------------------------------ scripting

    def add_state(
        self,
        node_name: str,
        inputs: dict[str, Any] | None = None,
        *,
        lease: bool = False,
        state_id: str | None = None,
        claim_token: str | None = None,
        lease_ms: int | None = None,
        lease_expires_at: int | None = None,
        timeout_ms: int | None = None,
    ) -> str:
        """Queue a state. `lease=True` gives it the `lease_expires_at` of an older server of ours;
        `claim_token`, `lease_ms` and (for a node with a timeout) `timeout_ms` are what the
        current server adds; none of them: upstream."""
        self._next_id += 1
        state_id = state_id or f"s{self._next_id}"
        state: dict[str, Any] = {
            "state_id": state_id,
            "node_name": node_name,
            "identifier": node_name.lower(),
            "inputs": inputs or {},
            "created_at": "2025-01-01T00:00:00",
        }
        if lease:
            state["lease_expires_at"] = 1_700_000_000_000
        if lease_expires_at is not None:
            state["lease_expires_at"] = lease_expires_at
        if lease_ms is not None:
            state["lease_ms"] = lease_ms
        if claim_token is not None:
            state["claim_token"] = claim_token
        if timeout_ms is not None:
            state["timeout_ms"] = timeout_ms
        self.states.append(state)
        if self._work is not None:
            self._work.set()
        return state_id

    def fail(
        self,
        route_pattern: str,
        status: int | Exception,
        times: int = 1,
        detail: Any = "scripted",
        code: str | None = None,
    ) -> None:
        """Answer the next `times` requests whose route matches with `status` (or raise it);
        `code` adds the machine-readable `"code"` our server sends next to `detail`."""
        pattern = re.compile(route_pattern)
        body = {"detail": detail} if code is None else {"detail": detail, "code": code}

        def respond(_request: httpx.Request) -> httpx.Response | Exception:
            if isinstance(status, Exception):
                return status
            return httpx.Response(status, json=body)

        with self._lock:
            self._failures.extend([(pattern, respond)] * times)

    def answer_once(self, route_pattern: str, status: int, body: Any) -> None:
        """Answer the next request whose route matches with this JSON body."""
        with self._lock:
            self._failures.append((re.compile(route_pattern), lambda _req: httpx.Response(status, json=body)))

    def routes(self, suffix: str) -> list[Recorded]:
        """Requests whose route ends with `suffix`, in order."""
        with self._lock:
            return [r for r in self.requests if r.route.endswith(suffix)]

    # ------------------------------------------------------------------ transport

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        recorded = Recorded(request.method, request.url.path, body, request.headers)
        with self._lock:
            self.requests.append(recorded)
            scripted = self._take_failure(recorded.route)
        if scripted is not None:
            result = scripted(request)
            if isinstance(result, Exception):
                raise result
            return result
        return await self._answer(recorded)

    def _take_failure(self, route: str) -> Responder | None:
        for index, (pattern, responder) in enumerate(self._failures):
            if pattern.search(route):
                del self._failures[index]
                return responder
        return None

    async def _answer(self, req: Recorded) -> httpx.Response:
        route, body = req.route, req.body
        if route == "nodes/":
            return httpx.Response(200, json={"runtime_name": body["runtime_name"], "registered_nodes": []})
        if route == "states/enqueue":
            return httpx.Response(200, json=await self._enqueue(body))
        if route.endswith("/secrets"):
            return httpx.Response(200, json={"secrets": self.secrets})
        if route.endswith("/heartbeat") and self.heartbeat_lease_ms is not None:
            answer = {"status": "QUEUED", "lease_expires_at": 0, "lease_ms": self.heartbeat_lease_ms}
            return httpx.Response(200, json=answer)
        if match := re.fullmatch(r"state/[^/]+/(\w[\w-]*)", route):
            return httpx.Response(200, json=_report_answer(match.group(1)))
        if re.fullmatch(r"graph/[^/]+/trigger", route):
            return httpx.Response(200, json={"status": "CREATED", "run_id": "run-1"})
        if route.startswith("graph/"):
            status, graph = self.graph_responses.pop(0)
            return httpx.Response(status, json=graph)
        return httpx.Response(200, json={"route": route})

    async def _enqueue(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.states and body.get("wait_ms", 0) > 0:
            self._work = asyncio.Event()
            try:
                await asyncio.wait_for(self._work.wait(), body["wait_ms"] / 1000)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                self.abandoned_polls += 1
                raise
            finally:
                self._work = None
        wanted = [s for s in self.states if s["node_name"] in body["nodes"]][: body["batch_size"]]
        for state in wanted:
            self.states.remove(state)
        self.deliveries.append([state["state_id"] for state in wanted])
        return {"count": len(wanted), "namespace": NAMESPACE, "status": "QUEUED", "states": wanted}


def _report_answer(kind: str) -> dict[str, Any]:
    answers: dict[str, dict[str, Any]] = {
        "executed": {"status": "EXECUTED"},
        "errored": {"status": "ERRORED", "retry_created": False},
        "prune": {"status": "PRUNED"},
        "re-enqueue-after": {"status": "CREATED", "enqueue_after": 1},
        "heartbeat": {"status": "QUEUED", "lease_expires_at": 1_700_000_060_000},
    }
    return answers.get(kind, {"status": "OK"})


def graph(status: str, errors: list[str] | None = None) -> dict[str, Any]:
    """A graph template answer with the given validation status."""
    return {
        "nodes": [],
        "secrets": {},
        "validation_status": status,
        "validation_errors": errors or [],
    }
