"""What the API reference says beyond the routes themselves: the tags, the introduction, the
error responses, and the finishing pass over the generated document.

Routers declare the errors particular to an operation with `errors(400, 404, 409)`. The answers
the request guard gives every `/v0` call (401 for the key, 413 for the body size) and the body
shape of every 4xx are added by `complete_reference`, since one middleware and one error table
produce them for all routes alike.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel

from state_manager.api.guard import PROTECTED_PREFIX
from state_manager.schemas.errors import ErrorBody, ValidationErrorBody

USER_TAGS = ("graphs", "runs", "nodes")
WORKER_TAG = "worker protocol"
SERVER_TAGS = ("keys", "health", "monitoring", "debug")

TAGS: list[dict[str, Any]] = [
    {
        "name": "graphs",
        "description": "Graph templates: nodes wired by `next_nodes`, inputs that reference parents' "
        "outputs (`${{ a.outputs.y }}`) and the run store (`${{ store.key }}`), the graph's "
        "**secrets** (stored encrypted; answers name them, never show them), retry policy, store "
        "config and cron triggers. An upsert is validated at once.",
    },
    {
        "name": "runs",
        "description": "Start runs (trigger, SEED's states/create), follow them (runs, their states, "
        "the graph with status counts, queue health) and steer them (cancel, retry failed states).",
    },
    {
        "name": "nodes",
        "description": "What runtimes have registered: the nodes of a namespace with their input and "
        "output schemas and secret names, and the namespaces that have any.",
    },
    {
        "name": WORKER_TAG,
        "description": "The calls a runtime makes, as the SDKs do: register its nodes, claim due "
        "states (`states/enqueue`, a long-poll with `wait_ms`), report each one executed or "
        "errored, signal prune or re-enqueue-after, extend its lease (heartbeat) and read the "
        "graph's secrets while it holds a state. Send the `claim_token` of the claim as "
        "`x-exosphere-claim-token` on every call about a state: a call from an earlier holder "
        "is then refused with 409 and changes nothing.",
    },
    {
        "name": "keys",
        "description": "Scoped API keys: a role (viewer, operator, worker, admin) in some "
        "namespaces, made, listed and revoked by the root key or an admin of all namespaces "
        "(`docs/access.md`).",
    },
    {"name": "health", "description": "Liveness, without a key."},
    {
        "name": "monitoring",
        "description": "Prometheus metrics of this replica (`docs/metrics.md`).",
    },
    {
        "name": "debug",
        "description": "Database command counts, for benchmarks. Mounted only when "
        "`COUNT_DB_COMMANDS` is on.",
    },
]

API_DESCRIPTION = """\
The v0 API of the Exosphere state manager: the user API (graphs, runs, registered nodes) and the
worker protocol that runtimes speak. Both public eras of the official SDK (0.0.2b1 and 0.0.3)
work against it unchanged.

**Key.** Every `/v0` call needs the header `x-api-key`: the server's key (`STATE_MANAGER_SECRET`,
root: everything) or a scoped key (`exo_...`, made with `POST /v0/keys`: a role in some
namespaces). Without a valid key a call is refused with 401 before its body is read; a key whose
role or namespaces do not allow the call gets 403 naming the role, the operation and the
namespace (`docs/access.md`). Use **Authorize** above to set it here.

**Errors** are `{"detail": "<message>"}`, with a `code` next to it for the cases a client may
handle (`STATE_CANCELLED`, `STATE_TIMED_OUT`). A malformed request is a 422 listing each bad
field; the values sent are never echoed. A body over `MAX_REQUEST_BYTES` is a 413. A bug is a 500
`{"success": false, "detail": "internal server error"}`, logged with the request id.

**Request id.** Every answer carries `x-exosphere-request-id` (yours, if you sent a UUID).

