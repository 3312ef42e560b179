"""The HTTP server: uvicorn, draining on SIGTERM before it stops.

A load balancer or an orchestrator stops sending a replica requests only once it has
seen the replica fail readiness, a probe interval or two after the replica began to
stop. So on SIGTERM the server drains first: for DRAIN_SECONDS it goes on accepting
and serving requests while ``DRAIN.active`` makes readiness answer 503. Then it stops
accepting connections and gives the requests in flight GRACEFUL_TIMEOUT_SECONDS to
finish. A second SIGTERM, or SIGINT (Ctrl-C), ends the drain at once.
"""

import signal
import time
from types import FrameType

import uvicorn

from .logs import get_logger

log = get_logger(__name__)


class Drain:
    """Whether this process is draining: from its first SIGTERM until it exits."""

    def __init__(self) -> None:
        self.active = False

    def start(self) -> None:
        self.active = True


# This process's drain: the server starts it, readiness reads it.
DRAIN = Drain()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a drain period between SIGTERM and its shutdown."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.drain_ends: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        draining = self.drain_ends is not None
        if sig != signal.SIGTERM or draining or self.drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        # A signal handler: only note the time; on_tick ends the drain.
        self.drain_ends = time.monotonic() + self.drain_seconds
        DRAIN.start()
        log.info("draining", seconds=self.drain_seconds)

    async def on_tick(self, counter: int) -> bool:
        # uvicorn calls this every 0.1 s while it serves.
        drain_ends = self.drain_ends
        over = drain_ends is not None and time.monotonic() >= drain_ends
        if over and not self.should_exit:
            super().handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)
