"""Structured logging: JSON lines (or console output) for the app and its libraries.

Our own code logs through structlog; the standard library loggers of uvicorn,
SQLAlchemy, Alembic and others go through the same processors, so every line has
the same shape: timestamp, level, logger, event and request_id.
"""

import logging
import sys
from typing import TextIO

import structlog
from asgi_correlation_id import correlation_id
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from .masking import mask_mapping
from .settings import Settings

LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "sqlalchemy", "alembic")


def get_logger(name: str) -> FilteringBoundLogger:
    """Return a logger whose lines carry ``logger=name``."""
    # ``logger`` is a parameter of structlog.get_logger; _name_logger renames it.
    logger: FilteringBoundLogger = structlog.get_logger(logger_name=name)
    return logger


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library through one processor chain."""
    stream = stream or sys.stdout
    level = logging.getLevelNamesMapping()[settings.log_level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _name_logger,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    renderer: Processor
    if settings.json_logs:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        library_logger.handlers = []
        library_logger.propagate = True
    # The access middleware writes one richer line per request instead of uvicorn.
    logging.getLogger("uvicorn.access").disabled = True
    # SQLAlchemy logs every statement when its logger is at INFO; keep that off.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def _name_logger(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    if "logger_name" in event_dict:
        event_dict["logger"] = event_dict.pop("logger_name")
    return event_dict


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
