"""Reading what the user hands the CLI: `k=v` pairs, JSON/YAML files, `${ENV}` secrets, times.

Durations are read by `durations.py`.

Every problem here is a usage error (exit 2) that names the option or file at fault.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import click
import yaml

from .durations import parse_duration

__all__ = [
    "load_document",
    "parse_node_pairs",
    "parse_pairs",
    "parse_since",
    "string_map",
    "substitute_secrets",
]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> `{"a": "1", "b": "x=y"}` (split at the first `=`)."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        parsed[key.strip()] = value
    return parsed


def parse_node_pairs(pairs: Sequence[str], option: str) -> dict[str, dict[str, str]]:
    """`["draft.prompt=Be brief", "draft.tone=a=b"]` -> `{"draft": {"prompt": "Be brief", "tone": "a=b"}}`
    (split at the first `=`, then the key at its first `.`: identifiers and fields have none)."""
    parsed: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        node, dot, name = key.strip().partition(".")
        if not sep or not dot or not node.strip() or not name.strip():
            raise click.BadParameter(f"expected NODE.FIELD=VALUE, got {pair!r}", param_hint=option)
        parsed.setdefault(node.strip(), {})[name.strip()] = value
    return parsed


def load_document(source: IO[str], what: str) -> dict[str, Any]:
    """A JSON or YAML file (an open click file) that must hold one mapping."""
    name = getattr(source, "name", "-")
    text = source.read()
    try:
        data = json.loads(text) if str(name).endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{name} is not valid JSON or YAML: {exc}", param_hint=what) from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{name} should hold a mapping (an object)", param_hint=what)
    return data


def string_map(data: Mapping[str, Any], what: str) -> dict[str, str]:
    """Values as strings: numbers are written out, anything else (lists, null, booleans) refused."""
    converted: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, str):
            converted[str(key)] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            converted[str(key)] = str(value)
        else:
            raise click.BadParameter(
                f"{key!r} should be a string, got {type(value).__name__}", param_hint=what
            )
    return converted


def substitute_secrets(secrets: Any, what: str) -> Any:
    """Replace each `${NAME}` in the secret values with the environment variable `NAME`.

    Raises:
        click.UsageError: Naming the secret and the variable, when a variable is not set.
    """
    if not isinstance(secrets, dict):
        return secrets  # the server says what is wrong with it
    resolved: dict[str, Any] = {}
    for name, value in secrets.items():
        resolved[name] = _resolve(value, name, what) if isinstance(value, str) else value
    return resolved


def _resolve(value: str, secret: str, what: str) -> str:
    return _ENV_REFERENCE.sub(lambda match: _env(match.group(1), secret, what), value)


def _env(variable: str, secret: str, what: str) -> str:
    value = os.environ.get(variable)
    if value is None:
        raise click.UsageError(
            f"{what}: secret {secret!r} refers to ${{{variable}}}, but the environment variable "
            f"{variable} is not set"
        )
    return value


def parse_since(value: str | None, option: str = "--since") -> str | None:
    """A duration before now (`30m`, `1h30m`, `1d`), epoch milliseconds, or an ISO 8601 time ->
    epoch ms.

    ISO times without a zone are taken as local time.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return value
    try:
        seconds = parse_duration(value, bare_unit=None)
    except ValueError:
        pass
    else:
        return str(int((time.time() - seconds) * 1000))
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"expected a duration like 30m, 1h30m, 1d, epoch milliseconds or an ISO 8601 time, got {value!r}",
            param_hint=option,
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as a user typing a time means
    return str(int(parsed.astimezone(UTC).timestamp() * 1000))
