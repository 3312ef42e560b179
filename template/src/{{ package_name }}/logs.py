"""Structured logging: JSON lines (or console output) for the app and its libraries.

Our code logs through structlog, the libraries (uvicorn, SQLAlchemy, Alembic) through
the standard library. Both pass through the same processors and come out in one
shape (timestamp, level, logger, event and request_id) on one stream.

Our lines go from structlog straight to that stream: the standard library's record,
caller lookup and formatter would add tens of microseconds to the access line of
every request. Its levels still decide which of our lines are written, so
``logging.getLogger(name).setLevel(...)`` works for our loggers as for the libraries'.
"""

import logging
import sys
from collections.abc import Sequence
from typing import ClassVar, TextIO

import structlog
from asgi_correlation_id import correlation_id
from structlog.typing import EventDict, Processor, WrappedLogger

from .masking import mask_mapping, mask_text
from .settings import Settings

LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "sqlalchemy", "alembic")
# C0 controls, DEL and C1 controls (0x9b starts an escape sequence too), as \xNN.
CONTROL_CHARACTERS = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))
}


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


def configure_logging(
    settings: Settings,
    stream: TextIO | None = None,
    processors: Sequence[Processor] = (),
) -> None:
    """Send structlog and standard-library records through one processor chain.

    ``processors`` (the features' own, such as error reporting) see every line last,
    after the masking of secrets.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        _add_request_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
        *processors,
    ]
    renderer: Processor
    if settings.json_logs:
        rendering: list[Processor] = [
            structlog.processors.format_exc_info,
            _mask_exception,
        ]
        renderer = structlog.processors.JSONRenderer()
    else:
        # JSON escapes control characters; a terminal would obey them.
        rendering = [_escape_controls]
        renderer = structlog.dev.ConsoleRenderer()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *rendering,
                renderer,
            ],
        )
    )
    LineLogger.handler = handler
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, *rendering, renderer],
        logger_factory=LineLogger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
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


class LineLogger:
    """Where structlog writes our rendered lines: the stream of the root handler.

    Each line is written under the handler's lock, so it never interleaves with a
    library's line, and a failed write is reported as the handler reports its own.
    Levels come from the standard-library logger of the same name.
    """

    handler: ClassVar[logging.StreamHandler[TextIO]]  # set by configure_logging

    def __init__(self, name: str) -> None:
        self.name = name
        self._levels = logging.getLogger(name)

    @property
    def disabled(self) -> bool:
        return self._levels.disabled

    def getEffectiveLevel(self) -> int:  # noqa: N802 (the standard library's name)
        return self._levels.getEffectiveLevel()

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802
        return self._levels.isEnabledFor(level)

    def write(self, line: str) -> None:
        handler = self.handler
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.stream.flush()
        except Exception:
            # As for the libraries' lines: a line that cannot be written never
            # fails the code that logged it (the handler reports it on stderr).
            handler.handleError(logging.makeLogRecord({"msg": line}))
        finally:
            handler.release()

    debug = info = warning = error = exception = critical = write


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


def _escape_controls(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Escape the control characters in the keys, the event and the text values: a
    path or a header that a client sent could otherwise recolour or clear the
    terminal, or forge a line of its own after a newline."""
    escaped: EventDict = {}
    for key, value in event_dict.items():
        if isinstance(value, str) and not value.isprintable():
            value = _escaped(value) if key == "event" else Quoted(value)
        escaped[_escaped(key)] = value
    return escaped


def _escaped(text: str) -> str:
    return text if text.isprintable() else text.translate(CONTROL_CHARACTERS)


class Quoted:
    """Text the console renderer shows as repr() does, quoted and escaped. (It shows
    text with a space or a quote so already, but other text as it is.)"""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def _mask_exception(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Mask the secrets in a formatted traceback: exception messages quote values."""
    if isinstance(exception := event_dict.get("exception"), str):
        event_dict["exception"] = mask_text(exception)
    return event_dict
