"""The job queue behind a small interface: enqueue a job, read its status.

Two backends implement it. ``ArqJobQueue`` keeps jobs in Redis, where ``worker``
processes run them. ``InProcessJobQueue`` runs them as asyncio tasks of the API process
and keeps their state in memory: development with no services, nothing more.
"""

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import uuid4

import structlog
from arq import ArqRedis, Retry
from arq.constants import (
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
)
from arq.jobs import (
    DeserializationError,
    deserialize_job,
    deserialize_result,
    serialize_job,
)
from arq.typing import WorkerCoroutine
from asgi_correlation_id import correlation_id
from redis.exceptions import RedisError, ResponseError, WatchError

from ..db import utc_now
from ..logs import get_logger
from ..outages import outage
from ..problems import ServiceUnavailableError
from ..redis_client import failure_reason
from .schemas import JobInfo, JobStatus

log = get_logger(__name__)

JobFunction = Callable[..., Awaitable[Any]]
PENDING: frozenset[JobStatus] = frozenset({"queued", "in_progress"})
UNAVAILABLE = "The job queue is unavailable; try again shortly."
# The Retry-After of that 503: Redis failing over or restarting takes seconds.
RETRY_AFTER_SECONDS = 5
# How often enqueue looks again when the job changed while it was being queued.
ENQUEUE_ATTEMPTS = 3
# The ID of a job that is not unique: what uuid4().hex gives.
RANDOM_JOB_ID = re.compile(r"[0-9a-f]{32}")
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


def is_job_id(job_id: str, queue_name: str, functions: Collection[str]) -> bool:
    """Whether ``job_id_for`` could have made ``job_id`` for this queue: anything else
    is no job of this service, and is not looked up."""
    if RANDOM_JOB_ID.fullmatch(job_id):
        return True
    rest = job_id.removeprefix(f"{queue_name}:")
    function, _, key = rest.partition(":")
    return rest != job_id and function in functions and key != ""


def job_id_pattern(functions: Collection[str]) -> str:
    """The job IDs ``job_id_for`` makes, as a regular expression for the API docs."""
    names = "|".join(sorted(re.escape(name) for name in functions))
    return f"^({RANDOM_JOB_ID.pattern}|.+:({names}):.+)$"


