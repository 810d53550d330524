"""The `ApiClient` that `Runtime` and `StateManager` use: `_http.py`'s, with network errors that
name the server's address.

`_http.ApiClient` raises `TransportError("POST /v0/... failed: ConnectError: ...")`; a user
whose worker cannot connect wants to see *where* it tried. Every `TransportError` raised here
therefore starts with `could not reach the state manager at <base URL>: ` (a network failure or
a timeout) or names the server after the problem (an answer that could not be read). The type
and the chained cause stay what `_http.py` made them.
"""

from __future__ import annotations

from typing import Any

from ._http import ApiClient as _HttpApiClient
from .errors import TransportError

__all__ = ["ApiClient", "unreachable_message"]


class ApiClient(_HttpApiClient):
    """`_http.ApiClient`, with the server's address in every `TransportError`."""

    def __init__(self, *, base_url: str, **options: Any) -> None:
        super().__init__(base_url=base_url, **options)
        self.base_url = base_url

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().request(*args, **kwargs)
        except TransportError as exc:
            raise TransportError(_with_address(exc, self.base_url)) from exc.__cause__


def unreachable_message(base_url: str, cause: BaseException) -> str:
    """`could not reach the state manager at <url>: <ErrorType>: <message>`."""
    return f"could not reach the state manager at {base_url}: {type(cause).__name__}: {cause}"


def _with_address(exc: TransportError, base_url: str) -> str:
    message = str(exc)
    if base_url in message:
        return message
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, ValueError):  # not a body that failed to decode
        where = message.split(" failed:", 1)[0] if " failed:" in message else ""
        return unreachable_message(base_url, cause) + (f" ({where})" if where else "")
    return f"{message} (state manager at {base_url})"
