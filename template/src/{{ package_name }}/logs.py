"""Structured logging: JSON lines (or console output) for the app and its libraries.

Our code logs through structlog on top of the standard library, so the lines of
uvicorn, SQLAlchemy, Alembic and our own modules pass through the same processors
and come out in one shape: timestamp, level, logger, event and request_id.
"""

import logging
import sys
from typing import TextIO

import structlog
from asgi_correlation_id import correlation_id
from structlog.typing import EventDict, Processor, WrappedLogger

from .masking import mask_mapping
from .settings import Settings

LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "sqlalchemy", "alembic")


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Send structlog and standard-library records through one processor chain."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        _add_request_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    rendering: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if settings.json_logs:
        rendering += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        rendering.append(structlog.dev.ConsoleRenderer())
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=rendering
        )
    )

    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level)
    for name in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        library_logger.handlers = []
        library_logger.propagate = True
    # The access middleware writes one richer line per request instead of uvicorn.
    logging.getLogger("uvicorn.access").disabled = True
    # SQLAlchemy logs every statement when its logger is at INFO; keep that off.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def _add_request_id(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    request_id = correlation_id.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _mask_secrets(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    return mask_mapping(event_dict)
