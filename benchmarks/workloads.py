"""The workloads (A-E) and what is measured for each.

One workload = a fresh state manager (and a fresh nx-27017 for the external case) + one runtime
process (`runtime_proc.py`, our SDK or the official one) serving the benchmark nodes. The
orchestrator (this process) upserts the graph and triggers the runs with our `StateManager`,
and reads the runtime's execution events (node, key, start, end) from its stdout.

Measured over the window [first trigger issued, last execution ended]:
- wall time, node executions/s;
- trigger-to-done per run: from its trigger being issued to the end of its last node's execute
  (the report is sent right after);
- CPU seconds per execution of the server, the database and the runtime (/proc);
- database commands per execution (`GET /v0/debug/db-commands`; "n/a" when the server does not
  expose it), less the listing probe's own commands (measured once after the workload);
- latency of `GET /v0/namespace/{ns}/runs/1/10`, issued every 250 ms during the workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.official import clean_env, official_sdk_python
from benchmarks.processes import CpuClock, Server
from exospherehost import ConcurrencyModel, GraphNodeModel, StateManager, StoreConfigModel, UnitesModel
from exospherehost._http import default_transport

RUNTIME_SCRIPT = Path(__file__).resolve().parent / "runtime_proc.py"
PROBE_INTERVAL = 0.25
KEYED = StoreConfigModel(required_keys=["k"])
WORKERS = 16
BATCH = 16


# ---------------------------------------------------------------- the runtime process


@dataclass(frozen=True)
class Execution:
    node: str
    key: str
    start: float
    end: float


class RuntimeProcess:
    """A running `runtime_proc.py` and the executions it reported so far."""

    def __init__(self, process: asyncio.subprocess.Process, sdk: str) -> None:
        self.process = process
        self.sdk = sdk
        self.executions: list[Execution] = []
        self.progress = asyncio.Event()
        self._counts: asyncio.Queue[int] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            parts = line.decode().split()
            if parts and parts[0] == "E" and len(parts) == 5:
                self.executions.append(Execution(parts[1], parts[2], float(parts[3]), float(parts[4])))
                self.progress.set()
            elif parts and parts[0] == "C":
                self._counts.put_nowait(int(parts[1]))
        self.progress.set()

    async def requests_sent(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(b"count\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(self._counts.get(), 10)

    async def wait_for(self, executions: int, deadline: float) -> bool:
        """Until `executions` have been reported (True) or the monotonic `deadline` (False)."""
        while len(self.executions) < executions:
            if self.process.returncode is not None:
                raise RuntimeError(f"the {self.sdk} runtime exited with code {self.process.returncode}")
            self.progress.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), min(remaining, 1.0))
        return True

    async def stop(self) -> None:
        if self.process.returncode is None:
            if self.process.stdin is not None:
                with contextlib.suppress(ConnectionError):
                    self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def runtime_process(
    sdk: str, server: Server, namespace: str, workdir: Path
) -> AsyncIterator[RuntimeProcess]:
    base = {"EXOSPHERE_STATE_MANAGER_URI": server.base_url, "EXOSPHERE_API_KEY": server.api_key}
    if sdk == "official":
        python = str(official_sdk_python("0.0.3"))
        # The official SDK logs several INFO lines per state; WARNING keeps log I/O out of the figures.
        env = {
            **clean_env(dict(os.environ)),
            **base,
            "EXOSPHERE_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    else:
        python = sys.executable
        # Ours logs a line per state by default; WARNING keeps log I/O out of the figures, as above.
        env = {**os.environ, **base, "EXOSPHERE_LOG_LEVEL": "WARNING"}
    command = [python, str(RUNTIME_SCRIPT), "--sdk", sdk, "--namespace", namespace]
    command += ["--workers", str(WORKERS), "--batch", str(BATCH), "--poll-interval", "0"]
    log = (workdir / f"runtime-{sdk}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        cwd=workdir,
        start_new_session=True,
    )
    runtime = RuntimeProcess(process, sdk)
    try:
        yield runtime
    finally:
        await runtime.stop()
        log.close()


# ---------------------------------------------------------------- helpers


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_registered(
    http: httpx.AsyncClient, namespace: str, names: set[str], runtime: RuntimeProcess
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if runtime.process.returncode is not None:
            raise RuntimeError(f"the {runtime.sdk} runtime exited with code {runtime.process.returncode}")
        response = await http.get(f"/v0/namespace/{namespace}/nodes/")
        if response.status_code == 200 and names <= {n.get("name") for n in response.json().get("nodes", [])}:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"nodes {names} not registered in {namespace}")


async def db_commands(http: httpx.AsyncClient, reset: bool = False) -> dict[str, int] | None:
    """The server's command counts (None when the debug endpoint is not there: 404)."""
    response = await (http.post if reset else http.get)("/v0/debug/db-commands" + ("/reset" if reset else ""))
    if response.status_code == 404:
        return None
    response.raise_for_status()
    commands: dict[str, int] = response.json()["commands"]
    return commands


