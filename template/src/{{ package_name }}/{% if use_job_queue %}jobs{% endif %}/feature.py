"""The job queue as a feature: its settings, routes, queue, health check and worker."""

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import APIRouter, FastAPI
from starlette.datastructures import State

from ..feature import Commands, Feature, HealthCheck, Service, echo
from ..redis_client import SharedRedis, get_redis
from ..settings import Settings
from .models import ItemResult
from .queue import JobQueue
from .router import router
from .settings import JobSettings
from .worker import create_job_queue, run_worker


async def check_job_queue(state: State) -> dict[str, int]:
    """Reach the queue, and report its jobs and workers."""
    queue: JobQueue = state.job_queue
    return asdict(await queue.stats())


def worker(args: argparse.Namespace, service: Service) -> int:
    """The ``worker`` command."""
    settings = JobSettings.of(service.settings)
    if settings.redis_url is None:
        echo("REDIS_URL is not set: the worker needs Redis.", error=True)
        return 1
    service.configure_process()
    run_worker(settings)
    return 0


class BackgroundJobs(Feature):
    """Jobs queued by the API and run by ARQ workers, or in process without Redis."""

    settings = (JobSettings,)
    requires = (SharedRedis,)
    models = (ItemResult,)
    libraries = ("arq",)

    def api_routers(self) -> list[APIRouter]:
        return [router]

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        settings = JobSettings.of(app.state.settings)
        app.state.job_queue = queue = create_job_queue(
            settings, app.state.database, get_redis(app)
        )
        try:
            yield
        finally:
            await queue.close()

    def health_checks(self, service: Service) -> list[HealthCheck]:
        # On Redis, soft: Redis is shared by every instance, so failing readiness
        # would take them all out of service, the items API with them; the job
        # routes answer 503 themselves meanwhile. In process, hard: the queue is
        # this process's own, and a failure of it is this instance's alone.
        in_process = JobSettings.of(service.settings).redis_url is None
        check = HealthCheck(
            name="job_queue",
            type="in_process" if in_process else "arq",
            probe=check_job_queue,
            hard=in_process,
        )
        return [check]

    def add_commands(self, commands: Commands) -> None:
        commands.add("worker", "run the background job worker", worker)

    def summary(self, settings: Settings) -> dict[str, object]:
        # Without Redis the jobs run in the API process (development only).
        in_process = JobSettings.of(settings).redis_url is None
        return {"job_queue": "in_process" if in_process else "arq"}
