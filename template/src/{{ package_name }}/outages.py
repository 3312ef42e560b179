"""Outages of the service's dependencies, logged when they start and when they end.

While a dependency is out, every request that needs it fails the same way; a line
(or a traceback) per request would bury the logs. Instead the first failure logs
``dependency_down``, the first success after it logs ``dependency_up`` with how long
it lasted and how many requests failed, and ``failures`` counts every failed request
by reason ("unavailable", "timeout", "busy"), as do the metrics, when installed.
"""

import time
from collections import Counter
from collections.abc import Callable

from .logs import get_logger

log = get_logger(__name__)


class Outage:
    """What requests have found of one dependency: working, or out since when."""

    def __init__(self, dependency: str) -> None:
        self.dependency = dependency
        self.failures: Counter[str] = Counter()
        self.down_since: float | None = None
        self._failed_in_outage = 0

    def failed(self, reason: str, error: BaseException) -> None:
        """A request failed because of the dependency; ``reason`` is one word."""
        self.failures[reason] += 1
        self._failed_in_outage += 1
        for observe in FAILURE_OBSERVERS:
            observe(self.dependency, reason)
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(
                "dependency_down",
                dependency=self.dependency,
                reason=reason,
                # The type only: the message may quote hosts, users or data.
                error=type(error).__name__,
            )

    def answered(self) -> None:
        """A request used the dependency successfully; cheap when nothing was out."""
        if self.down_since is None:
            return
        log.warning(
            "dependency_up",
            dependency=self.dependency,
            seconds=round(time.monotonic() - self.down_since, 3),
            failed_requests=self._failed_in_outage,
        )
        self.down_since = None
        self._failed_in_outage = 0


# One per dependency and process, created on first use.
OUTAGES: dict[str, Outage] = {}
# Told of each failed request, as (dependency, reason): the metrics count them there,
# where the workers of one server can add them up.
FAILURE_OBSERVERS: list[Callable[[str, str], None]] = []


def outage(dependency: str) -> Outage:
    """The outage record of ``dependency`` in this process."""
    record = OUTAGES.get(dependency)
    if record is None:
        record = OUTAGES[dependency] = Outage(dependency)
    return record