class Probe:
    """`GET runs/1/10` every 250 ms, timed, until stopped."""

    def __init__(self, http: httpx.AsyncClient, namespace: str) -> None:
        self.http, self.path = http, f"/v0/namespace/{namespace}/runs/1/10"
        self.latencies: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def once(self) -> float:
        began = time.perf_counter()
        response = await self.http.get(self.path)
        elapsed = time.perf_counter() - began
        if response.status_code != 200:
            self.failures += 1
        return elapsed

    async def _loop(self) -> None:
        while True:
            elapsed = await self.once()
            self.latencies.append(elapsed)
            await asyncio.sleep(max(0.0, PROBE_INTERVAL - elapsed))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# ---------------------------------------------------------------- graphs


def _node(
    ns: str,
    name: str,
    identifier: str,
    inputs: dict[str, str],
    nxt: list[str] | None = None,
    unites: str | None = None,
) -> GraphNodeModel:
    return GraphNodeModel(
        node_name=name,
        namespace=ns,
        identifier=identifier,
        inputs=inputs,
        next_nodes=nxt,
        unites=UnitesModel(identifier=unites) if unites else None,
    )


def chain_graph(ns: str, length: int) -> list[GraphNodeModel]:
    nodes = []
    for i in range(length):
        key = "${{ store.k }}" if i == 0 else f"${{{{ s{i - 1}.outputs.key }}}}"
        nodes.append(_node(ns, "Step", f"s{i}", {"key": key}, [f"s{i + 1}"] if i + 1 < length else None))
    return nodes


def limited_chain_graph(ns: str, length: int, key: str | None) -> list[GraphNodeModel]:
    """`chain_graph` with a concurrency limit on every node that never binds (issue 18: what the
    limit itself costs): 1,000 at once, in all (`key` None) or per run (`${{ store.k }}`)."""
    limit = ConcurrencyModel(limit=1000, key=key)
    return [node.model_copy(update={"concurrency": limit}) for node in chain_graph(ns, length)]


def fan_out_graph(ns: str, width: int) -> list[GraphNodeModel]:
    return [
        _node(ns, "Step", "root", {"key": "${{ store.k }}"}, ["spread"]),
        _node(ns, "Spread", "spread", {"key": "${{ root.outputs.key }}", "count": str(width)}, ["leaf"]),
        _node(ns, "Step", "leaf", {"key": "${{ spread.outputs.key }}"}, ["join"]),
        _node(ns, "Step", "join", {"key": "${{ root.outputs.key }}"}, unites="root"),
    ]


@dataclass(frozen=True)
class Workload:
    """`runs` runs of a graph; `sequential` triggers each after the previous one finished."""

    name: str
    title: str
    graph: Callable[[str], list[GraphNodeModel]]
    runs: int
    executions_per_run: int
    sequential: bool = False