**Times** are epoch milliseconds unless a field is named `*_at` (ISO 8601).
"""

_DEFAULT_DESCRIPTIONS = {
    400: "The request contradicts the stored state or a rule; the message says which",
    401: "Missing, wrong, revoked or expired `x-api-key`",
    403: "The key's role or namespaces do not allow this call (docs/access.md); the message names them",
    404: "Not found in this namespace",
    409: "A conflict with the current state; the message says which",
    413: "The request body is over `MAX_REQUEST_BYTES` (refused before it is parsed)",
    422: "The request is malformed: each bad field is named",
}

_EXAMPLES: dict[int, dict[str, Any]] = {
    401: {"detail": "Invalid API key"},
    403: {"detail": "Key 'dashboard' has role viewer, which may not cancel a run in namespace web"},
    413: {
        "detail": "Request body is 9000000 bytes, over this server's limit of 8388608 bytes "
        "(MAX_REQUEST_BYTES)"
    },
    422: {"detail": [{"type": "missing", "loc": ["body", "nodes"], "msg": "Field required"}]},
}


def _body_model(code: int) -> type[BaseModel]:
    return ValidationErrorBody if code == 422 else ErrorBody


def error(code: int, description: str, example: dict[str, Any] | None = None) -> dict[int | str, Any]:
    """One documented error answer, with the body model; for `responses=`."""
    entry: dict[str, Any] = {"model": _body_model(code), "description": description}
    if example is not None:
        entry["content"] = {"application/json": {"example": example}}
    return {code: entry}


def errors(*codes: int, **descriptions: str) -> dict[int | str, Any]:
    """The `responses=` of an operation: each code with the error body and a description.

    A description particular to the operation is passed as `e404="No such graph"`.
    """
    table: dict[int | str, Any] = {}
    for code in codes:
        description = descriptions.pop(f"e{code}", _DEFAULT_DESCRIPTIONS.get(code, "Refused"))
        table |= error(code, description, _EXAMPLES.get(code))
    if descriptions:
        raise ValueError(f"descriptions for codes not listed: {sorted(descriptions)}")
    return table


# ---------------------------------------------------------------- the finishing pass

_SCHEMA_REF = "#/components/schemas/{model}"
_JSON = "application/json"
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")


def _model_schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model in (ErrorBody, ValidationErrorBody):
        schema = model.model_json_schema(ref_template=_SCHEMA_REF, mode="serialization")
        found |= schema.pop("$defs", {})
        found[model.__name__] = schema
    return found


def _ref(code: int) -> dict[str, Any]:
    return {"$ref": _SCHEMA_REF.format(model=_body_model(code).__name__)}


def _finish_errors(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if path.startswith(PROTECTED_PREFIX):
        responses.setdefault("401", {"description": _DEFAULT_DESCRIPTIONS[401]})
        responses.setdefault("403", {"description": _DEFAULT_DESCRIPTIONS[403]})
        if "requestBody" in operation:
            responses.setdefault("413", {"description": _DEFAULT_DESCRIPTIONS[413]})
    for code, response in responses.items():
        if not (code.isdigit() and 400 <= int(code) < 500):
            continue
        media = response.setdefault("content", {}).setdefault(_JSON, {})
        schema = media.get("schema", {})
        if not schema or schema.get("$ref", "").rsplit("/", 1)[-1] in _FASTAPI_422:
            media["schema"] = _ref(int(code))
        if int(code) in _EXAMPLES and "example" not in media and "examples" not in media:
            media["example"] = _EXAMPLES[int(code)]
    operation["responses"] = dict(sorted(responses.items()))


def _used_refs(document: Any) -> set[str]:
    found: set[str] = set()
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.add(ref.rsplit("/", 1)[-1])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _reachable(document: dict[str, Any]) -> set[str]:
    """The component schemas the operations refer to, directly or through other schemas."""
    schemas = document["components"]["schemas"]
    found = _used_refs({key: value for key, value in document.items() if key != "components"})
    todo = set(found)
    while todo:
        more = _used_refs(schemas.get(todo.pop(), {})) - found
        found |= more
        todo |= more
    return found


def _tag_groups(document: dict[str, Any]) -> list[dict[str, Any]]:
    """ReDoc's `x-tagGroups`: the user API apart from the worker protocol. A tag no group names
    goes to "Other", since ReDoc hides the operations of ungrouped tags."""
    used = {tag for item in document.get("paths", {}).values() for op in item.values() for tag in op["tags"]}
    groups = [
        {"name": "User API", "tags": [t for t in USER_TAGS if t in used]},
        {"name": "Worker protocol", "tags": [WORKER_TAG] if WORKER_TAG in used else []},
        {"name": "Server", "tags": [t for t in SERVER_TAGS if t in used]},
    ]
    named = {tag for group in groups for tag in group["tags"]}
    groups.append({"name": "Other", "tags": sorted(used - named)})
    return [group for group in groups if group["tags"]]


def complete_reference(document: dict[str, Any]) -> dict[str, Any]:
    """Finish FastAPI's OpenAPI document in place: the guard's 401 and 413 on every `/v0`
    operation, our error body on every 4xx (replacing FastAPI's own 422 shape, which is not
    what this server answers), and ReDoc's tag groups."""
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            operation.setdefault("tags", ["Other"])
            _finish_errors(path, operation)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_model_schemas())
    for name in _FASTAPI_422:
        if name not in _reachable(document):
            schemas.pop(name, None)
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    document["x-tagGroups"] = _tag_groups(document)
    return document


# ---------------------------------------------------------------- path parameters

NamespacePath = Annotated[
    str,
    Path(
        description="The namespace: where graphs, runs and registered nodes live",
        openapi_examples={"examples": {"summary": "The examples' namespace", "value": "examples"}},
    ),
]

GraphNamePath = Annotated[
    str,
    Path(
        description="The graph template's name, unique in its namespace",
        openapi_examples={"example": {"summary": "The example graph", "value": "summarise-page"}},
    ),
]
