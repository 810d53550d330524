"""Records every audited API call in the audit log once it has been answered (pure ASGI).

The access check (api/access.py) marks an audited call in the request's state (its action,
namespace and target) before the route runs, also when it refuses it; this middleware writes the
record with the answer's status code after the answer has been sent, so the caller never waits
for it.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state_manager.observability import current_request_id
from state_manager.services import audit


class AuditTrail:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            marked: dict[str, Any] | None = scope.get("state", {}).get("audit")
            if marked is not None:
                client = scope.get("client")
                await audit.record(
                    marked["principal"],
                    marked["action"],
                    status[0] if status else 500,
                    namespace=marked.get("namespace"),
                    target=marked.get("target"),
                    request_id=current_request_id(),
                    client=client[0] if client else None,
                )