def workloads(quick: bool) -> dict[str, Workload]:
    a, b, c_big, c_small, d_runs, d_len = (50, 20, 200, 20, 2, 20) if quick else (200, 100, 1000, 100, 5, 20)
    return {
        "A": Workload("A", f"{a} one-node runs triggered at once", lambda ns: chain_graph(ns, 1), a, 1),
        "B": Workload("B", f"{b} three-node chains triggered at once", lambda ns: chain_graph(ns, 3), b, 3),
        "B-limit": Workload(
            "B-limit",
            f"B with a concurrency limit that never binds on every node ({b} chains)",
            lambda ns: limited_chain_graph(ns, 3, None),
            b,
            3,
        ),
        "B-keyed": Workload(
            "B-keyed",
            f"B with a per-run keyed limit that never binds on every node ({b} chains)",
            lambda ns: limited_chain_graph(ns, 3, "${{ store.k }}"),
            b,
            3,
        ),
        "C": Workload("C", f"fan-out of {c_big} + join", lambda ns: fan_out_graph(ns, c_big), 1, c_big + 3),
        "C-small": Workload(
            "C-small", f"fan-out of {c_small} + join", lambda ns: fan_out_graph(ns, c_small), 1, c_small + 3
        ),
        # The growth targets of issue 15: fan-outs of 5,000 and 10,000 + a join (not in the
        # default set: ask for them with --workloads C5k,C10k and a --limit to match).
        "C5k": Workload("C5k", "fan-out of 5000 + join", lambda ns: fan_out_graph(ns, 5000), 1, 5003),
        "C10k": Workload("C10k", "fan-out of 10000 + join", lambda ns: fan_out_graph(ns, 10000), 1, 10003),
        "D": Workload(
            "D",
            f"{d_len}-step chain, {d_runs} runs one after another",
            lambda ns: chain_graph(ns, d_len),
            d_runs,
            d_len,
            sequential=True,
        ),
    }


# ---------------------------------------------------------------- measuring


@dataclass
class Clocks:
    server: CpuClock
    database: CpuClock
    runtime: CpuClock

    @classmethod
    def of(cls, server: Server, db_pids: list[int], runtime: RuntimeProcess) -> Clocks:
        return cls(CpuClock([server.pid]), CpuClock(db_pids), CpuClock([runtime.pid]))

    def start(self) -> None:
        for clock in (self.server, self.database, self.runtime):
            clock.start()

    def read(self) -> dict[str, float | None]:
        return {
            "server": self.server.read(),
            "database": self.database.read(),
            "runtime": self.runtime.read(),
        }


@dataclass
class Measured:
    workload: str
    title: str
    sdk: str
    store: str
    executions: int = 0
    expected: int = 0
    wall: float | None = None
    done_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float | None] = field(default_factory=dict)
    db_commands: dict[str, int] | None = None
    probe_commands: float | None = None
    probe_cpu_ms: float | None = None
    probe_ms: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    first_start_ms: list[float] = field(default_factory=list)
    requests_per_s: float | None = None
    runtime_requests: int | None = None
    diagnosis: Any = None
    db_commands_per_s: float | None = None
    seconds: float | None = None
    error: str | None = None
    db_in_process: bool = False


async def _trigger(sm: StateManager, key: str) -> float:
    issued = time.time()
    await sm.trigger("bench", store={"k": key})
    return issued


async def _verify_done(sm: StateManager, runs: int) -> str | None:
    """Wait (up to 30 s) until the server reports every run SUCCESS; the problem if not."""
    deadline = time.monotonic() + 30
    statuses: dict[str, int] = {}
    while time.monotonic() < deadline:
        page = await sm.list_runs(1, min(max(runs, 1), 1000))
        statuses = defaultdict(int)
        for run in page["runs"]:
            statuses[run["status"]] += 1
        if statuses.get("SUCCESS", 0) >= runs:
            return None
        await asyncio.sleep(0.2)
    return f"runs not all SUCCESS after the last execution: {dict(statuses)}"


