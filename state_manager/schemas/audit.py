"""The audit log's answers (issue 19)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AuditRecordView(BaseModel):
    at: str = Field(description="When (ISO 8601, UTC)")
    key_id: str | None = Field(description="The key's id; null for the root key")
    key_name: str = Field(description='The key name ("root" for the server key)')
    role: str
    action: str = Field(description="e.g. run.cancel, graph.upsert, key.create, dashboard.login")
    namespace: str | None
    target: dict[str, str] = Field(description="what it acted on: graph, run, state or key")
    request_id: str | None
    client: str | None = Field(description="the client's address")
    status: int = Field(description="the answer's status code")


class AuditPage(BaseModel):
    records: list[AuditRecordView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: no more")
