"""Dependencies shared by the routers, as `Annotated` aliases.

They are `async def` although they do not await: FastAPI runs a plain `def` dependency in a
worker thread, which profiling showed to cost more than the check itself.
"""

from __future__ import annotations

from typing import Annotated

from bson import ObjectId
from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import APIKeyHeader

from state_manager.api import access
from state_manager.services.context import AppContext
from state_manager.services.states import parse_state_id

_api_key_header = APIKeyHeader(name="x-api-key", auto_error=False)


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],  # noqa: ARG001 (documents the header)
) -> None:
    """Declares the `x-api-key` header in the API reference, and refuses (403) a key whose role
    or namespaces do not allow the route (api/access.py). The key itself is checked, in constant
    time and before the body is read, by `api/guard.py`."""
    access.check(request)


async def _state_id(state_id: Annotated[str, Path(description="24-character hex state id")]) -> ObjectId:
    return parse_state_id(state_id)


StateId = Annotated[ObjectId, Depends(_state_id)]


CLAIM_TOKEN_HEADER = "x-exosphere-claim-token"

ClaimToken = Annotated[
    str | None,
    Header(
        alias=CLAIM_TOKEN_HEADER,
        description=(
            "The `claim_token` that `states/enqueue` returned with this state. When sent, the call "
            "is applied only while that claim is the state's current one (else 409). Optional: "
            "the official SDKs do not send it."
        ),
    ),
]


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description=(
            "Makes a trigger safe to retry: a repeat with the same key and body (within "
            "IDEMPOTENCY_KEY_SECONDS, 24 h by default) answers the first response and starts "
            "nothing; the same key with another body is 422."
        ),
    ),
]