async def run_workload(
    workload: Workload, sdk: str, store: str, server: Server, db_pids: list[int], workdir: Path, limit: float
) -> Measured:
    result = Measured(
        workload.name, workload.title, sdk, store, expected=workload.runs * workload.executions_per_run
    )
    result.db_in_process = not db_pids
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    async with (
        httpx.AsyncClient(
            base_url=server.base_url, headers=server.headers, transport=default_transport()
        ) as http,
        StateManager(ns, server.base_url, server.api_key) as sm,
        runtime_process(sdk, server, ns, workdir) as runtime,
    ):
        await wait_registered(http, ns, {"Step", "Spread"}, runtime)
        await sm.upsert_graph(
            "bench", workload.graph(ns), secrets={}, store_config=KEYED, polling_interval=0.05
        )
        await asyncio.sleep(0.5)  # let the runtime's first poll settle
        clocks = Clocks.of(server, db_pids, runtime)
        probe = Probe(http, ns)
        requests_before = await runtime.requests_sent()
        await db_commands(http, reset=True)
        clocks.start()
        probe.start()
        deadline = time.monotonic() + limit
        keys = [f"r{i}" for i in range(workload.runs)]
        triggered: dict[str, float] = {}
        try:
            if workload.sequential:
                for index, key in enumerate(keys):
                    triggered[key] = await _trigger(sm, key)
                    if not await runtime.wait_for((index + 1) * workload.executions_per_run, deadline):
                        break
            else:
                issued = await asyncio.gather(*(_trigger(sm, key) for key in keys))
                triggered = dict(zip(keys, issued, strict=True))
                await runtime.wait_for(result.expected, deadline)
        finally:
            await probe.stop()
        result.cpu = clocks.read()
        result.db_commands = await db_commands(http)
        result.runtime_requests = await runtime.requests_sent() - requests_before
        result.probe_ms = [x * 1000 for x in probe.latencies]
        executions = list(runtime.executions)
        result.executions = len(executions)
        if result.executions < result.expected:
            result.error = f"timeout after {limit:.0f} s: {result.executions}/{result.expected} executions"
            result.diagnosis = await _diagnose(http, ns)
        else:
            result.error = await _verify_done(sm, workload.runs)
        _timings(result, executions, triggered, workload)
        await runtime.stop()  # the probe's own cost, measured with nothing else running
        result.probe_commands, result.probe_cpu_ms = await _probe_cost(http, ns, server)
    return result


def _timings(
    result: Measured, executions: list[Execution], triggered: dict[str, float], workload: Workload
) -> None:
    if not executions or not triggered:
        return
    result.wall = max(e.end for e in executions) - min(triggered.values())
    by_run: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_run[execution.key.split(".")[0]].append(execution)
    for key, issued in triggered.items():
        runs = by_run.get(key)
        if runs and len(runs) >= workload.executions_per_run:
            result.done_ms.append((max(e.end for e in runs) - issued) * 1000)
        if runs and workload.sequential:
            ordered = sorted(runs, key=lambda e: e.start)
            result.first_start_ms.append((ordered[0].start - issued) * 1000)
            result.step_ms += [(b.start - a.end) * 1000 for a, b in itertools.pairwise(ordered)]


async def _diagnose(http: httpx.AsyncClient, ns: str) -> Any:
    """What the server says about an unfinished workload: the states not SUCCESS, by node."""
    response = await http.get(f"/v0/namespace/{ns}/states/")
    if response.status_code != 200:
        return f"GET states -> {response.status_code}"
    states = response.json().get("states", [])
    waiting = defaultdict(int)
    for state in states:
        if state.get("status") != "SUCCESS":
            waiting[f"{state.get('identifier')}:{state.get('status')}"] += 1
    return {"states": len(states), "not_success": dict(waiting)}


async def _probe_cost(http: httpx.AsyncClient, ns: str, server: Server) -> tuple[float | None, float | None]:
    probe = Probe(http, ns)
    await probe.once()  # warm
    clock = CpuClock([server.pid])
    count = 20
    await db_commands(http, reset=True)
    clock.start()
    for _ in range(count):
        await probe.once()
    cpu = clock.read()
    commands = await db_commands(http)
    return (
        None if commands is None else sum(commands.values()) / count,
        None if cpu is None else cpu / count * 1000,
    )


