"""The job queue's settings; it needs Redis in production."""

from pydantic import Field

from .. import DISTRIBUTION
from ..redis_client import RedisSettings


class JobSettings(RedisSettings):
    # Part of each unique job's ID, which the Location of a queued job holds: no
    # character that a URL path gives another meaning.
    job_queue_name: str = Field(default=f"{DISTRIBUTION}:jobs", pattern=r"^[^/?#%\s]+$")
    job_max_tries: int = Field(default=3, ge=1)
    job_timeout: float = Field(default=300.0, gt=0)
    job_keep_result: float = Field(default=3600.0, ge=0)
    worker_max_jobs: int = Field(default=10, ge=1)

    def startup_problems(self) -> list[str]:
        problems = super().startup_problems()
        if self.is_production and self.redis_url is None:
            problems.append("REDIS_URL: the job queue needs Redis in production")
        return problems
