"""Placeholders inside node input strings: parsing and substitution.

Two forms are recognised (whitespace around each dot-separated part is allowed):

- ``${{ <identifier>.outputs.<field> }}``: a field of an ancestor node's outputs;
- ``${{ store.<key> }}``: a value of the run store;
- ``${{ <identifier>.outputs.<field>[*] }}`` (in a join's inputs only): that field of every
  successful state of that identifier in the join's scope, as a JSON array, in fan-out order.

The text is split on ``${{``; each following chunk must contain ``}}``. The content up to the first
``}}`` is the reference and the rest of the chunk is literal text. There is no escaping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

OPEN = "${{"
CLOSE = "}}"
STORE = "store"
OUTPUTS = "outputs"


class PlaceholderError(ValueError):
    """An input string holds a malformed placeholder, or a placeholder cannot be resolved."""


COLLECT = "[*]"


@dataclass(frozen=True)
class OutputRef:
    """``${{ identifier.outputs.field }}``, or with ``collect`` ``${{ identifier.outputs.field[*] }}``."""

    identifier: str
    field: str
    collect: bool = False

    def __str__(self) -> str:
        suffix = COLLECT if self.collect else ""
        return f"{OPEN} {self.identifier}.{OUTPUTS}.{self.field}{suffix} {CLOSE}"


@dataclass(frozen=True)
class StoreRef:
    """``${{ store.key }}``."""

    key: str

    def __str__(self) -> str:
        return f"{OPEN} {STORE}.{self.key} {CLOSE}"


Ref = OutputRef | StoreRef


def parse_template(text: str) -> list[str | Ref]:
    """Split ``text`` into literal parts and references, in order.

    The result alternates strictly: it starts and ends with a literal (possibly empty) and has a
    reference between each two literals. A text without ``${{`` gives ``[text]``.
    """
    head, *chunks = text.split(OPEN)
    parts: list[str | Ref] = [head]
    for chunk in chunks:
        if CLOSE not in chunk:
            raise PlaceholderError(f"Placeholder '{OPEN}' not closed with '{CLOSE}' in input string {text!r}")
        content, tail = chunk.split(CLOSE, 1)
        parts.append(_parse_ref(content, text))
        parts.append(tail)
    return parts


def find_refs(text: str) -> list[Ref]:
    """Every reference in ``text``, in order of appearance (repeats included)."""
    return [part for part in parse_template(text) if not isinstance(part, str)]


def render(text: str, resolve: Callable[[Ref], str]) -> str:
    """Replace every placeholder in ``text`` by ``resolve(ref)``.

    ``resolve`` may raise :class:`PlaceholderError`; a non-string value is refused the same way.
    """
    pieces: list[str] = []
    for part in parse_template(text):
        if isinstance(part, str):
            pieces.append(part)
            continue
        value = resolve(part)
        if not isinstance(value, str):
            raise PlaceholderError(
                f"Placeholder '{part}' in input string {text!r} resolved to a "
                f"{type(value).__name__}, not a string"
            )
        pieces.append(value)
    return "".join(pieces)


def _parse_ref(content: str, text: str) -> Ref:
    parts = [part.strip() for part in content.split(".")]
    if len(parts) == 2 and parts[0] == STORE and parts[1]:
        return StoreRef(key=parts[1])
    if len(parts) == 3 and parts[1] == OUTPUTS and parts[0] and parts[2]:
        field = parts[2]
        collect = field.replace(" ", "").endswith(COLLECT)
        if collect:
            field = field.replace(" ", "")[: -len(COLLECT)]
        if field and "[" not in field and "]" not in field:
            return OutputRef(identifier=parts[0], field=field, collect=collect)
    raise PlaceholderError(
        f"Invalid placeholder '{OPEN}{content}{CLOSE}' in input string {text!r}: expected "
        f"'{OPEN} <identifier>.{OUTPUTS}.<field> {CLOSE}', "
        f"'{OPEN} <identifier>.{OUTPUTS}.<field>{COLLECT} {CLOSE}' or '{OPEN} {STORE}.<key> {CLOSE}'"
    )
