"""What every request body must be before any of it is stored.

JSON allows things the store cannot hold: a lone surrogate (`"\\ud800"`) cannot be encoded as
UTF-8, a NUL cannot be part of a field name, and an integer beyond 64 bits has no BSON type.
`RequestBody` refuses them (422, naming the field) before a handler runs, so a bad request can
never fail half-way through its writes. `check_field_names` refuses user keys that would become
field paths (see `domain/names.py`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from state_manager.domain.names import field_name_problem

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def unstorable(value: Any, path: str = "body") -> str | None:
    """Why `value` (decoded JSON) cannot be stored, naming the field, or None."""
    if isinstance(value, str):
        return None if _encodes(value) else f"{path}: text is not valid Unicode (a lone surrogate)"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return f"{path}: the integer {str(value)[:30]} does not fit in 64 bits"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if _encodes(key) else f"{path}.<key>"
            if not _encodes(key):
                return f"{where}: a field name is not valid Unicode (a lone surrogate)"
            if "\x00" in key:
                return f"{path}: the field name {key!r} contains a NUL character"
            if problem := unstorable(item, where):
                return problem
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if problem := unstorable(item, f"{path}[{index}]"):
                return problem
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_field_names(keys: Any, where: str) -> None:
    """Raise ValueError naming the first key of `keys` that cannot be a field name."""
    for key in keys:
        if problem := field_name_problem(key):
            raise ValueError(f"{where} key {key!r} {problem}")


class RequestBody(BaseModel):
    """Base of every request body: unknown fields are ignored (as upstream), unstorable values
    are refused."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        if problem := unstorable(data):
            raise ValueError(problem)
        return data
