"""Prometheus metrics: every series the server exports, the hooks that move them, and the
collector that reads the queue gauges from the database when `/metrics` is scraped.

Each app has its own `Metrics` (its own `CollectorRegistry`: tests build many apps). Services
and queries do not know the app, so they call the module's hooks (`run_triggered`,
`transitioned`, ...), which update the `Metrics` that is *active* in the current context:
the request middleware activates its app's for every request, the lifespan for the background
loops. Outside both (a unit test calling a service directly) the hooks only log.

Hooks cost an in-memory update and, for state transitions, one log line: never a database
call. The queue gauges are read at scrape time, at most once every `QUEUE_STATS_MAX_AGE`
seconds. Label values come from bounded sets only: namespace, graph, node, status, reason,
result, route, method, code; never a run, state or fan-out id.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from state_manager.domain.status import Event, StateStatus

if TYPE_CHECKING:
    from state_manager.db.documents import Run, State
    from state_manager.schemas.queues import QueueRow
    from state_manager.services.context import AppContext

log = structlog.get_logger("state_manager.events")

# Background work: from milliseconds to an hour (then +Inf).
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# Requests: most take milliseconds; a long-poll enqueue waits up to its wait_ms (<= 30 s).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

QUEUE_STATS_MAX_AGE = 5.0  # seconds a scrape-time read of the queues is reused
STATE_LABELS = ("namespace", "node")

# Final outcomes of a state, counted once each in exosphere_states_finished_total.
FINAL = frozenset(
    {
        StateStatus.SUCCESS,
        StateStatus.PRUNED,
        StateStatus.ERRORED,
        StateStatus.TIMEDOUT,
        StateStatus.NEXT_CREATED_ERROR,
        StateStatus.CANCELLED,
    }
)
_FAILED = frozenset({StateStatus.ERRORED, StateStatus.TIMEDOUT, StateStatus.NEXT_CREATED_ERROR})
# The worker's reports: they end the execution that started at the claim.
_REPORTS = frozenset({Event.EXECUTED, Event.EXECUTED_FINAL, Event.ERRORED, Event.ERRORED_RETRY, Event.PRUNE})
_LEASE_EVENTS = frozenset({Event.LEASE_EXPIRED, Event.LEASE_EXPIRED_RETRY})
_TIMEOUT = "timeout"  # State.failure_kind of an attempt that ran past its node's timeout
_ERROR_CHARS = 500


class Metrics:
    """Every series of one app, in its own registry."""

    def __init__(self, version: str) -> None:
        self.registry = r = CollectorRegistry()
        state, run = STATE_LABELS, ("namespace", "graph")
        build = Gauge("exosphere_build_info", "The server's version (always 1).", ["version"], registry=r)
        build.labels(version=version).set(1)
        self.runs_triggered = Counter(
            "exosphere_runs_triggered_total", "Runs started (API or cron).", run, registry=r
        )
        self.runs_finished = Counter(
            "exosphere_runs_finished_total",
            "Runs that ended, by final status (SUCCESS, FAILED, CANCELLED).",
            [*run, "status"],
            registry=r,
        )
        self.runs_purged = Counter(
            "exosphere_runs_purged_total",
            "Finished runs deleted, with their states, by retention (RUN_RETENTION).",
            run,
            registry=r,
        )
        self.run_duration = Histogram(
            "exosphere_run_duration_seconds", "From trigger to end.", run, buckets=RUN_BUCKETS, registry=r
        )
        self.states_created = Counter(
            "exosphere_states_created_total",
            "States created (any way, fan-out copies too).",
            state,
            registry=r,
        )
        self.states_finished = Counter(
            "exosphere_states_finished_total",
            "States that reached a final status (SUCCESS, PRUNED, ERRORED, TIMEDOUT, NEXT_CREATED_ERROR, "
            "CANCELLED).",
            [*state, "status"],
            registry=r,
        )
        self.states_cancelled = Counter(
            "exosphere_states_cancelled_total", "Waiting states cancelled in bulk with their run.", registry=r
        )
        self.retries = Counter(
            "exosphere_state_retries_total",
            "Retry attempts created, by reason (error, lease_expired, timeout, manual).",
            [*state, "reason"],
            registry=r,
        )
        self.lease_expirations = Counter(
            "exosphere_lease_expirations_total",
            "Claims taken back: a silent worker (lease_expired) or past the node's timeout (timeout).",
            [*state, "reason"],
            registry=r,
        )
        self.fenced = Counter(
            "exosphere_fenced_reports_total",
            "Worker calls refused (409): their claim is no longer current "
            "(claim_superseded, lease_expired, timed_out, run_cancelled).",
            [*state, "reason"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "exosphere_state_queue_wait_seconds",
            "From when a state was due to its claim (schedule-to-start).",
            state,
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.execution = Histogram(
            "exosphere_state_execution_seconds",
            "From a claim to the worker's report (executed, errored, pruned).",
            state,
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.enqueue_requests = Counter(
            "exosphere_enqueue_requests_total",
            "Enqueue requests answered, by result (claimed, empty).",
            ["namespace", "result"],
            registry=r,
        )
        self.cron_fires = Counter(
            "exosphere_cron_fires_total",
            "Cron schedules fired, by outcome (triggered, failed).",
            [*run, "outcome"],
            registry=r,
        )
        self.http_duration = Histogram(
            "exosphere_http_request_duration_seconds",
            "Requests by method, route template and status code (not /health, /metrics).",
            ["method", "route", "code"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.queues = QueueStats()
        r.register(QueueCollector(self.queues))

    async def queue_rows(self, ctx: AppContext) -> list[tuple[str, QueueRow]]:
        """Every node's queue health, read at most once every `QUEUE_STATS_MAX_AGE` seconds."""
        from state_manager.services.queues import all_queues  # services import this module

        return await self.queues.read(lambda: all_queues(ctx))

    def render(self) -> bytes:
        return generate_latest(self.registry)