async def run_idle(
    sdk: str, store: str, server: Server, db_pids: list[int], workdir: Path, seconds: float
) -> Measured:
    """E: a registered runtime with nothing to do, for `seconds`."""
    result = Measured("E", f"idle runtime for {seconds:.0f} s", sdk, store, seconds=seconds)
    result.db_in_process = not db_pids
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    async with (
        httpx.AsyncClient(
            base_url=server.base_url, headers=server.headers, transport=default_transport()
        ) as http,
        runtime_process(sdk, server, ns, workdir) as runtime,
    ):
        await wait_registered(http, ns, {"Step", "Spread"}, runtime)
        await asyncio.sleep(1.0)
        clocks = Clocks.of(server, db_pids, runtime)
        before = await runtime.requests_sent()
        await db_commands(http, reset=True)
        clocks.start()
        began = time.monotonic()
        await asyncio.sleep(seconds)
        result.cpu = clocks.read()
        elapsed = time.monotonic() - began
        result.db_commands = await db_commands(http)
        result.requests_per_s = (await runtime.requests_sent() - before) / elapsed
        if result.db_commands is not None:
            result.db_commands_per_s = sum(result.db_commands.values()) / elapsed
    return result


def summarise(result: Measured) -> dict[str, Any]:
    """The figures of one workload, rounded, for the tables and the JSON file."""
    n = max(result.executions, 1)
    row: dict[str, Any] = {
        "workload": result.workload,
        "title": result.title,
        "sdk": result.sdk,
        "store": result.store,
    }
    if result.error:
        row["error"] = result.error
        row["diagnosis"] = result.diagnosis
    if result.workload == "E":
        s = result.seconds or 1
        row.update(
            requests_per_s=result.requests_per_s,
            server_cpu_pct=_pct(result.cpu.get("server"), s),
            database_cpu_pct=None if result.db_in_process else _pct(result.cpu.get("database"), s),
            runtime_cpu_pct=_pct(result.cpu.get("runtime"), s),
            db_commands_per_s=result.db_commands_per_s,
        )
        return row
    probes = len(result.probe_ms)
    db_per_exec = None
    if result.db_commands is not None:
        total = sum(result.db_commands.values()) - probes * (result.probe_commands or 0)
        db_per_exec = total / n
    row.update(
        executions=result.executions,
        wall_s=result.wall,
        executions_per_s=None if not result.wall else result.executions / result.wall,
        done_p50_ms=_pq(result.done_ms, 0.5),
        done_p95_ms=_pq(result.done_ms, 0.95),
        server_cpu_ms=_per(result.cpu.get("server"), n),
        database_cpu_ms=None if result.db_in_process else _per(result.cpu.get("database"), n),
        runtime_cpu_ms=_per(result.cpu.get("runtime"), n),
        runtime_requests_per_exec=None if result.runtime_requests is None else result.runtime_requests / n,
        db_commands_per_exec=db_per_exec,
        db_commands=result.db_commands,
        probe_p50_ms=_pq(result.probe_ms, 0.5),
        probe_p99_ms=_pq(result.probe_ms, 0.99),
        probes=probes,
        probe_db_commands=result.probe_commands,
        probe_server_cpu_ms=result.probe_cpu_ms,
    )
    if result.step_ms:
        row.update(step_p50_ms=_pq(result.step_ms, 0.5), step_p95_ms=_pq(result.step_ms, 0.95))
        row.update(first_start_p50_ms=_pq(result.first_start_ms, 0.5))
    return row


def _pq(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def _per(seconds: float | None, n: int) -> float | None:
    return None if seconds is None else seconds / n * 1000


def _pct(seconds: float | None, over: float) -> float | None:
    return None if seconds is None else seconds / over * 100


__all__ = ["Measured", "Workload", "run_idle", "run_workload", "summarise", "workloads"]
