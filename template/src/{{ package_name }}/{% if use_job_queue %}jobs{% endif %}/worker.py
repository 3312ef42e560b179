"""Where jobs run: ARQ worker processes, or the API process itself without Redis."""

import asyncio
import contextlib
import os
import socket
from typing import Any

import arq.worker
from arq import ArqRedis, Worker, cron, func
from arq.connections import RedisSettings
from redis.asyncio import Redis

from ..db import Database
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
    arq_redis = ArqRedis(
        redis.connection_pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=settings.job_queue_name,
    )
    return ArqJobQueue(arq_redis, settings.job_queue_name)


def create_worker(settings: JobSettings, **options: Any) -> Worker:
    """An ARQ worker for ``REDIS_URL``; ``options`` override the Worker's arguments."""
    if settings.redis_url is None:
        raise ValueError("the worker needs REDIS_URL")
    database = Database(settings)

    async def startup(ctx: dict[Any, Any]) -> None:
        ctx["queue"] = ArqJobQueue(ctx["redis"], settings.job_queue_name)

    async def shutdown(ctx: dict[Any, Any]) -> None:
        await database.dispose()

    arguments: dict[str, Any] = {
        "functions": [func(job, name=name) for name, job in JOBS.items()],
        # The cron example: every hour, on the hour, one worker queues the items
        # that were missed. Edit or remove it here.
        "cron_jobs": [cron(with_request_id(queue_unprocessed_items), minute=0)],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
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
    try:
        # The signal handler cancels the worker's main task: the normal way out.
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()
    finally:
        await worker.close()
