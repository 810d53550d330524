"""Reading an OpenAPI document in tests: its operations, their examples and schemas, and a small
checker of a JSON value against a schema (the subset pydantic writes: `$ref`, `type`, `anyOf`,
`const`, `enum`, `properties`, `required`, `additionalProperties`, `items`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: Json

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(document: Json) -> list[Operation]:
    return [
        Operation(method.upper(), path, spec)
        for path, item in document["paths"].items()
        for method, spec in item.items()
    ]


def example_values(op: Operation) -> dict[str, Any]:
    """The named request examples of an operation: name -> value."""
    media = op.spec.get("requestBody", {}).get("content", {}).get("application/json", {})
    return {name: example["value"] for name, example in media.get("examples", {}).items()}


def documented_body_schema(op: Operation, code: str) -> Json:
    response = op.spec["responses"].get(code, {})
    schema: Json = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema


def resolve(document: Json, schema: Json) -> Json:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def success_schema(document: Json, op: Operation) -> tuple[Json, str | None]:
    """The schema of the operation's 2xx JSON answer, and what is wrong with it (or None): it
    must name a model with properties, not be a bare object. A non-JSON answer (metrics text)
    needs only its media type."""
    codes = [code for code in op.spec["responses"] if code.startswith("2")]
    if not codes:
        return {}, "no 2xx response"
    content = op.spec["responses"][codes[0]].get("content", {})
    if "application/json" not in content:
        return {}, None if content else "a 2xx response without a media type"
    schema: Json = content["application/json"].get("schema", {})
    if "$ref" not in schema or not resolve(document, schema).get("properties"):
        return schema, f"the {codes[0]} answer is not a response model: {str(schema)[:80]}"
    return schema, None


def mismatches(document: Json, value: Any, schema: Json, where: str = "body") -> list[str]:
    """Where `value` does not fit `schema`, as readable lines (empty when it fits)."""
    schema = resolve(document, schema)
    if "anyOf" in schema:
        options = [mismatches(document, value, option, where) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else min(options, key=len)
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        return [f"{where}: {str(value)[:60]!r} is not of type {kind}"]
    if isinstance(value, dict):
        return _object_mismatches(document, value, schema, where)
    if isinstance(value, list) and "items" in schema:
        return [
            p
            for i, item in enumerate(value)
            for p in mismatches(document, item, schema["items"], f"{where}[{i}]")
        ]
    return []


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[kind])


def _object_mismatches(document: Json, value: Json, schema: Json, where: str) -> list[str]:
    properties: Json = schema.get("properties", {})
    problems = [f"{where}: {key!r} is missing" for key in schema.get("required", []) if key not in value]
    extra = schema.get("additionalProperties", not properties)
    for key, item in value.items():
        if key in properties:
            problems += mismatches(document, item, properties[key], f"{where}.{key}")
        elif extra is False:
            problems.append(f"{where}: {key!r} is not documented")
        elif isinstance(extra, dict):
            problems += mismatches(document, item, extra, f"{where}.{key}")
    return problems
