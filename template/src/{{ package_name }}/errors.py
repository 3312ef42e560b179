"""Exception handlers: every error leaves the API as a problem+json response."""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException

from .logs import get_logger
from .problems import (
    ProblemError,
    ProblemResponse,
    ServiceUnavailableError,
    problem_body,
)

log = get_logger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> ProblemResponse:
        status = error.status_code
        detail = error.detail
        if not isinstance(detail, str) or detail == HTTPStatus(status).phrase:
            detail = HTTPStatus(status).description
        return _reply(status, detail, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(
        request: Request, error: RequestValidationError
    ) -> ProblemResponse:
        # Drop the rejected input and its context: they may hold secrets.
        errors = [
            {"loc": list(issue["loc"]), "msg": issue["msg"], "type": issue["type"]}
            for issue in error.errors()
        ]
        return _reply(422, "The request is invalid; see errors.", errors=errors)

    @app.exception_handler(ProblemError)
    async def problem_error(request: Request, error: ProblemError) -> ProblemResponse:
        expected = isinstance(error, ServiceUnavailableError)
        return _reply(
            error.status,
            error.detail,
            headers=error.headers,
            expected=expected,
            type_=error.type,
        )

    @app.exception_handler(IntegrityError)
    async def integrity_error(
        request: Request, error: IntegrityError
    ) -> ProblemResponse:
        return _reply(409, "The request conflicts with existing data.")


def _reply(
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    *,
    expected: bool = False,
    **fields: Any,
) -> ProblemResponse:
    """Build the problem response and log it under its error_id.

    Handlers call it while handling the error, so a 5xx, the service's own failure,
    is logged as an error with its exception. An ``expected`` one (a dependency out,
    the service busy) is not: its outage is logged once, not once per request.
    """
    body = problem_body(status, detail, **fields)
    logged = {"status": status, "detail": detail, "error_id": body["error_id"]}
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR and not expected:
        log.exception("request_error", **logged)
    else:
        log.info("request_error", **logged)
    return ProblemResponse(body, status_code=status, headers=headers)
