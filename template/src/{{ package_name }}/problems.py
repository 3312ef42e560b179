"""RFC 9457 problem details: the one shape of every error response."""

import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from asgi_correlation_id import correlation_id
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An error response body (RFC 9457), as documented in the OpenAPI schema."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["Item 42 does not exist."])
    error_id: str = Field(description="Also logged; quote it when reporting a problem.")
    request_id: str | None = None
    timestamp: datetime
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Field errors of a validation failure."
    )


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class ProblemError(Exception):
    """An error the API reports as a problem; subclass it for each kind."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    type: str = "about:blank"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def headers(self) -> dict[str, str] | None:
        """Response headers that come with the problem."""
        return None


class NotFoundError(ProblemError):
    status = HTTPStatus.NOT_FOUND


class ConflictError(ProblemError):
    status = HTTPStatus.CONFLICT


class ServiceUnavailableError(ProblemError):
    """A dependency is out or overloaded: the client may retry after a pause.

    Expected in an outage, so it is logged without a traceback: the outage itself
    is logged once (see outages.py).
    """

    status = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def problem_body(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    error_id: str | None = None,
) -> dict[str, Any]:
    """Build a problem body; ``title`` defaults to the HTTP status phrase."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "error_id": error_id or str(uuid.uuid4()),
        "request_id": correlation_id.get(),
        "timestamp": datetime.now(UTC).isoformat(),
    }
    if errors is not None:
        body["errors"] = jsonable_encoder(errors)
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> ProblemResponse:
    return ProblemResponse(
        problem_body(status, detail, **fields), status_code=status, headers=headers
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
    for status in (404, 409, 422, 503)
}
