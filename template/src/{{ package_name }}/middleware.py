"""Pure ASGI middleware. Each runs on every request, so each does little."""

import logging
import re
import secrets
import time
import traceback
import uuid
from collections.abc import Iterable, Sequence

import structlog
from asgi_correlation_id import CorrelationIdMiddleware
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .feature import RequestObserver, Service
from .logs import get_logger
from .paths import DOCS_PAGES, route_path
from .problems import problem_response

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc load their scripts, styles and fonts from CDNs.
DOCS_CSP = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net "
    "https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; frame-ancestors 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"

RawHeaders = list[tuple[bytes, bytes]]


def build_middleware(service: Service) -> list[Middleware]:
    """The middleware stack, outermost first: the core's, then the features'."""
    settings = service.settings
    features = service.features
    observers = [o for f in features for o in f.request_observers(service)]
    stack = [
        Middleware(
            CorrelationIdMiddleware,
            header_name=REQUEST_ID_HEADER,
            generator=new_request_id,
            validator=is_safe_request_id,
            # The ID is read from `correlation_id`, never from the request headers.
            update_request_header=False,
        ),
        Middleware(
            RequestLogMiddleware,
            observers=observers,
            quiet_paths=service.infrastructure_paths,
        ),
        Middleware(
            SecurityHeadersMiddleware,
            docs_paths=DOCS_PAGES,
            hsts=settings.is_production,
        ),
        Middleware(
            HeaderSizeLimitMiddleware, max_bytes=settings.max_request_header_bytes
        ),
    ]
    if settings.allowed_hosts and "*" not in settings.allowed_hosts:
        # Probes and scrapes come by the instance's address (a pod's IP, 127.0.0.1 in
        # a container's health check), and their answers use no Host: let them in.
        machine_paths = frozenset[str]().union(
            *(f.infrastructure_paths for f in features)
        )
        stack.append(
            Middleware(
                TrustedHostMiddleware,
                allowed_hosts=settings.allowed_hosts,
                exempt_paths=machine_paths,
            )
        )
    stack += [
        Middleware(RelativeRedirectMiddleware),
        Middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes),
        Middleware(
            UnhandledErrorMiddleware,
            expose_errors=settings.debug and settings.environment == "development",
        ),
    ]
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=[REQUEST_ID_HEADER],
            )
        )
    # Inside CORS, request IDs and security headers: a 429 carries them all.
    for feature in features:
        stack += feature.middleware(service)
    return stack


def new_request_id() -> str:
    """32 random hex digits, as ``uuid4().hex`` gives, in a quarter of its time."""
    return secrets.token_hex(16)


def is_safe_request_id(value: str) -> bool:
    """Keep an incoming request ID only when it cannot smuggle anything into logs."""
    return SAFE_REQUEST_ID.fullmatch(value) is not None