# ---------------------------------------------------------------- which app's metrics

_active: ContextVar[Metrics | None] = ContextVar("exosphere_metrics", default=None)


def activate(metrics: Metrics) -> Token[Metrics | None]:
    """Make `metrics` the one the hooks update in this context (and the tasks it starts)."""
    return _active.set(metrics)


def deactivate(token: Token[Metrics | None]) -> None:
    _active.reset(token)


@contextmanager
def active(metrics: Metrics) -> Iterator[Metrics]:
    token = activate(metrics)
    try:
        yield metrics
    finally:
        deactivate(token)


# ---------------------------------------------------------------- hooks, called where things happen


def run_triggered(run: Run) -> None:
    if (m := _active.get()) is not None:
        m.runs_triggered.labels(run.namespace_name, run.graph_name).inc()


def run_finished(run: Run) -> None:
    """A run's end was stored (once per end: see services/run_status.finish)."""
    if (m := _active.get()) is None:
        return
    m.runs_finished.labels(run.namespace_name, run.graph_name, run.status).inc()
    if run.finished_ms is not None and run.created_ms:
        m.run_duration.labels(run.namespace_name, run.graph_name).observe(
            max(0, run.finished_ms - run.created_ms) / 1000
        )


def run_purged(namespace: str, graph: str) -> None:
    """Retention deleted a finished run (services/retention.py; once per run)."""
    if (m := _active.get()) is not None:
        m.runs_purged.labels(namespace, graph).inc()


def cron_fired(namespace: str, graph: str, triggered: bool) -> None:
    if (m := _active.get()) is not None:
        m.cron_fires.labels(namespace, graph, "triggered" if triggered else "failed").inc()


