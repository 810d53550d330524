"""`GET /metrics`: the Prometheus exposition, behind the API key unless METRICS_PUBLIC is set.

The key is accepted in `x-api-key` or as `Authorization: Bearer <key>` (what a Prometheus
scrape config sends), compared in constant time. The queue gauges are refreshed (at most every
few seconds) before rendering; every other series is already in memory.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from state_manager.metrics import Metrics
from state_manager.services.context import AppContext

router = APIRouter(tags=["monitoring"])


def _presented_keys(request: Request) -> list[str]:
    keys = []
    if (header := request.headers.get("x-api-key")) is not None:
        keys.append(header)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    return keys


def key_accepted(request: Request, api_key: str) -> bool:
    """Whether the request carries the key, in `x-api-key` or as `Authorization: Bearer`
    (compared in constant time)."""
    expected = api_key.encode()
    return any(hmac.compare_digest(key.encode(), expected) for key in _presented_keys(request))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "The server's metrics in the Prometheus text format (prefix `exosphere_`). Needs the API "
        "key, in `x-api-key` or as `Authorization: Bearer <key>`, unless METRICS_PUBLIC is set. "
        "Counters are per replica: sum them across replicas. See docs/metrics.md."
    ),
    response_class=Response,
    responses={
        200: {"description": "Prometheus text exposition format", "content": {CONTENT_TYPE_LATEST: {}}},
        401: {
            "description": "Missing or wrong API key",
            "content": {"application/json": {"example": {"detail": "Invalid API key"}}},
        },
    },
)
async def metrics_endpoint(request: Request) -> Response:
    ctx: AppContext = request.app.state.context
    settings = ctx.settings
    if not settings.metrics_public and not key_accepted(
        request, settings.state_manager_secret.get_secret_value()
    ):
        return JSONResponse(
            {"detail": "Invalid API key"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    metrics: Metrics = request.app.state.metrics
    await metrics.queue_rows(ctx)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
