"""The job queue behind a small interface: enqueue a job, read its status.

Two backends implement it. ``ArqJobQueue`` keeps jobs in Redis, where ``worker``
processes run them. ``InProcessJobQueue`` runs them as asyncio tasks of the API process
and keeps their state in memory: development with no services, nothing more.
"""

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import uuid4

import structlog
from arq import ArqRedis, Retry
from arq.constants import health_check_key_suffix, result_key_prefix
from arq.jobs import Job
from arq.jobs import JobStatus as ArqStatus
from arq.typing import WorkerCoroutine
from asgi_correlation_id import correlation_id
from redis.exceptions import RedisError

from ..db import utc_now
from ..logs import get_logger
from ..problems import ServiceUnavailableError
from .schemas import JobInfo, JobStatus

log = get_logger(__name__)

JobFunction = Callable[..., Awaitable[Any]]
PENDING: frozenset[JobStatus] = frozenset({"queued", "in_progress"})
UNAVAILABLE = "The job queue is unavailable; try again shortly."
# The failures in the health record each ARQ worker keeps in Redis, in the format
# ARQ documents: "Mar-01 17:41:22 j_complete=3 j_failed=1 j_retried=0 ...".
FAILED_JOBS = re.compile(rb"\bj_failed=(\d+)")


def heartbeat_key(queue_name: str, worker: str) -> str:
    """Where a worker keeps its health record: its own key, so none hides another."""
    return f"{queue_name}{health_check_key_suffix}:{worker}"


@dataclass(frozen=True)
class QueueStats:
    """What the health check reports of the queue, and /metrics exports."""

    queued_jobs: int  # Waiting or running.
    workers: int  # Processes that run the jobs.
    failed_jobs: int  # Failed since those processes started.


class JobQueue(Protocol):
    async def enqueue(
        self, function: str, *args: Any, unique_key: str | None = None
    ) -> JobInfo:
        """Queue ``function(*args)``.

        With a ``unique_key``, a job of the same function and key that is still
        pending is returned instead of queueing another.
        """

    async def status(self, job_id: str) -> JobInfo | None:
        """The job's state, or None if it is unknown or its result has expired."""

    async def depth(self) -> int:
        """How many jobs are waiting or running."""

    async def stats(self) -> QueueStats:
        """The jobs waiting or running, the workers and the jobs that failed."""

    async def close(self) -> None:
        """Release what the queue holds, at shutdown."""


def job_id_for(queue_name: str, function: str, unique_key: str | None) -> str:
    if unique_key is None:
        return uuid4().hex
    return f"{queue_name}:{function}:{unique_key}"


def with_request_id(function: JobFunction) -> WorkerCoroutine:
    """Wrap a job so that it runs, and logs, under the request ID it was queued with."""

    @functools.wraps(function)
    async def run(
        ctx: dict[Any, Any], *args: Any, request_id: str | None = None, **kwargs: Any
    ) -> Any:
        token = correlation_id.set(request_id)
        try:
            with structlog.contextvars.bound_contextvars(job_id=ctx["job_id"]):
                return await function(ctx, *args, **kwargs)
        finally:
            correlation_id.reset(token)

    return run


def serialize(data: dict[str, Any]) -> bytes:
    """Jobs and results as JSON, not ARQ's default pickle: data read from Redis then
    never runs code. An exception (a failed job's result) is stored as its description.
    """
    return json.dumps(data, default=_json_default).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def describe_error(error: BaseException) -> str:
    """``Type: message``, as the ``error`` of a failed job shows it."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _json_default(value: object) -> str:
    if isinstance(value, BaseException):
        return describe_error(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ArqJobQueue:
    """Jobs in Redis, run by ARQ workers (the ``worker`` command)."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    async def enqueue(
        self, function: str, *args: Any, unique_key: str | None = None
    ) -> JobInfo:
        job_id = job_id_for(self.queue_name, function, unique_key)
        try:
            if unique_key is not None:
                # ARQ refuses a job ID that has a pending job or a stored result: a
                # pending job is the answer; a finished one's result makes way.
                current = await self._status(job_id)
                if current is not None and current.status in PENDING:
                    return current
                await self.redis.delete(result_key_prefix + job_id)
            job = await self.redis.enqueue_job(
                function,
                *args,
                _job_id=job_id,
                _queue_name=self.queue_name,
                request_id=correlation_id.get(),
            )
            if job is None:  # Queued by another process just now.
                return await self._status(job_id) or JobInfo(
                    job_id=job_id, status="queued"
                )
        except RedisError as error:
            raise ServiceUnavailableError(UNAVAILABLE) from error
        return JobInfo(job_id=job_id, status="queued", enqueued_at=utc_now())

    async def status(self, job_id: str) -> JobInfo | None:
        try:
            return await self._status(job_id)
        except RedisError as error:
            raise ServiceUnavailableError(UNAVAILABLE) from error

    async def _status(self, job_id: str) -> JobInfo | None:
        job = Job(
            job_id, self.redis, _queue_name=self.queue_name, _deserializer=deserialize
        )
        state = await job.status()
        if state == ArqStatus.complete:
            outcome = await job.result_info()
            if outcome is None:  # Expired since the status was read.
                return None
            return JobInfo(
                job_id=job_id,
                status="complete" if outcome.success else "failed",
                result=outcome.result if outcome.success else None,
                error=None if outcome.success else str(outcome.result),
                enqueued_at=outcome.enqueue_time.astimezone(UTC),
                finished_at=outcome.finish_time.astimezone(UTC),
            )
        if state == ArqStatus.not_found:
            return None
        definition = await job.info()
        return JobInfo(
            job_id=job_id,
            status="in_progress" if state == ArqStatus.in_progress else "queued",
            enqueued_at=definition.enqueue_time.astimezone(UTC) if definition else None,
        )

    async def depth(self) -> int:
        depth: int = await self.redis.zcard(self.queue_name)
        return depth

    async def stats(self) -> QueueStats:
        """From the queue and the health records of the live workers.

        A worker rewrites its record every few seconds and it expires soon after, so
        a worker that died stops counting; one that stops cleanly deletes it.
        """
        pattern = heartbeat_key(self.queue_name, "*")
        keys = [key async for key in self.redis.scan_iter(match=pattern)]
        records: list[bytes | None] = await self.redis.mget(keys) if keys else []
        live = [record for record in records if record is not None]
        failed = (FAILED_JOBS.search(record) for record in live)
        return QueueStats(
            queued_jobs=await self.depth(),
            workers=len(live),
            failed_jobs=sum(int(match[1]) for match in failed if match),
        )

    async def close(self) -> None:
        """Nothing to release: the Redis connections belong to the client's owner."""