def enqueue_answered(namespace: str, claimed: list[State]) -> None:
    """An enqueue request answered with `claimed` (maybe none): one line per claimed state."""
    m = _active.get()
    if m is not None:
        m.enqueue_requests.labels(namespace, "claimed" if claimed else "empty").inc()
    for state in claimed:
        wait_ms = None if state.claimed_ms is None else max(0, state.claimed_ms - state.enqueue_after)
        if m is not None and wait_ms is not None:
            m.queue_wait.labels(state.namespace_name, state.node_name).observe(wait_ms / 1000)
        _log_state(state, Event.ENQUEUE.value, wait_ms=wait_ms)


def transitioned(event: Event, state: State) -> State:
    """`state` has just been moved by `event` (db/queries.transition); returns it unchanged."""
    m = _active.get()
    execution_ms = None
    if event in _REPORTS and state.claimed_ms is not None and state.ended_ms is not None:
        execution_ms = max(0, state.ended_ms - state.claimed_ms)
    if m is not None:
        _count_transition(m, event, state, execution_ms)
    _log_state(state, event.value, execution_ms=execution_ms)
    return state


def _count_transition(m: Metrics, event: Event, state: State, execution_ms: int | None) -> None:
    labels = (state.namespace_name, state.node_name)
    if execution_ms is not None:
        m.execution.labels(*labels).observe(execution_ms / 1000)
    if state.status in FINAL:
        m.states_finished.labels(*labels, state.status.value).inc()
    lease = _TIMEOUT if state.failure_kind == _TIMEOUT else "lease_expired"
    if event in _LEASE_EVENTS:
        m.lease_expirations.labels(*labels, lease).inc()
    if event == Event.LEASE_EXPIRED_RETRY:
        m.retries.labels(*labels, lease).inc()
    elif event == Event.ERRORED_RETRY:
        m.retries.labels(*labels, "error").inc()
    elif event == Event.MANUAL_RETRY:
        m.retries.labels(*labels, "manual").inc()


def states_created(states: Iterable[State]) -> None:
    """New states were written; those written in a final status (fan-out copies, joins that
    cannot run) are finished as well."""
    created = list(states)
    if not created:
        return
    m = _active.get()
    if m is not None:
        for (namespace, node), n in Tally((s.namespace_name, s.node_name) for s in created).items():
            m.states_created.labels(namespace, node).inc(n)
    for state in created:
        if state.status in FINAL:
            if m is not None:
                m.states_finished.labels(state.namespace_name, state.node_name, state.status.value).inc()
            _log_state(state, "created")
        else:
            _log_state(state, "created", level="debug")


def states_cancelled(count: int) -> None:
    if count and (m := _active.get()) is not None:
        m.states_cancelled.inc(count)


def fenced(state: State, reason: str) -> None:
    """A worker's call about `state` was refused: its claim is no longer the current one."""
    if (m := _active.get()) is not None:
        m.fenced.labels(state.namespace_name, state.node_name, reason).inc()


def observe_request(method: str, route: str, code: int, seconds: float) -> None:
    if (m := _active.get()) is not None:
        m.http_duration.labels(method, route, str(code)).observe(seconds)


def _log_state(state: State, transition: str, *, level: str | None = None, **timing: int | None) -> None:
    """One `state_transition` line: where the state is, what moved it, and the error if any."""
    fields: dict[str, Any] = {
        "namespace": state.namespace_name,
        "graph": state.graph_name,
        "run_id": state.run_id,
        "state_id": str(state.id),
        "node": state.node_name,
        "identifier": state.identifier,
        "status": state.status.value,
        "transition": transition,
        "retry_count": state.retry_count,
    }
    fields.update({name: value for name, value in timing.items() if value is not None})
    if state.error and state.status not in (StateStatus.CREATED, StateStatus.QUEUED):
        fields["error"] = state.error[:_ERROR_CHARS]
    level = level or ("warning" if state.status in _FAILED else "info")
    getattr(log, level)("state_transition", **fields)


# ---------------------------------------------------------------- scrape-time queue gauges