class RequestLogMiddleware:
    """Time each request once: add ``X-Process-Time`` (milliseconds), log one line,
    and report the status and duration to the observers (the metrics).

    Requests to ``quiet_paths`` (probes, scrapes, docs) are logged at DEBUG, not INFO,
    and not observed.
    """

    def __init__(
        self,
        app: ASGIApp,
        observers: Sequence[RequestObserver] = (),
        quiet_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.observers = tuple(observers)
        self.quiet_paths = quiet_paths
        self.log = get_logger(f"{__name__}.access").bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Fields bound to the logs during a request (the caller's ``user``) are its
        # own: a server runs each request in a fresh context, but a test client may not.
        structlog.contextvars.clear_contextvars()
        start = time.perf_counter()
        status = 500
        quiet = route_path(scope) in self.quiet_paths
        observers = () if quiet else self.observers
        for observer in observers:
            observer.request_started(scope)

        async def send_with_timing(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed_ms = (time.perf_counter() - start) * 1000
                _append_headers(message, [(b"x-process-time", b"%.2f" % elapsed_ms)])
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            seconds = time.perf_counter() - start
            for observer in observers:
                observer.request_finished(scope, status, seconds)
            level = logging.DEBUG if quiet else logging.INFO
            if self.log.isEnabledFor(level):
                client = scope.get("client")
                self.log.log(
                    level,
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                    client=client[0] if client else None,
                )


class SecurityHeadersMiddleware:
    """Add security headers; the docs pages get a CSP that lets them load."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str], hsts: bool) -> None:
        self.app = app
        self.docs_paths = docs_paths
        common: RawHeaders = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if hsts:
            common.append((b"strict-transport-security", HSTS.encode()))
        self.api_headers = [*common, (b"content-security-policy", API_CSP.encode())]
        self.docs_headers = [*common, (b"content-security-policy", DOCS_CSP.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = route_path(scope) in self.docs_paths
        extra = self.docs_headers if docs else self.api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _append_headers(message, extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeaderSizeLimitMiddleware:
    """Answer 431 to a request whose headers (names and values) exceed ``max_bytes``.

    uvicorn has read them already (its default parser sets no limit of its own): this
    keeps large headers out of the app, the logs and the database. The proxy in front
    refuses them before they cost any memory (docs/PRODUCTION.md).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"The request headers exceed {max_bytes} bytes."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope["headers"])
            if size > self.max_bytes:
                await problem_response(431, self.detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TrustedHostMiddleware:
    """Answer 400 to a request whose Host header names no allowed host.

    ``allowed_hosts`` are names in lower case; ``*.example.com`` allows every
    subdomain of example.com (not example.com itself). Requests to ``exempt_paths``
    pass whatever their Host.
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Sequence[str],
        exempt_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.names = frozenset(h for h in allowed_hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in allowed_hosts if h.startswith("*."))
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not self.is_allowed(_host_name(scope))
            and route_path(scope) not in self.exempt_paths
        ):
            detail = "The Host header names no host this service answers for."
            await problem_response(400, detail)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def is_allowed(self, host: str) -> bool:
        return host in self.names or (bool(host) and host.endswith(self.suffixes))


class RelativeRedirectMiddleware:
    """Make a redirect to the service's own URL relative: path and query only.

    Starlette builds the absolute URL of its redirects (such as the router's, which
    adds or removes a trailing slash) from the Host header, which the client chose:
    relative, the Location cannot send anyone to another host.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_relative(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                300 <= message["status"] < 400
            ):
                headers = message.get("headers", [])
                message["headers"] = _relative_locations(scope, headers)
            await send(message)

        await self.app(scope, receive, send_relative)


class BodySizeLimitMiddleware:
    """Answer 413 to a request body over the limit.

    A declared ``Content-Length`` is checked before the app runs (the server holds
    the body to that length). A chunked body is counted as the app reads it; going
    over raises an HTTPException(413), which FastAPI lets through as it reads a body
    and the app's exception handlers answer as any other.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"The request body exceeds {max_bytes} bytes."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await problem_response(413, self.detail)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.detail)
            return message

        await self.app(scope, receive_within_limit, send)


class UnhandledErrorMiddleware:
    """Turn an unhandled exception into a 500 problem, logged with its error_id.

    It sits inside the other middleware, so the 500 still gets the request ID,
    the security headers and an access log line. The exception text reaches the
    client only with DEBUG in development.
    """

    def __init__(self, app: ASGIApp, expose_errors: bool) -> None:
        self.app = app
        self.expose_errors = expose_errors
        self.log = get_logger(__name__).bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send_tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, send_tracked)
        except Exception as error:
            error_id = str(uuid.uuid4())
            self.log.exception("unhandled_error", error_id=error_id, path=scope["path"])
            if send_tracked.response_started:
                raise
            response = problem_response(500, self._detail(error), error_id=error_id)
            await response(scope, receive, send)

    def _detail(self, error: Exception) -> str:
        if self.expose_errors:
            return "".join(traceback.format_exception(error))
        return "An unexpected error occurred."


class TrackedSend:
    """``send``, noting whether the response has started: after that, no other
    response can be sent in its place."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.response_started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.send(message)


# These two work on the raw header lists: Starlette's Headers and MutableHeaders copy
# and encode them, which made a probe 14% dearer (see docs/performance.md).


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _host_name(scope: Scope) -> str:
    """The Host header's name in lower case, without its port; "" if there is none."""
    for name, value in scope["headers"]:
        if name == b"host":
            host: str = value.decode("latin-1").lower()
            if host.startswith("["):  # [::1]:8000
                return host.partition("]")[0] + "]"
            return host.partition(":")[0]
    return ""


def _relative_locations(
    scope: Scope, headers: Iterable[tuple[bytes, bytes]]
) -> RawHeaders:
    """``headers``, a Location on the request's own scheme and Host made relative."""
    own = None
    for name, value in scope["headers"]:
        if name == b"host":
            own = f"{scope['scheme']}://".encode() + value
    relative: RawHeaders = []
    for name, value in headers:
        if name.lower() == b"location" and own and value.startswith(own + b"/"):
            # One slash: //host/... would be a URL of another host again.
            value = b"/" + value[len(own) :].lstrip(b"/")
        relative.append((name, value))
    return relative


def _append_headers(message: Message, extra: RawHeaders) -> None:
    headers = message.setdefault("headers", [])
    if isinstance(headers, list):
        headers.extend(extra)
    else:
        message["headers"] = [*headers, *extra]
