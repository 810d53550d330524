"""Domain errors raised by services. They know nothing of HTTP; `api/errors.py` maps them.

DomainError
├── NotFound          the thing named does not exist (in this namespace)   -> 404
├── BadRequest        the request contradicts stored state or rules       -> 400
│   └── InvalidGraph  structural graph problems, listed                   -> 400
├── InvalidTransition the state is not in a status that allows the call   -> 400
├── Forbidden         the caller's key may not do this (role, namespace)   -> 403
├── Conflict          a duplicate, or a fenced (re-delivered) worker      -> 409
├── TooLarge          a document would be over the store's size limit     -> 413
└── Unprocessable     a malformed value in the path or body               -> 422
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `detail` is the user-facing message; `code`, when set, a stable machine-readable
    name for the case (e.g. `STATE_CANCELLED`), sent next to it."""

    def __init__(self, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class NotFound(DomainError):
    pass


class BadRequest(DomainError):
    pass


class InvalidGraph(BadRequest):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("Error validating graph template: " + "; ".join(errors))
        self.errors = errors


class InvalidTransition(DomainError):
    pass


class Forbidden(DomainError):
    pass


class Conflict(DomainError):
    pass


class TooLarge(DomainError):
    pass


class Unprocessable(DomainError):
    pass