@dataclass
class _Run:
    """One job of the in-process queue."""

    job_id: str
    enqueued_at: datetime
    status: JobStatus = "queued"
    result: Any = None
    error: str | None = None
    finished_at: datetime | None = None
    task: asyncio.Task[None] | None = None

    def info(self) -> JobInfo:
        return JobInfo(
            job_id=self.job_id,
            status=self.status,
            result=self.result,
            error=self.error,
            enqueued_at=self.enqueued_at,
            finished_at=self.finished_at,
        )


class InProcessJobQueue:
    """Jobs as asyncio tasks of this process, their state in memory.

    For development without Redis only: jobs still running at shutdown are lost. It
    behaves as the worker does: the same tries, timeout and result lifetime, JSON
    arguments and results, and no second job for a pending unique key.
    """

    def __init__(
        self,
        functions: Mapping[str, WorkerCoroutine],
        ctx: dict[str, Any],
        *,
        queue_name: str,
        max_tries: int,
        timeout: float,
        keep_result: float,
    ) -> None:
        self.functions = functions
        self.ctx = ctx
        self.queue_name = queue_name
        self.max_tries = max_tries
        self.timeout = timeout
        self.keep_result = keep_result
        self.failed_jobs = 0
        self._runs: dict[str, _Run] = {}

    async def enqueue(
        self, function: str, *args: Any, unique_key: str | None = None
    ) -> JobInfo:
        job_id = job_id_for(self.queue_name, function, unique_key)
        current = self._runs.get(job_id)
        if current is not None and current.status in PENDING:
            return current.info()
        job = self.functions[function]
        arguments = deserialize(serialize({"args": args}))["args"]
        run = _Run(job_id=job_id, enqueued_at=utc_now())
        run.task = asyncio.create_task(
            self._execute(run, job, arguments, correlation_id.get())
        )
        self._runs[job_id] = run
        return run.info()

    async def _execute(
        self,
        run: _Run,
        job: WorkerCoroutine,
        args: list[Any],
        request_id: str | None,
    ) -> None:
        for job_try in range(1, self.max_tries + 1):
            run.status = "in_progress"
            ctx = {**self.ctx, "job_id": run.job_id, "job_try": job_try}
            try:
                async with asyncio.timeout(self.timeout):
                    result = await job(ctx, *args, request_id=request_id)
                result = deserialize(serialize({"result": result}))["result"]
            except Retry as retry:
                run.status = "queued"
                await asyncio.sleep((retry.defer_score or 0) / 1000)
            except Exception as error:
                log.exception("job_failed", job_id=run.job_id)
                self._finish(run, error=describe_error(error))
                return
            else:
                self._finish(run, result=result)
                return
        self._finish(
            run, error=f"JobExecutionFailed: max {self.max_tries} retries exceeded"
        )

    def _finish(
        self, run: _Run, *, result: Any = None, error: str | None = None
    ) -> None:
        run.status = "failed" if error else "complete"
        self.failed_jobs += error is not None
        run.result, run.error, run.finished_at = result, error, utc_now()
        asyncio.get_running_loop().call_later(self.keep_result, self._forget, run)

    def _forget(self, run: _Run) -> None:
        if self._runs.get(run.job_id) is run:
            del self._runs[run.job_id]

    async def status(self, job_id: str) -> JobInfo | None:
        run = self._runs.get(job_id)
        return run.info() if run else None

    async def depth(self) -> int:
        return sum(run.status in PENDING for run in self._runs.values())

    async def stats(self) -> QueueStats:
        # This process is the one worker.
        return QueueStats(await self.depth(), workers=1, failed_jobs=self.failed_jobs)

    async def close(self) -> None:
        tasks = [run.task for run in self._runs.values() if run.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
