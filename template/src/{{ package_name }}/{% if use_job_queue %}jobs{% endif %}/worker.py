"""Where jobs run: ARQ worker processes, or the API process itself without Redis."""

import asyncio
import contextlib
import itertools
import os
import socket
from typing import Any

import arq.worker
from arq import ArqRedis, Worker, cron, func
from redis.asyncio import ConnectionPool, Redis
from redis.backoff import EqualJitterBackoff
from redis.exceptions import RedisError, WatchError

from ..db import Database
from ..logs import get_logger
from ..outages import outage
from ..redis_client import REDIS_DOWN, connection_pool, failure_reason
from .queue import (
    ArqJobQueue,
    InProcessJobQueue,
    JobQueue,
    deserialize,
    heartbeat_key,
    serialize,
    with_request_id,
)
from .settings import JobSettings
from .tasks import process_item, queue_unprocessed_items

# The jobs that can be queued, by name.
JOBS = {job.__name__: with_request_id(job) for job in (process_item,)}
# On SIGTERM a worker takes no new jobs and gives the running ones this long to finish;
# it then cancels the rest, which go back to the queue for another worker.
SHUTDOWN_GRACE_SECONDS = 25
# How often a worker rewrites its health record; the API counts the live workers from
# these records, so a worker that died stops counting this many seconds later.
HEARTBEAT_SECONDS = 10
# While Redis is out, a worker pings it after a pause that grows to this many seconds.
RECONNECT_MAX_SECONDS = 2.0
# What stops a worker's loop when Redis is lost. A connection lost while ARQ watches
# a key (to take a job) comes out as a WatchError.
REDIS_LOST: tuple[type[RedisError], ...] = (*REDIS_DOWN, WatchError)

log = get_logger(__name__)


def create_job_queue(
    settings: JobSettings, database: Database, redis: Redis | None
) -> JobQueue:
    """The queue the API sends jobs to: ARQ on ``redis``, or in-process without it."""
    if redis is None:
        return InProcessJobQueue(
            JOBS,
            {"database": database},
            queue_name=settings.job_queue_name,
            max_tries=settings.job_max_tries,
            timeout=settings.job_timeout,
            keep_result=settings.job_keep_result,
        )
    arq_client = arq_redis(settings, redis.connection_pool)
    return ArqJobQueue(arq_client, settings.job_queue_name, JOBS)


def arq_redis(settings: JobSettings, pool: ConnectionPool) -> ArqRedis:
    """ARQ's client on ``pool``, with the jobs stored as JSON."""
    return ArqRedis(
        pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=settings.job_queue_name,
    )


def create_worker(settings: JobSettings, **options: Any) -> Worker:
    """An ARQ worker for ``REDIS_URL``; ``options`` override the Worker's arguments."""
    if settings.redis_url is None:
        raise ValueError("the worker needs REDIS_URL")
    database = Database(settings)
    # The API's timeouts and retries, rather than those of ARQ's own pool (which has
    # no timeout for an answer: a stuck Redis would hang the worker).
    pool = connection_pool(settings)

    async def startup(ctx: dict[Any, Any]) -> None:
        ctx["queue"] = ArqJobQueue(ctx["redis"], settings.job_queue_name, JOBS)

    async def shutdown(ctx: dict[Any, Any]) -> None:
        await database.dispose()

    arguments: dict[str, Any] = {
        "functions": [func(job, name=name) for name, job in JOBS.items()],
        # The cron example: every hour, on the hour, one worker queues the items
        # that were missed. Edit or remove it here.
        "cron_jobs": [cron(with_request_id(queue_unprocessed_items), minute=0)],
        "redis_pool": arq_redis(settings, pool),
        "queue_name": settings.job_queue_name,
        "max_jobs": settings.worker_max_jobs,
        "job_timeout": settings.job_timeout,
        "keep_result": settings.job_keep_result,
        "max_tries": settings.job_max_tries,
        "job_completion_wait": SHUTDOWN_GRACE_SECONDS,
        "health_check_interval": HEARTBEAT_SECONDS,
        "health_check_key": heartbeat_key(
            settings.job_queue_name, f"{socket.gethostname()}:{os.getpid()}"
        ),
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "ctx": {"database": database},
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
    # Through arq.worker.create_worker, where integrations (error reporting) hook in.
    return arq.worker.create_worker(arguments, **options)


def run_worker(settings: JobSettings) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    asyncio.run(_run(settings))


async def _run(settings: JobSettings) -> None:
    worker = create_worker(settings)
    stopped = asyncio.Event()
    # ARQ's signal handler cancels the worker's main task, then calls this.
    worker.on_stop = lambda signal: stopped.set()
    try:
        await run_until_stopped(worker, stopped)
    finally:
        await close_worker(worker)


async def run_until_stopped(worker: Worker, stopped: asyncio.Event) -> None:
    """Run the worker; when Redis is lost, wait for it and run it again.

    ARQ's worker ends when a call to Redis fails; run again, it goes on with the same
    pool and counters, and the jobs it was running carry on meanwhile. One that ends
    while Redis is out cannot store its result: ARQ runs it again once its
    in-progress mark expires (JOB_TIMEOUT + 10 s).
    """
    while not stopped.is_set():
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            if stopped.is_set():
                return  # Stopped by a signal: the normal way out.
            raise
        except REDIS_LOST as error:
            await wait_for_redis(worker.pool, error, stopped)
        else:
            return  # A burst worker that has run every job.


async def wait_for_redis(
    redis: Redis, error: RedisError, stopped: asyncio.Event
) -> None:
    """Log that Redis is lost, ping it with backoff until it answers (and log that),
    or until the worker is stopped."""
    redis_outage = outage("redis")
    redis_outage.failed(failure_reason(error), error)
    backoff = EqualJitterBackoff(cap=RECONNECT_MAX_SECONDS, base=0.1)
    for failures in itertools.count(1):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(backoff.compute(failures)):
                await stopped.wait()
        if stopped.is_set():
            return
        try:
            await redis.ping()
        except REDIS_LOST:
            continue
        redis_outage.answered()
        return


async def close_worker(worker: Worker) -> None:
    """Close the worker; without Redis, say so rather than fail with a traceback."""
    try:
        await worker.close()
    except REDIS_LOST as error:
        log.warning("worker_closed_without_redis", error=type(error).__name__)
