"""Request examples of the API reference, shown by Swagger UI and ReDoc.

They tell one story and work as given, in this order, on a fresh server: a runtime registers
`Fetch` and `Summarise`; the graph `summarise-page` wires them; either trigger form starts a run;
a worker claims the `Fetch` states and reports or signals them. `tests/state_manager/api/
test_openapi.py` sends each one, as the reference shows it, to a server.
"""

from __future__ import annotations

from typing import Any

from fastapi.openapi.models import Example

Json = dict[str, Any]


def _schema(title: str, *fields: str) -> Json:
    return {
        "title": title,
        "type": "object",
        "properties": {name: {"title": name.title(), "type": "string"} for name in fields},
        "required": list(fields),
    }


REGISTER_NODES: dict[str, Example] = {
    "runtime": Example(
        summary="A runtime with two nodes",
        value={
            "runtime_name": "page-workers",
            "nodes": [
                {
                    "name": "Fetch",
                    "inputs_schema": _schema("Inputs", "url"),
                    "outputs_schema": _schema("Outputs", "page"),
                    "secrets": [],
                },
                {
                    "name": "Summarise",
                    "inputs_schema": _schema("Inputs", "text", "language"),
                    "outputs_schema": _schema("Outputs", "summary"),
                    "secrets": ["openai_api_key"],
                },
            ],
        },
    )
}

UPSERT_GRAPH: dict[str, Example] = {
    "chain": Example(
        summary="Fetch a page, then summarise it",
        description="Uses the nodes of the node-registration example (namespace `examples`).",
        value={
            "secrets": {"openai_api_key": "sk-replace-me"},
            "nodes": [
                {
                    "node_name": "Fetch",
                    "namespace": "examples",
                    "identifier": "fetch",
                    "inputs": {"url": "https://example.com"},
                    "next_nodes": ["summarise"],
                },
                {
                    "node_name": "Summarise",
                    "namespace": "examples",
                    "identifier": "summarise",
                    "inputs": {"text": "${{ fetch.outputs.page }}", "language": "${{ store.language }}"},
                    "next_nodes": [],
                    "timeout_seconds": 300,
                },
            ],
            "retry_policy": {"max_retries": 3, "strategy": "EXPONENTIAL", "backoff_factor": 2000},
            "store_config": {"required_keys": [], "default_values": {"language": "en"}},
        },
    )
}

TRIGGER: dict[str, Example] = {
    "head": Example(
        summary="HEAD form: start the root node",
        description="SDK 0.0.3. `inputs` override the root's template inputs; `store` fills the run "
        "store; the first state is due after `start_delay` ms.",
        value={"inputs": {"url": "https://example.org/news"}, "store": {"language": "fr"}, "start_delay": 0},
    ),
    "seed": Example(
        summary="SEED form: start the nodes named",
        description="SDK 0.0.2b1. Each entry starts one template node with the inputs given. Do not "
        "mix it with `inputs`: a body with `states` is a SEED trigger.",
        value={"states": [{"identifier": "fetch", "inputs": {"url": "https://example.org/blog"}}]},
    ),
}

CREATE_STATES: dict[str, Example] = {
    "seed": Example(
        summary="Add a state to a run you name",
        value={
            "run_id": "nightly-2025-01-31",
            "states": [{"identifier": "fetch", "inputs": {"url": "https://example.org/archive"}}],
        },
    )
}

ENQUEUE: dict[str, Example] = {
    "long_poll": Example(
        summary="Claim up to 10 Fetch states, waiting up to 5 s for one",
        value={"nodes": ["Fetch"], "batch_size": 10, "wait_ms": 5000},
    )
}

EXECUTED: dict[str, Example] = {
    "one_output": Example(summary="One output", value={"outputs": [{"page": "<html>...</html>"}]}),
    "fan_out": Example(
        summary="Two outputs: the next nodes run once for each",
        value={"outputs": [{"page": "<html>part 1</html>"}, {"page": "<html>part 2</html>"}]},
    ),
}

ERRORED: dict[str, Example] = {
    "failure": Example(value={"error": "TimeoutError: example.org did not answer within 30 s"}),
    "with_details": Example(
        summary="The whole error (what this SDK sends)",
        value={
            "error": "example.org did not answer within 30 s",
            "details": {
                "type": "builtins.TimeoutError",
                "traceback": 'Traceback (most recent call last):\n  File "fetch.py", line 12, in execute\n'
                "TimeoutError: example.org did not answer within 30 s\n",
                "logs": ["INFO fetch: GET https://example.org/ (attempt 1)"],
            },
        },
    ),
}

PRUNE: dict[str, Example] = {"prune": Example(value={"data": {"reason": "the page did not change"}})}

RE_ENQUEUE_AFTER: dict[str, Example] = {
    "one_minute": Example(summary="Run it again in a minute", value={"enqueue_after": 60000})
}

MANUAL_RETRY: dict[str, Example] = {
    "retry": Example(summary="An operator's retry", value={"fanout_id": "operator-retry-1"})
}

FORK_RUN: dict[str, Example] = {
    "edited_input": Example(
        summary="Summarise again in another language",
        description="Reuses the `fetch` state of the run (not fetched again) and runs `summarise` "
        "again with its `language` input replaced.",
        value={"from": ["summarise"], "inputs": {"summarise": {"language": "de"}}},
    ),
    "current_graph": Example(
        summary="Run everything again on the current graph version",
        value={"from": ["fetch"], "store": {"language": "es"}, "graph_version": "current"},
    ),
}

FORK_FAILED: dict[str, Example] = {
    "last_night": Example(
        summary="Run last night's failures again on the fixed graph",
        value={"graph": "summarise-page", "since": "2026-12-06T18:00:00Z", "until": "2026-12-07T06:00:00Z"},
    )
}

CREATE_KEY: dict[str, Example] = {
    "worker": Example(
        summary="A runtime's key: the worker calls in one namespace",
        value={"name": "web-runtime", "role": "worker", "namespaces": ["web"]},
    ),
    "dashboard": Example(
        summary="A support engineer's dashboard: read everything, for 90 days",
        value={
            "name": "support",
            "role": "viewer",
            "namespaces": ["*"],
            "expires_at": "2027-03-07T00:00:00Z",
        },
    ),
}
