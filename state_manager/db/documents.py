"""Beanie documents and their indexes. Fields and indexes only: no logic lives here.

Machine times (`enqueue_after`, `lease_expires_at`, `updated_ms`) are integer epoch
milliseconds, so that comparisons behave the same on MongoDB and on the embedded store.
`created_at` / `updated_at` are aware UTC datetimes for people.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pymongo
from beanie import Document
from pydantic import Field
from pymongo import IndexModel

from state_manager.clock import utcnow
from state_manager.domain.effects import Effect
from state_manager.domain.models import ConcurrencyLimit, NodeTemplate, RetryPolicy, StoreConfig
from state_manager.domain.status import StateStatus


class RegisteredNode(Document):
    name: str
    namespace: str
    runtime_name: str
    runtime_namespace: str
    inputs_schema: dict[str, Any] = Field(default_factory=dict)
    outputs_schema: dict[str, Any] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "RegisteredNode"
        indexes = [
            IndexModel([("name", 1), ("namespace", 1)], unique=True, name="unique_name_namespace"),
            IndexModel([("namespace", 1)], name="namespace"),
        ]


class GraphTemplate(Document):
    name: str
    namespace: str
    nodes: list[NodeTemplate]
    validation_status: str = "PENDING"
    validation_errors: list[str] = Field(default_factory=list)
    secrets: dict[str, str] = Field(default_factory=dict)  # name -> ciphertext, never plaintext
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    store_config: StoreConfig = Field(default_factory=StoreConfig)
    # At most this many runs of the graph RUNNING at once, per key (issue 18); the rest wait.
    concurrency: ConcurrencyLimit | None = None
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    version: int = 1  # bumped by every upsert; validation results are written against it
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # The newest upsert that did not validate while a valid version was live (services/graphs.py):
    # its fields as an upsert writes them, with its errors. The live version stays what triggers
    # use; the candidate replaces it once it validates (a runtime registers its nodes).
    candidate: dict[str, Any] | None = None

    class Settings:
        name = "GraphTemplate"
        indexes = [
            IndexModel([("name", 1), ("namespace", 1)], unique=True, name="unique_name_namespace"),
        ]


class GraphVersion(Document):
    """What a graph's version was (its nodes, retry policy and store config), kept when the version
    is written, so that a run can be forked onto the version it ran (decision 0023)."""

    namespace: str
    name: str
    version: int
    nodes: list[NodeTemplate]
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    store_config: StoreConfig = Field(default_factory=StoreConfig)

    class Settings:
        name = "GraphVersion"
        indexes = [
            IndexModel([("namespace", 1), ("name", 1), ("version", 1)], unique=True, name="uniq_version"),
        ]


class State(Document):
    node_name: str
    namespace_name: str  # the node's namespace: where its runtime claims it
    identifier: str
    graph_name: str
    graph_namespace: str  # where the graph template and the run live
    graph_version: int = 0  # the template version it was created under (0: unknown)
    run_id: str
    status: StateStatus = StateStatus.CREATED
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    # A fan-out's further outputs (`outputs` holds the first): each becomes a clone of this state.
    fanout_outputs: list[dict[str, Any]] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)  # prune payload
    error: str | None = None
    # The whole error of this attempt when its runtime sent it: type, traceback, log lines.
    error_details: dict[str, Any] | None = None
    parents: dict[str, str] = Field(default_factory=dict)  # ancestor identifier -> state id
    does_unites: bool = False
    enqueue_after: int = 0
    # Its run's priority (issue 18): claimed as if due this many ms earlier (domain/queues.py);
    # never before `not_before_ms`, the time its node asked it to wait for (re-enqueue-after).
    priority_ms: int = 0
    not_before_ms: int | None = None
    # Its queue key while CREATED (domain/queues.py): in `ready` once due, in `delayed` before,
    # in `parked` while a gate it must pass is closed (domain/gates.py: a concurrency limit, a
    # rate limit or its graph's run concurrency; the gate's id, then its rank).
    ready: str | None = None
    delayed: str | None = None
    parked: str | None = None
    # The gates a claim of it must pass (domain/gates.py), their keys resolved when it was made.
    gates: list[str] = Field(default_factory=list)
    lease_expires_at: int | None = None
    claimed_ms: int | None = None  # when the current (or last) attempt was claimed
    ended_ms: int | None = None  # when it ended: reported, failed, timed out or cancelled
    tuned_lease_ms: int | None = None  # the lease it was given, when tuned (domain/leases.py)
    timeout_ms: int | None = None  # the template node's timeout_seconds, in ms
    deadline_ms: int | None = None  # claim time + timeout_ms: when the attempt times out
    retry_count: int = 0
    fanout_id: str = ""
    # Where it stands in the fan-outs above it: the output index of each ancestor's report on
    # its branch, and (after its own report) its own output index. Joins that collect `[*]`
    # order what they collect by this.
    fanout_path: list[int] = Field(default_factory=list)
    output_index: int = 0
    manual_retry_fanout_id: str = ""
    manual_retry_request: str | None = None  # fanout id of an operator's retry being created
    # Deterministic key of the event that created this state (unique): makes every creation
    # idempotent, so a repeated report or a recovery pass never duplicates a state.
    spawn_key: str
    # What must still follow the last status write: "spawn" (children, fan-out clones or a
    # retry copy) then "joins" (re-evaluate the joins above this state), then None. Written
    # with the status; the recovery loop finishes whatever a crash interrupted.
    pending_effect: Effect | None = None
    lease_lost: bool = False  # the lease ran out and the work was re-delivered: fence reports
    # Identity of the current (or last) claim: a new random token per claim. A call that carries
    # a token other than this one comes from an earlier holder and is refused (409).
    claim_token: str | None = None
    # Failed attempts at the pending effect; past the limit the state fails visibly.
    effect_failures: int = 0
    # Why the state failed when the reason is the server's, not the node's: "too_large" (a
    # document the report would create is over the store's limit) or "effects" (its effects
    # kept failing). Repeats of the same report get the same answer.
    failure_kind: str | None = None
    # Where the run counts it open until it settles (domain/tally.py): its group, its index in
    # the group, and the group's registration ({"open": n, "settled": {...}}) so that any member
    # can register the group; `reopened_from` on a settled state counted open again (a retry of
    # it, or a join superseded by a repair): the status it had been counted settled in.
    owed_group: str = ""
    owed_index: int = 0
    owed_registration: dict[str, Any] = Field(default_factory=dict)
    reopened_from: str | None = None
    # The groups of states its settle created (children, a retry copy, joins), counted with its
    # own settlement: a list of {"group", "open", "settled"}.
    spawned: list[dict[str, Any]] = Field(default_factory=list)
    # Joins (decision 0020): on an anchor state, the generation of each join above it (join
    # identifier -> n; a repair of a branch below makes the join again as generation n + 1); on a
    # join state, the generation it is; `rejoin` on a join superseded by a repair, whose "spawn"
    # effect is to make the next generation once the branches have settled.
    join_generations: dict[str, int] = Field(default_factory=dict)
    join_generation: int = 0
    rejoin: bool = False
    # On an anchor (a state with a join above it): the progress of the states below it, kept
    # like a run's (domain/tally.py, `tally.ANCHOR`): the joins above it are made when nothing
    # below it is open. `join_tally` is set on every state written by a server that keeps these
    # (a state written before has none: its joins are decided the old way, by reading the run's
    # states). On a join state, `join_epoch` is the anchor's `below_reopens` when it was made.
    join_tally: bool = False
    # In a forked run: the inputs given for the nodes forked from (identifier -> field -> value),
    # carried by every state of the run so that the states it makes apply them (new_states.py).
    input_overrides: dict[str, dict[str, str]] = Field(default_factory=dict)
    # In a forked run: the state of the original run this one was copied from (reused, not run).
    reused_from: str | None = None
    # In a run forked onto the graph version its original ran: its effects follow that version,
    # not the newest (services/graphs.graph_of).
    pinned_version: bool = False
    below_created: int = 0
    below_open: int = 0
    below_settled: dict[str, int] = Field(default_factory=dict)
    below_owed: dict[str, dict[str, int]] = Field(default_factory=dict)
    below_reopens: int = 0
    join_epoch: int = 0
    # On a retried branch (an operator's repair): its "spawn" effect also supersedes the joins
    # above it, after writing its retry, so a crash between the two is completed by recovery.
    rejoin_above: bool = False
    # Set on every state of a run when the run is cancelled: whatever a settle writes after
    # that is cancelled by the settle itself (see services/runs.cancel_run).
    run_cancelled: bool = False
    cancel_sweep: str | None = None  # the cancel sweep that cancelled it (one per sweep)
    updated_ms: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "State"
        indexes = [
            IndexModel([("spawn_key", 1)], unique=True, name="uniq_spawn_key"),
            IndexModel(
                [("namespace_name", 1), ("status", 1), ("node_name", 1), ("enqueue_after", 1)],
                name="enqueue_query",
            ),
            IndexModel([("ready", 1)], name="ready"),
            IndexModel([("delayed", 1)], name="delayed"),
            IndexModel([("parked", 1)], name="parked"),
            IndexModel([("run_id", 1), ("status", 1)], name="run_id_status_index"),
            IndexModel([("status", 1), ("lease_expires_at", 1)], name="lease_expiry"),
            IndexModel([("status", 1), ("deadline_ms", 1)], name="deadline"),
            IndexModel([("pending_effect", 1), ("updated_ms", 1)], name="pending_effect"),
        ]


# State fields written only when they hold something (queries._stored): a join's anchor's tally
# and a join's epoch; a state read without them gets their defaults.
SET_ONLY_WHEN_USED = (
    "priority_ms",
    "gates",
    "parked",
    "not_before_ms",
    "input_overrides",
    "reused_from",
    "pinned_version",
    "below_created",
    "below_open",
    "below_settled",
    "below_owed",
    "below_reopens",
    "join_epoch",
)


class Run(Document):
    run_id: str
    namespace_name: str
    graph_name: str
    graph_version: int = 0
    triggered_by: str = "api"  # "api", "cron" or "fork"
    store: dict[str, str] = Field(default_factory=dict)
    # Root states to create; kept on the run so that a crash between writing the run and
    # writing its states is completed by the recovery loop.
    seeds: list[dict[str, Any]] = Field(default_factory=list)
    seeded: bool = False
    seed_failures: int = 0  # failed attempts at seeding; past the limit the run is given up
    # The run's counts and status once it has finished (written by the first listing that sees
    # it finished); cleared, with `revision` bumped, when something reopens the run.
    final: dict[str, Any] | None = None
    revision: int = 0
    cancelled_at: int | None = None  # epoch ms; the run's status is then CANCELLED
    cancelled_count: int = 0  # states cancelled by it
    # Stored status (domain/status.RunStatus), kept by services/run_status.py: PENDING, RUNNING
    # from the first claim of one of its states, then SUCCESS / FAILED / CANCELLED.
    status: str = "PENDING"
    started_ms: int | None = None  # first claim of one of its states
    finished_ms: int | None = None  # when it ended; None while it may still change
    counts: dict[str, int] = Field(default_factory=dict)  # states per status, once finished
    # Its progress as data (domain/tally.py), changed once by each state's creation and
    # settlement: states created, still open, and settled by status; and one bit per open state.
    created: int = 0
    open: int = 0
    settled: dict[str, int] = Field(default_factory=dict)
    owed: dict[str, dict[str, int]] = Field(default_factory=dict)
    reopens: int = 0  # how often something settled in it was counted open again
    priority_ms: int = 0  # every state of it is claimed as if due this much earlier
    # The gate of its graph's run concurrency it holds a slot of once started (domain/gates.py);
    # the slot is given back when it ends.
    run_gate: str | None = None
    # A fork (decision 0023): {"run_id": the original, "from": [identifiers]} and what it was asked
    # (`fork`: from, inputs, store, graph_version), kept so that recovery can finish writing it.
    forked_from: dict[str, Any] | None = None
    fork_of: str | None = None  # the original run's id (indexed: its page lists its forks)
    fork: dict[str, Any] | None = None
    created_ms: int = 0
    # Orders runs newest first and pages them: creation time (13 digits of epoch ms), then the
    # run id, so it is unique and a cursor is the last key seen (services/run_views.py).
    sort_key: str = ""
    # The namespace, a separator and `sort_key`: one indexed field that the listings read as a
    # range, newest first (on the embedded engine a compound index's prefix is a scan).
    listing_key: str = ""
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "runs"
        indexes = [
            IndexModel([("run_id", 1)], unique=True, name="run_id_index"),
            IndexModel(
                [("namespace_name", 1), ("created_at", pymongo.DESCENDING)],
                name="namespace_created_at_index",
            ),
            IndexModel([("seeded", 1), ("created_ms", 1)], name="unseeded"),
            IndexModel([("fork_of", 1)], name="forks"),
            # Both listings: a namespace's runs newest first (run_status.listing_range).
            IndexModel([("listing_key", pymongo.DESCENDING)], name="listing"),
            # Retention: the runs that ended longest ago first, as a range (services/retention.py).
            IndexModel([("finished_ms", 1)], name="finished"),
        ]


class CronSchedule(Document):
    """One cron expression of one graph; `next_fire_at` moves forward each time it fires."""

    namespace: str
    graph_name: str
    expression: str
    next_fire_ms: int
    claimed_until_ms: int = 0
    last_run_id: str | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "CronSchedule"
        indexes = [
            IndexModel(
                [("namespace", 1), ("graph_name", 1), ("expression", 1)],
                unique=True,
                name="uniq_graph_expression",
            ),
            IndexModel([("next_fire_ms", 1)], name="next_fire"),
        ]


class NodeStats(Document):
    """Per node and namespace: its observed running times (the last few), for tuned leases, and
    when a runtime last asked for its work (written at most every few seconds per replica)."""

    namespace: str
    node_name: str
    samples: list[int] = Field(default_factory=list)  # ms from claim to a successful report
    grown_ms: int = 0  # raised when a report came after its tuned lease had run out
    last_poll_ms: int | None = None  # when a runtime last asked for this node's work
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "NodeStats"
        indexes = [IndexModel([("namespace", 1), ("node_name", 1)], unique=True, name="uniq_node")]


class IdempotencyKey(Document):
    """A trigger's `Idempotency-Key`: the run it started and the body it came with.

    Keys are per namespace and graph; a TTL index removes them at `expires_at`.
    """

    namespace: str
    graph_name: str
    key: str
    body_hash: str
    run_id: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime

    class Settings:
        name = "IdempotencyKey"
        indexes = [
            IndexModel([("namespace", 1), ("graph_name", 1), ("key", 1)], unique=True, name="uniq_key"),
            IndexModel([("expires_at", 1)], expireAfterSeconds=0, name="expiry"),
            # Retention deletes a run's records with it (services/retention.py).
            IndexModel([("run_id", 1)], name="run"),
        ]


class FlowGate(Document):
    """One gate of flow control (domain/gates.py): a node's concurrency slots or rate, or a
    graph's run slots, for one key value. Read and written through Motor with conditional
    updates; the model names its fields and indexes."""

    id: str  # type: ignore[assignment]  # the gate's id (domain/gates.gate_id)
    kind: str
    namespace: str
    graph: str
    node: str | None = None  # the node's identifier (None for a graph's run slots)
    key: str | None = None  # the key's value (None: one gate for all)
    # Concurrency and run slots: who holds one ("<holder>" -> when it was taken, epoch ms) and
    # how many do; the limit last asked for.
    holders: dict[str, int] = Field(default_factory=dict)
    held: int = 0
    limit: int | None = None
    # Rate: the theoretical arrival time of the next claim, in microseconds (GCRA).
    tat_us: int = 0
    per_second: float | None = None
    burst: int | None = None
    # When to look at its parked states again (epoch ms; NEVER when none wait), and when a
    # claim last parked a state at it.
    wake_ms: int = 0
    parked_ms: int = 0

    class Settings:
        name = "FlowGate"
        indexes = [IndexModel([("wake_ms", 1)], name="wake")]


class ApiKey(Document):
    """A scoped API key (issue 19, domain/access.py): its secret is stored hashed (SHA-256 of a
    random 256-bit secret), shown once when it is made, and compared in constant time."""

    key_id: str  # public part of the key (`exo_<key_id>_<secret>`), unique
    name: str
    role: str
    namespaces: list[str]
    secret_hash: str
    created_ms: int
    created_by: str
    expires_ms: int | None = None
    revoked_ms: int | None = None

    class Settings:
        name = "ApiKey"
        indexes = [IndexModel([("key_id", 1)], unique=True, name="uniq_key_id")]


class Lock(Document):
    """A lease that lets one replica at a time do a piece of background work: taken when free or
    expired (a conditional update), given back when the work is done. Read and written through
    Motor; the model names its fields."""

    id: str  # type: ignore[assignment]  # the work's name, e.g. "retention"
    holder: str | None = None  # who holds it: host, process and pass
    expires_ms: int = 0  # epoch ms; free once past (0: given back)
    taken_ms: int = 0
    # What the holder is in the middle of, so that the next holder finishes it if this one
    # stops half-way (retention: the runs of the batch being deleted).
    work: list[str] = Field(default_factory=list)

    class Settings:
        name = "Lock"


class AuditRecord(Document):
    """One state-changing call (issue 19, services/audit.py): who, what, where, and the answer.
    Written once, never changed through any API; kept for AUDIT_RETENTION."""

    at_ms: int
    key_id: str | None  # None: the root key
    key_name: str
    role: str
    action: str  # e.g. "run.cancel", "graph.upsert", "key.create", "dashboard.login"
    namespace: str | None = None
    target: dict[str, str] = Field(default_factory=dict)  # graph, run, state or key
    request_id: str | None = None
    client: str | None = None  # the client's address
    status: int
    # Orders the log newest first and pages it (a range of one indexed field): `at_ms` (13
    # digits) and the record's id.
    order: str = ""

    class Settings:
        name = "AuditRecord"
        indexes = [IndexModel([("order", -1)], name="order"), IndexModel([("at_ms", 1)], name="at")]


DOCUMENT_MODELS: list[type[Document]] = [
    RegisteredNode,
    GraphTemplate,
    GraphVersion,
    State,
    Run,
    CronSchedule,
    IdempotencyKey,
    NodeStats,
    FlowGate,
    ApiKey,
    Lock,
    AuditRecord,
]
