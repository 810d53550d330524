"""Liveness: `GET /health`, without a key (a load balancer's or compose's health check)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Health(BaseModel):
    message: Literal["OK"] = "OK"


@router.get("/health", summary="Liveness")
async def health() -> Health:
    """`{"message": "OK"}` while the server process answers. Needs no key. It does not check
    the database."""
    return Health()