class QueueStats:
    """The last read of every node's queue health, shared by scrapes and the stall warning."""

    def __init__(self, max_age: float = QUEUE_STATS_MAX_AGE) -> None:
        self.max_age = max_age
        self.rows: list[tuple[str, QueueRow]] = []
        self.read_at: float | None = None  # time.monotonic() of the last successful read
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.read_at is not None and time.monotonic() - self.read_at < self.max_age

    async def read(
        self, fetch: Callable[[], Awaitable[list[tuple[str, QueueRow]]]]
    ) -> list[tuple[str, QueueRow]]:
        """The rows, re-read with `fetch` when older than `max_age`; a failed read is logged
        and the last rows are kept (their age is exported)."""
        if self._fresh():
            return self.rows
        async with self._lock:  # concurrent scrapes: one read
            if not self._fresh():
                try:
                    self.rows = await fetch()
                    self.read_at = time.monotonic()
                except Exception:
                    log.exception("queue_stats_read_failed")
        return self.rows


_QUEUE_GAUGES: tuple[tuple[str, str, Callable[[QueueRow], float | None]], ...] = (
    ("exosphere_queue_backlog_states", "States due now and not claimed yet.", lambda row: row.due),
    (
        "exosphere_queue_backlog_age_seconds",
        "How long the oldest due state has been waiting (0 when none is).",
        lambda row: row.oldest_due_age_seconds or 0.0,
    ),
    (
        "exosphere_queue_delayed_states",
        "States waiting for a later time (delay, retry).",
        lambda row: row.delayed,
    ),
    ("exosphere_states_leased", "States claimed by a runtime and not reported yet.", lambda row: row.claimed),
    (
        "exosphere_node_last_poll_timestamp_seconds",
        "When a runtime last asked for this node's work (epoch seconds; absent if never).",
        lambda row: None if row.last_poll_ms is None else row.last_poll_ms / 1000,
    ),
    (
        "exosphere_node_stalled",
        "1 when states are due and no runtime asked for this node's work in QUEUE_STALL_SECONDS.",
        lambda row: float(row.stalled),
    ),
)


def _waiting(rows: list[tuple[str, QueueRow]]) -> Metric:
    """`exosphere_states_waiting`: each node's CREATED states by why they wait (the reasons of
    `GET /state/{id}/why`; a join, which is not a state yet, is not counted)."""
    family = GaugeMetricFamily(
        "exosphere_states_waiting",
        "States waiting to be claimed, by reason: delayed, queued (due, a runtime asks for the "
        "node), no_runtime (due, none asked lately), concurrency, rate_limit, run_concurrency.",
        labels=[*STATE_LABELS, "reason"],
    )
    for namespace, row in rows:
        counts = {"delayed": row.delayed, "queued" if row.polled else "no_runtime": row.due, **row.held_back}
        for reason, count in counts.items():
            if count:
                family.add_metric([namespace, row.node_name, reason], count)
    return family


class QueueCollector(Collector):
    """Yields the queue gauges from the last `QueueStats` read (the `/metrics` route refreshes
    it before rendering: `collect` itself cannot await the database)."""

    def __init__(self, stats: QueueStats) -> None:
        self.stats = stats

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(self.stats.rows)

    def _families(self, rows: list[tuple[str, QueueRow]]) -> list[Metric]:
        families: list[Metric] = []
        for name, documentation, value_of in _QUEUE_GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=list(STATE_LABELS))
            for namespace, row in rows:
                value = value_of(row)
                if value is not None:
                    family.add_metric([namespace, row.node_name], value)
            families.append(family)
        families.append(_waiting(rows))
        age = GaugeMetricFamily(
            "exosphere_queue_stats_age_seconds", "Age of the queue gauges' last successful read."
        )
        if self.stats.read_at is not None:
            age.add_metric([], time.monotonic() - self.stats.read_at)
        families.append(age)
        return families
