"""Scoped API keys (issue 19): what `POST /v0/keys` takes, and what the key routes answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from state_manager.schemas.safety import RequestBody


class CreateKeyRequest(RequestBody):
    name: str = Field(description="What the key is for, e.g. `ci-deploy` (1-64 characters)")
    role: str = Field(description="viewer, operator, worker or admin (docs/access.md)")
    namespaces: list[str] = Field(description='The namespaces it may touch, or ["*"] for all')
    expires_at: datetime | None = Field(default=None, description="When it stops working (ISO 8601)")


class KeyView(BaseModel):
    id: str = Field(description="The key's id (public: it is part of the key)")
    name: str
    role: str
    namespaces: list[str]
    created_at: str
    created_by: str = Field(description="The name of the key that made it (root: the server key)")
    expires_at: str | None
    revoked_at: str | None


class CreatedKey(KeyView):
    key: str = Field(description="The key itself, shown this once: only its hash is stored")


class KeyList(BaseModel):
    keys: list[KeyView]
