"""Every route of `/openapi.json`, called with a key of each role, in the key's namespace and in
another: each answer is what the table of docs/access.md says (issue 19).

Allowed means the access check let it through (any answer but 401 and 403: a probe of an unknown
run is a 404 for a key that may read it); refused means a 403 naming the role or the namespace.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.state_manager.api.openapi_schema import example_values, operations

ROOT_DIR = Path(__file__).resolve().parents[3]
ROLES = ("viewer", "operator", "worker", "admin")
NS, OTHER = "web", "other"
UNKNOWN_ID = "0123456789abcdef01234567"
ROW = re.compile(r"^\| (GET|PUT|POST|DELETE) \| `([^`]+)` \| (\w+) \| (.+) \|$")


def _documented() -> dict[tuple[str, str], dict[str, str]]:
    """(method, path) -> role -> "yes", "with `*`" or "—", from docs/access.md."""
    table: dict[tuple[str, str], dict[str, str]] = {}
    for line in (ROOT_DIR / "docs" / "access.md").read_text().splitlines():
        if match := ROW.match(line):
            method, path, _, cells = match.groups()
            path = path.replace("…", "/v0/namespace/{namespace_name}")
            table[(method, path)] = dict(zip(ROLES, [cell.strip() for cell in cells.split("|")], strict=True))
    return table


async def _key(client: httpx.AsyncClient, role: str, namespaces: list[str]) -> str:
    body = {
        "name": f"{role}-{'all' if namespaces == ['*'] else namespaces[0]}",
        "role": role,
        "namespaces": namespaces,
    }
    answer = await client.post("/v0/keys", json=body)
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


def _path(template: str, namespace: str) -> str:
    values = {
        "namespace_name": namespace,
        "graph_name": "no-such-graph",
        "run_id": "no-such-run",
        "state_id": UNKNOWN_ID,
        "node_id": UNKNOWN_ID,
        "page": "1",
        "size": "10",
        "a": "no-such-run",
        "b": "no-such-run",
        "key_id": "0123456789abcdef",
    }
    return template.format(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"implicit_wait_ms": 0}


async def test_every_route_answers_each_role_as_docs_access_md_says(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    table = _documented()
    keys = {role: await _key(client, role, [NS]) for role in ROLES}
    everywhere = await _key(client, "admin", ["*"])
    wrong: list[str] = []
    checked = 0
    for op in operations(document):
        if not op.path.startswith("/v0/") or op.path.startswith("/v0/db-commands"):
            continue
        expected = table.get((op.method, op.path))
        if expected is None:
            wrong.append(f"{op}: not in the table of docs/access.md")
            continue
        body = next(iter(example_values(op).values()), {}) if "requestBody" in op.spec else None
        if op.path.endswith("/states/enqueue"):
            body = {**(body or {}), "wait_ms": 0}  # the example long-polls
        namespaced = "{namespace_name}" in op.path
        calls = [(role, keys[role], NS, expected[role] == "yes") for role in ROLES]
        calls.append(("admin of *", everywhere, NS, expected["admin"] in ("yes", "with `*`")))
        if namespaced:
            calls += [(f"{role} elsewhere", keys[role], OTHER, False) for role in ROLES]
        for who, key, namespace, allowed in calls:
            answer = await client.request(
                op.method, _path(op.path, namespace), json=body, headers={"x-api-key": key}
            )
            checked += 1
            if allowed and answer.status_code in (401, 403):
                wrong.append(
                    f"{op} as {who} in {namespace}: refused {answer.status_code} {answer.text[:200]}"
                )
            if not allowed and answer.status_code != 403:
                wrong.append(f"{op} as {who} in {namespace}: {answer.status_code}, not 403")
            if not allowed and answer.status_code == 403:
                message = answer.json()["detail"]
                if "may not" not in message or (namespace == OTHER and OTHER not in message):
                    wrong.append(f"{op} as {who} in {namespace}: the 403 does not say why: {message}")
    assert not wrong, "\n".join(wrong)
    assert checked > 300  # every route, every role, in and out of its namespace


async def test_the_table_lists_no_route_the_server_does_not_have(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    served = {(op.method, op.path) for op in operations(document)}
    assert set(_documented()) <= served
