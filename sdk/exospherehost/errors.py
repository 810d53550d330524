"""Exceptions raised by the SDK.

The hierarchy:

```
ExosphereError
├── StateManagerError              the server answered with a non-2xx status
│   ├── BadRequestError            400, 422: the request was refused as invalid
│   ├── AuthenticationError        401: missing, wrong, revoked or expired API key
│   ├── PermissionDeniedError      403: the key's role or namespaces do not allow the call
│   ├── NotFoundError              404: no such graph, state, run, ...
│   ├── ConflictError              409: e.g. the state's lease was lost, a duplicate report
│   ├── PayloadTooLargeError       413: the request, or a document it creates, is too large
│   └── ServerError                5xx: the server failed; usually worth retrying
├── TransportError                 no usable answer: a timeout, a dropped connection, bad JSON
│   └── ServerUnreachableError     no connection at all: refused, unknown host, connect timeout
├── InvalidURLError                the state manager URL is not http(s)://host (also a ValueError)
└── GraphValidationError           upsert_graph: the graph is INVALID or validation timed out
```

Catch `ExosphereError` to handle everything the SDK raises on purpose. A `ValueError` is
raised instead for a mistake in the arguments themselves (before anything is sent).

The message (`str(error)`) of a network failure, a refused key (401) or a bad URL is one line
that names the server's address, e.g. `cannot reach the state manager at http://127.0.0.1:8000:
connection refused`. The httpx / aiohttp exception behind a network failure is kept as
`__context__` but not chained as `__cause__`, so that a traceback does not print it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "STATE_CANCELLED",
    "STATE_TIMED_OUT",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ExosphereError",
    "GraphValidationError",
    "InvalidURLError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ServerError",
    "ServerUnreachableError",
    "StateManagerError",
    "TransportError",
]

STATE_CANCELLED = "STATE_CANCELLED"
"""The `code` of a 409 about a state whose run was cancelled (`StateManager.cancel_run`)."""

STATE_TIMED_OUT = "STATE_TIMED_OUT"
"""The `code` of a 409 about a state whose attempt the server failed at its node's timeout."""


class ExosphereError(Exception):
    """Base class of every exception the SDK raises on purpose."""


class StateManagerError(ExosphereError):
    """The state manager answered with a non-2xx status.

    Attributes:
        status_code: The HTTP status code of the response.
        detail: The server's `detail` field (a string, or FastAPI's list of validation errors),
            or the raw response text when the body was not the usual JSON error object.
        method: The HTTP method of the failed request.
        path: The URL path of the failed request.
        code: The machine-readable `code` the server sent next to `detail` (e.g.
            `"STATE_CANCELLED"`), or None when it sent none (an upstream server never does).
        url: The state manager's base URL, or "" when not known.
    """

    def __init__(
        self,
        status_code: int,
        detail: Any,
        *,
        method: str = "",
        path: str = "",
        code: str | None = None,
        url: str = "",
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.path = path
        self.code = code
        self.url = url
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        return f"{self.status_code}{where}: {format_detail(self.detail)}"


class BadRequestError(StateManagerError):
    """The server refused the request as invalid (400, or 422 for a schema violation)."""


class PermissionDeniedError(StateManagerError):
    """The key is valid, but its role or namespaces do not allow this call (403, our server's
    scoped keys): the message names the role, the operation and the namespace."""


class AuthenticationError(StateManagerError):
    """The API key is missing or wrong (401).

    The message names the server: `the state manager at <url> rejected the API key: 401 (...)`.
    """

    def _message(self) -> str:
        where = f"the state manager at {self.url}" if self.url else "the state manager"
        return f"{where} rejected the API key: {super()._message()}"


class NotFoundError(StateManagerError):
    """The graph, state or run does not exist in this namespace (404)."""


class ConflictError(StateManagerError):
    """The request conflicts with the current state (409).

    The runtime sees this when a state's lease was lost (the work was handed to another
    runtime), when a report is repeated after the server already recorded one, or when the
    server ended the attempt: `code` is then `"STATE_CANCELLED"` (its run was cancelled) or
    `"STATE_TIMED_OUT"` (the node's `timeout_seconds` passed). Cancelling a run that already
    ended is a 409 as well.
    """


class PayloadTooLargeError(StateManagerError):
    """The server refused the request as too large (413).

    E.g. an `executed` report whose outputs would make a document larger than the store allows,
    or a request body over the server's cap; `detail` says which. The runtime then reports the
    state as errored, so the graph's retry policy decides what happens next.
    """


class ServerError(StateManagerError):
    """The server failed while handling the request (5xx). Usually transient."""


class TransportError(ExosphereError):
    """No usable answer from the server: connection error, timeout, or an unreadable body.

    The message is one line naming the server's address. The underlying exception (an
    `httpx.HTTPError`, or a JSON decoding error) is kept as `__context__`, not printed.
    """


class ServerUnreachableError(TransportError):
    """No connection to the server at all: refused, unknown host, TLS or connect failure.

    Attributes:
        url: The state manager's base URL.
        reason: What happened, e.g. `"connection refused"`.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the state manager at {url}: {reason}")


class InvalidURLError(ExosphereError, ValueError):
    """The state manager URL is not an `http://` or `https://` URL with a host.

    Raised by the first call (a `ValueError` as well: a mistake in the arguments).

    Attributes:
        url: The URL as given.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"the state manager URL {url!r} is not an http:// or https:// URL with a host")


class GraphValidationError(ExosphereError):
    """`StateManager.upsert_graph` could not get the graph validated.

    Attributes:
        validation_status: The last status the server reported (e.g. `"INVALID"`, or
            `"PENDING"` when the wait timed out).
        validation_errors: The server's list of validation errors, if any.
    """

    def __init__(self, message: str, *, validation_status: str, validation_errors: list[Any]) -> None:
        self.validation_status = validation_status
        self.validation_errors = validation_errors
        super().__init__(message)


_ERRORS_BY_STATUS: dict[int, type[StateManagerError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: BadRequestError,
}


def error_for_status(
    status_code: int,
    detail: Any,
    *,
    method: str = "",
    path: str = "",
    code: str | None = None,
    url: str = "",
) -> StateManagerError:
    """Build the `StateManagerError` subclass that matches an HTTP status code.

    `code` is the error body's machine-readable `"code"`, if it had one; `url` the server's.
    """
    if status_code >= 500:
        cls: type[StateManagerError] = ServerError
    else:
        cls = _ERRORS_BY_STATUS.get(status_code, StateManagerError)
    return cls(status_code, detail, method=method, path=path, code=code, url=url)


def format_detail(detail: Any) -> str:
    """Render a `detail` field readably; FastAPI validation lists become `loc: msg` lines."""
    if isinstance(detail, list):
        return "; ".join(_format_validation_item(item) for item in detail)
    return str(detail)


def _format_validation_item(item: Any) -> str:
    if isinstance(item, dict) and "msg" in item:
        loc = ".".join(str(part) for part in item.get("loc", ()))
        return f"{loc}: {item['msg']}" if loc else str(item["msg"])
    return str(item)
