"""Next-state planning: the inputs a new state gets from its template and what came before it.

Pure: callers hand in the outputs of the states a template may reference (the current state
and its ancestors, by identifier) and the run store; these functions only resolve text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from state_manager.domain.placeholders import OutputRef, PlaceholderError, Ref, StoreRef, find_refs, render


class PlanningError(ValueError):
    """A template input that cannot be resolved; the message names the node and the input."""


def referenced_identifiers(inputs: Mapping[str, Any]) -> set[str]:
    """Identifiers on the branch whose outputs these template inputs reference (collected
    references, `[*]`, are not on the branch: see `collected_refs`)."""
    return {ref.identifier for ref in _output_refs(inputs) if not ref.collect}


def collected_refs(inputs: Mapping[str, Any]) -> set[OutputRef]:
    """The `${{ x.outputs.f[*] }}` references of a join's inputs."""
    return {ref for ref in _output_refs(inputs) if ref.collect}


def _output_refs(inputs: Mapping[str, Any]) -> list[OutputRef]:
    found: list[OutputRef] = []
    for value in inputs.values():
        if isinstance(value, str):
            found += [ref for ref in find_refs(value) if isinstance(ref, OutputRef)]
    return found


def resolve_inputs(
    node_identifier: str,
    template_inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    store: Mapping[str, str],
    store_defaults: Mapping[str, str],
    collected: Mapping[OutputRef, list[Any]] | None = None,
) -> dict[str, str]:
    """Render every template input of `node_identifier`.

    `outputs` maps an identifier to the outputs of the state of that identifier on this
    branch; `store` is the run store, `store_defaults` the graph's default values; `collected`
    holds, for each `[*]` reference of a join, the values it collects, in order.
    """
    resolved: dict[str, str] = {}
    for key, value in template_inputs.items():
        if not isinstance(value, str):
            raise PlanningError(f"Input '{key}' of node {node_identifier} must be a string")

        def lookup(ref: Ref, key: str = key) -> str:
            if isinstance(ref, OutputRef) and ref.collect:
                return _collected(node_identifier, key, ref, collected or {})
            return _lookup(node_identifier, key, ref, outputs, store, store_defaults)

        try:
            resolved[key] = render(value, lookup)
        except PlaceholderError as exc:
            raise PlanningError(f"Input '{key}' of node {node_identifier}: {exc}") from exc
    return resolved


def _lookup(
    node_identifier: str,
    key: str,
    ref: Ref,
    outputs: Mapping[str, Mapping[str, Any]],
    store: Mapping[str, str],
    store_defaults: Mapping[str, str],
) -> str:
    if isinstance(ref, StoreRef):
        if ref.key in store:
            return store[ref.key]
        if ref.key in store_defaults:
            return store_defaults[ref.key]
        raise PlanningError(
            f"Input '{key}' of node {node_identifier} needs store key '{ref.key}', "
            "which the run store does not hold and which has no default value"
        )
    if ref.identifier not in outputs:
        raise PlanningError(
            f"Input '{key}' of node {node_identifier} references {ref.identifier}, "
            "which did not run before it on this branch"
        )
    produced = outputs[ref.identifier]
    if ref.field not in produced:
        raise PlanningError(
            f"Input '{key}' of node {node_identifier} references {ref.identifier}.outputs."
            f"{ref.field}, but {ref.identifier} did not output '{ref.field}'"
        )
    value = produced[ref.field]
    if not isinstance(value, str):
        raise PlanningError(
            f"Input '{key}' of node {node_identifier} references {ref.identifier}.outputs."
            f"{ref.field}, which is a {type(value).__name__}, not a string"
        )
    return value


def _collected(
    node_identifier: str, key: str, ref: OutputRef, collected: Mapping[OutputRef, list[Any]]
) -> str:
    if ref not in collected:
        raise PlanningError(f"Input '{key}' of node {node_identifier}: nothing was collected for {ref}")
    return json.dumps(collected[ref])


def root_inputs(
    root_identifier: str,
    template_inputs: Mapping[str, Any],
    given: Mapping[str, str],
    store: Mapping[str, str],
    store_defaults: Mapping[str, str],
) -> dict[str, str]:
    """HEAD trigger: the root's template inputs, overridden per key by `given`, then rendered.

    Keys of `given` that the template does not have are ignored, as upstream.
    """
    merged = {key: given.get(key, value) for key, value in template_inputs.items()}
    return resolve_inputs(root_identifier, merged, {}, store, store_defaults)


def missing_store_keys(required: list[str], store: Mapping[str, str]) -> list[str]:
    return [key for key in required if key not in store]
