"""Flow control as data (issue 18): the gates a claim must pass, and their arithmetic (no I/O).

A gate is one key value of one limit:

- a node's concurrency (`concurrency` on a graph node): at most `limit` of its states held at
  once (claimed, until their report, cancel, timeout or lease end);
- a node's rate (`rate_limit`): claims at most `per_second` per second on average, in bursts of
  up to `burst` (the generic cell rate algorithm: one number per gate, the time the next claim
  is due at, moved on by one interval per claim);
- a graph's run concurrency (graph-level `concurrency`): at most `limit` runs RUNNING at once.
  It is the gate of the run's root states; a run takes its slot with its first claim and gives
  it back when it ends.

A state lists its gates' ids in `State.gates`, its keys resolved when it was made (like its
inputs). A claim passes each gate or leaves the state *parked* at the first that is closed:
`parked = <gate id> <rank>` (the rank of its queue key, so parked states come back in the order
they would have been claimed in). A gate whose slot frees, or whose next claim comes due, moves
its first parked states back to `ready`.

Ids are text: a kind letter, the namespace, the graph, the node's identifier and the key's value,
separated by `SEP`, the key's value after `=` (no `=`: one gate for all). The separators are taken
out of names and values, so one gate's parked range never holds another gate's states.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from state_manager.domain.models import ConcurrencyLimit, NodeTemplate, RateLimit
from state_manager.domain.planning import resolve_inputs

CONCURRENCY = "concurrency"
RATE = "rate_limit"
RUNS = "run_concurrency"
_LETTERS = {CONCURRENCY: "c", RATE: "r", RUNS: "g"}
_KINDS = {letter: kind for kind, letter in _LETTERS.items()}

SEP = "\x1f"
_PARK = "\x1e"
_RANK_END = "~"  # after every digit: the end of one gate's parked range

NEVER = 10**15  # `FlowGate.wake_ms` of a gate nobody waits at
# A slot taken less than this long ago is held whatever its holder's state says: the claim that
# took it may still be writing the state.
FRESH_HOLD_MS = 30_000


@dataclass(frozen=True)
class GateId:
    kind: str
    namespace: str
    graph: str
    node: str | None
    key: str | None


def _clean(text: str) -> str:
    return text.replace(SEP, " ").replace(_PARK, " ")


KEY_KEPT = 120  # characters of a key's value kept in a gate's id; a longer one ends in a hash


def _short(value: str) -> str:
    """A key's value as the gate's id keeps it: as it is, or cut with a hash of the whole (a key
    made of a big output must not make an indexed field of it; two long keys stay apart)."""
    if len(value) <= KEY_KEPT:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{value[: KEY_KEPT - 18]}…#{digest}"


def gate_id(kind: str, namespace: str, graph: str, node: str | None, key: str | None) -> str:
    value = "" if key is None else f"={_short(_clean(key))}"
    return SEP.join([_LETTERS[kind], _clean(namespace), _clean(graph), _clean(node or ""), value])


def parse(gate: str) -> GateId:
    letter, namespace, graph, node, value = gate.split(SEP, 4)
    key = value[1:] if value.startswith("=") else None
    return GateId(_KINDS[letter], namespace, graph, node or None, key)


def park_key(gate: str, ready: str | None) -> str:
    """`State.parked` of a state waiting at `gate`, whose queue key was `ready`."""
    rank = ready.rsplit(SEP, 1)[-1] if ready and ready.count(SEP) >= 2 else ""
    return f"{gate}{_PARK}{rank}"


def park_range(gate: str) -> dict[str, str]:
    """The `parked` condition of the states waiting at `gate`, in their order."""
    return {"$gte": f"{gate}{_PARK}", "$lt": f"{gate}{_PARK}{_RANK_END}"}


def kind_range(kind: str) -> dict[str, str]:
    """The `parked` condition of every state parked at a gate of this kind."""
    letter = _LETTERS[kind]
    return {"$gte": f"{letter}{SEP}", "$lt": f"{letter}{chr(ord(SEP) + 1)}"}


def gate_of_parked(parked: str) -> str:
    return parked.split(_PARK, 1)[0]


def holder(state_id: str, token: str) -> str:
    """The key of a state's claim among a gate's holders."""
    return f"{state_id}_{token}"


def run_holder(run_id: str) -> str:
    """The key of a run among its graph's run slots' holders."""
    return "run_" + run_id.replace(".", "_").replace("$", "_")


def holder_state(key: str) -> tuple[str, str] | None:
    """(state id, claim token) of a state's holder key; None for a run's."""
    if key.startswith("run_"):
        return None
    state_id, _, token = key.partition("_")
    return state_id, token


# ---------------------------------------------------------------- which gates a state passes


def _resolve(
    identifier: str,
    label: str,
    template: str | None,
    outputs: Mapping[str, Mapping[str, Any]],
    store: Mapping[str, str],
    defaults: Mapping[str, str],
) -> str | None:
    if template is None:
        return None
    return resolve_inputs(identifier, {label: template}, outputs, store, defaults)[label]


def node_gates(
    namespace: str,
    graph: str,
    node: NodeTemplate,
    outputs: Mapping[str, Mapping[str, Any]],
    store: Mapping[str, str],
    defaults: Mapping[str, str],
) -> list[str]:
    """The gates of a new state of `node` (its keys resolved from its ancestors' outputs and the
    run's store, like its inputs).

    Raises:
        PlanningError: A key cannot be resolved (a missing output field or store key).
    """
    gates = []
    if node.concurrency is not None:
        key = _resolve(node.identifier, "concurrency.key", node.concurrency.key, outputs, store, defaults)
        gates.append(gate_id(CONCURRENCY, namespace, graph, node.identifier, key))
    if node.rate_limit is not None:
        key = _resolve(node.identifier, "rate_limit.key", node.rate_limit.key, outputs, store, defaults)
        gates.append(gate_id(RATE, namespace, graph, node.identifier, key))
    return gates


def run_gate(
    namespace: str,
    graph: str,
    limit: ConcurrencyLimit | None,
    store: Mapping[str, str],
    defaults: Mapping[str, str],
) -> str | None:
    """The run-slots gate of a new run of a graph with run concurrency (its key from the store)."""
    if limit is None:
        return None
    key = _resolve(graph, "concurrency.key", limit.key, {}, store, defaults)
    return gate_id(RUNS, namespace, graph, None, key)


def limit_of(gate: GateId, nodes: Mapping[str, NodeTemplate], graph_limit: ConcurrencyLimit | None) -> Any:
    """The setting a gate applies now (a graph's current version): a ConcurrencyLimit, a RateLimit,
    or None when it was taken off (the gate then lets everything through)."""
    if gate.kind == RUNS:
        return graph_limit
    node = nodes.get(gate.node or "")
    if node is None:
        return None
    return node.concurrency if gate.kind == CONCURRENCY else node.rate_limit


# ---------------------------------------------------------------- rate arithmetic (GCRA)


def interval_us(rate: RateLimit) -> int:
    """The time between two claims at the average rate, in microseconds (at least 1)."""
    return max(1, round(1_000_000 / rate.per_second))


def rate_take(tat_us: int, now_us: int, rate: RateLimit, wanted: int) -> tuple[int, int]:
    """How many of `wanted` claims the rate allows now, and the gate's next `tat_us` after them.

    Each claim moves the theoretical arrival time on by one interval; a claim is allowed while it
    is at most `burst` intervals ahead of now.
    """
    step = interval_us(rate)
    start = max(tat_us, now_us)
    room = now_us + rate.burst * step - start
    granted = max(0, min(wanted, room // step))
    return granted, start + granted * step


def rate_next_ms(tat_us: int, now_us: int, rate: RateLimit) -> int:
    """When (epoch ms) the rate allows one more claim."""
    due_us = max(now_us, tat_us - (rate.burst - 1) * interval_us(rate))
    return -(-due_us // 1000)


def free_slots(limit: int, held: int) -> int:
    return max(0, limit - held)
