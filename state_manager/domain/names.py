"""User text that becomes a MongoDB field name: node identifiers (keys of `parents`, parts of
query paths such as `parents.<identifier>`), store keys, and the keys of inputs and outputs.

A `.` would turn the name into a nested path, a leading `$` into an operator, and a NUL cannot
be stored at all, so such names are refused where they enter (DESIGN §4).
"""

from __future__ import annotations


def field_name_problem(name: str) -> str | None:
    """Why `name` cannot be a field name, or None when it can."""
    if not name:
        return "must not be empty"
    if "." in name:
        return "must not contain '.'"
    if name.startswith("$"):
        return "must not start with '$'"
    if "\x00" in name:
        return "must not contain a NUL character"
    return None