def with_request_id(function: JobFunction) -> WorkerCoroutine:
    """Wrap a job so that it runs, and logs, under the request ID it was queued with.

    ``log_fields``: the fields the request's log lines had (its ``user``, say), for
    the job's lines too.
    """

    @functools.wraps(function)
    async def run(
        ctx: dict[Any, Any],
        *args: Any,
        request_id: str | None = None,
        log_fields: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        token = correlation_id.set(request_id)
        fields = (log_fields or {}) | {"job_id": ctx["job_id"]}
        try:
            with structlog.contextvars.bound_contextvars(**fields):
                return await function(ctx, *args, **kwargs)
        finally:
            correlation_id.reset(token)

    return run


def serialize(data: dict[str, Any]) -> bytes:
    """Jobs and results as JSON, not ARQ's default pickle: data read from Redis then
    never runs code. An exception (a failed job's result) is stored as its description.
    """
    return json.dumps(data, default=_json_default, allow_nan=False).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    """The JSON object ``serialize`` wrote; anything else raises ValueError."""
    try:
        loaded = json.loads(data, parse_constant=_refuse_constant)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from error
    if not isinstance(loaded, dict):
        raise ValueError(f"not a JSON object but a {type(loaded).__name__}")
    return loaded


def _refuse_constant(name: str) -> None:
    # NaN and Infinity are no JSON, and no response could carry them.
    raise ValueError(name)


def describe_error(error: BaseException) -> str:
    """``Type: message``, as the ``error`` of a failed job shows it."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def is_wrong_type(error: ResponseError) -> bool:
    """Whether Redis refused a command for the type of the key's value."""
    return str(error).startswith("WRONGTYPE")


def _json_default(value: object) -> str:
    if isinstance(value, BaseException):
        return describe_error(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ArqJobQueue:
    """Jobs in Redis, run by ARQ workers (the ``worker`` command).

    While Redis is out, enqueue and status raise ServiceUnavailableError (a 503 with
    Retry-After); the outage is logged once, when it starts and when it ends.
    """

    def __init__(
        self, redis: ArqRedis, queue_name: str, functions: Collection[str]
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.functions = functions

    async def enqueue(
        self, function: str, *args: Any, unique_key: str | None = None
    ) -> JobInfo:
        job_id = job_id_for(self.queue_name, function, unique_key)
        try:
            for _ in range(ENQUEUE_ATTEMPTS):
                queued = await self._queue_unless_pending(job_id, function, args)
                if queued is not None:
                    break
                # Pending, or changed meanwhile: a pending job is the answer.
                current = await self._status(job_id)
                if current is not None and current.status in PENDING:
                    queued = current
                    break
            else:
                raise WatchError(f"job {job_id} kept changing while being queued")
        except RedisError as error:
            raise self._unavailable(error) from error
        outage("redis").answered()
        return queued

    async def _queue_unless_pending(
        self, job_id: str, function: str, args: tuple[Any, ...]
    ) -> JobInfo | None:
        """Queue the job, unless one of its ID is pending; None if not queued.

        A finished job's result makes way for the new run in the same transaction, so
        that a status read sees the one or the other, never neither. The job is stored
        as ARQ's enqueue_job stores it, which cannot replace a result.
        """
        job_key, result_key = job_key_prefix + job_id, result_key_prefix + job_id
        async with self.redis.pipeline(transaction=True) as transaction:
            await transaction.watch(job_key, result_key)
            if await transaction.exists(job_key):
                return None
            enqueued_at = utc_now()
            enqueued_ms = round(enqueued_at.timestamp() * 1000)
            kwargs = {
                "request_id": correlation_id.get(),
                "log_fields": structlog.contextvars.get_contextvars(),
            }
            job = serialize_job(
                function, args, kwargs, None, enqueued_ms, serializer=serialize
            )
            transaction.multi()  # type: ignore[no-untyped-call]
            transaction.delete(result_key)
            transaction.psetex(job_key, self.redis.expires_extra_ms, job)
            transaction.zadd(self.queue_name, {job_id: enqueued_ms})
            try:
                await transaction.execute()
            except WatchError:  # Queued, or finished, by another process just now.
                return None
        return JobInfo(job_id=job_id, status="queued", enqueued_at=enqueued_at)

    async def status(self, job_id: str) -> JobInfo | None:
        if not is_job_id(job_id, self.queue_name, self.functions):
            return None  # No job of this service: Redis is not asked.
        try:
            job = await self._status(job_id)
        except RedisError as error:
            raise self._unavailable(error) from error
        outage("redis").answered()
        return job

    def _unavailable(self, error: RedisError) -> ServiceUnavailableError:
        outage("redis").failed(failure_reason(error), error)
        return ServiceUnavailableError(UNAVAILABLE, retry_after=RETRY_AFTER_SECONDS)

    async def _status(self, job_id: str) -> JobInfo | None:
        """The job's state; None for an entry this service cannot have written (not
        its JSON, or no string), as for no job at all."""
        try:
            return await self._read_status(job_id)
        except (DeserializationError, ResponseError) as error:
            if isinstance(error, ResponseError) and not is_wrong_type(error):
                raise
            log.warning("job_unreadable", job_id=job_id, error=describe_error(error))
            return None

    async def _read_status(self, job_id: str) -> JobInfo | None:
        """What ARQ's Job.status and Job.info read, in one transaction: read one
        after the other, they could miss a job whose result made way just between."""
        async with self.redis.pipeline(transaction=True) as transaction:
            transaction.get(result_key_prefix + job_id)
            transaction.exists(in_progress_key_prefix + job_id)
            transaction.zscore(self.queue_name, job_id)
            transaction.get(job_key_prefix + job_id)
            replies = await transaction.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        result, in_progress, score, definition = replies
        if result is not None:
            outcome = deserialize_result(result, deserializer=deserialize)
            return JobInfo(
                job_id=job_id,
                status="complete" if outcome.success else "failed",
                result=outcome.result if outcome.success else None,
                error=None if outcome.success else str(outcome.result),
                enqueued_at=outcome.enqueue_time.astimezone(UTC),
                finished_at=outcome.finish_time.astimezone(UTC),
            )
        if not in_progress and score is None:
            return None
        enqueued_at = None
        if definition is not None:
            job = deserialize_job(definition, deserializer=deserialize)
            enqueued_at = job.enqueue_time.astimezone(UTC)
        return JobInfo(
            job_id=job_id,
            status="in_progress" if in_progress else "queued",
            enqueued_at=enqueued_at,
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
            self._execute(
                run,
                job,
                arguments,
                correlation_id.get(),
                structlog.contextvars.get_contextvars(),
            )
        )
        self._runs[job_id] = run
        return run.info()

    async def _execute(
        self,
        run: _Run,
        job: WorkerCoroutine,
        args: list[Any],
        request_id: str | None,
        log_fields: dict[str, Any],
    ) -> None:
        for job_try in range(1, self.max_tries + 1):
            run.status = "in_progress"
            ctx = {**self.ctx, "job_id": run.job_id, "job_try": job_try}
            try:
                async with asyncio.timeout(self.timeout):
                    result = await job(
                        ctx, *args, request_id=request_id, log_fields=log_fields
                    )
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
        if not is_job_id(job_id, self.queue_name, self.functions):
            return None
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
