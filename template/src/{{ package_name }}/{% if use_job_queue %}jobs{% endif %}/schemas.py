"""Response bodies of the jobs API."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "in_progress", "complete", "failed"]


class ItemResultRead(BaseModel):
    """What processing an item computed."""

    model_config = ConfigDict(from_attributes=True)

    item_id: int
    word_count: int = Field(description="Words in the name and description.")
    checksum: str = Field(description="SHA-256 of the name and description.")
    processed_at: datetime


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus


class JobInfo(BaseModel):
    """A job's state; ``result`` is the job's return value once it is complete."""

    job_id: str
    status: JobStatus
    result: Any = None
    error: str | None = Field(default=None, description="Why a failed job failed.")
    enqueued_at: datetime | None = None
    finished_at: datetime | None = None
