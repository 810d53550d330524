"""The bodies of error answers, as `api/errors.py` and `api/guard.py` write them.

Every 4xx is `{"detail": "<message>"}`, with `"code"` next to it for the cases a client may
want to tell apart (`STATE_CANCELLED`, `STATE_TIMED_OUT`). A request that fails validation is a
422 whose `detail` lists the bad fields (or, for a malformed id or a reused idempotency key, is
a message). The values sent are never echoed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema


class ErrorBody(BaseModel):
    """A refused request: what went wrong, for a person, and sometimes a code, for a program."""

    detail: str = Field(description="What went wrong, naming the thing concerned")
    code: str | SkipJsonSchema[None] = Field(
        default=None,
        description="A stable name for cases a client may handle: `STATE_CANCELLED` (the state's run "
        "was cancelled), `STATE_TIMED_OUT` (the attempt ran past its node's timeout). Absent otherwise.",
    )

    def content(self) -> dict[str, str]:
        """The JSON body: `code` only when there is one."""
        return self.model_dump(exclude_none=True)


class ValidationIssue(BaseModel):
    """One field of the request that is missing or malformed."""

    type: str = Field(description="The kind of problem, e.g. `missing`, `int_parsing`, `value_error`")
    loc: list[str | int] = Field(description="Where: `body`, `path`, `query` or `header`, then the field")
    msg: str = Field(description="What is wrong with it")


class ValidationErrorBody(BaseModel):
    """422: the request is malformed. `detail` lists each bad field; for a malformed state id or
    an `Idempotency-Key` reused with another body it is a message."""

    detail: list[ValidationIssue] | str


class InternalErrorBody(BaseModel):
    """500: a bug in the server, logged with the request id (`x-exosphere-request-id`)."""

    success: Literal[False] = False
    detail: str = "internal server error"
