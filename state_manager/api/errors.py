"""The one table that turns domain errors into HTTP answers, and the 500 fallback."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from state_manager.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
    TooLarge,
    Unprocessable,
)
from state_manager.observability import REQUEST_ID_HEADER, current_request_id
from state_manager.schemas.errors import ErrorBody, InternalErrorBody, ValidationErrorBody, ValidationIssue

log = structlog.get_logger(__name__)

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFound: 404,
    BadRequest: 400,
    InvalidTransition: 400,
    Forbidden: 403,
    Conflict: 409,
    TooLarge: 413,
    Unprocessable: 422,
}

INTERNAL_ERROR_BODY = InternalErrorBody().model_dump()


def _status_for(exc: DomainError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return 400


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    content = ErrorBody(detail=exc.detail, code=exc.code).content()
    return JSONResponse(status_code=_status_for(exc), content=content)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field. The offending values are not echoed: they may be secrets, or
    text that cannot even be encoded in the answer."""
    assert isinstance(exc, RequestValidationError)
    issues = [ValidationIssue(type=e["type"], loc=list(e["loc"]), msg=e["msg"]) for e in exc.errors()]
    return JSONResponse(status_code=422, content=ValidationErrorBody(detail=issues).model_dump())


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
    headers = {REQUEST_ID_HEADER: current_request_id() or ""}
    return JSONResponse(status_code=500, content=INTERNAL_ERROR_BODY, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected_error)
