"""HTTP routes: process an item in the background or inline, and read a job's status."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import JSONResponse

from ..db import SessionDep
from ..items.schemas import ItemId
from ..items.service import get_item
from ..problems import PROBLEM_RESPONSES, NotFoundError
from .queue import JobQueue, job_id_pattern
from .schemas import ItemResultRead, JobAccepted, JobInfo
from .tasks import queue_processing, store_result
from .worker import JOBS


def get_job_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.job_queue
    return queue


JobQueueDep = Annotated[JobQueue, Depends(get_job_queue)]
# Documented, not enforced by FastAPI: an ID of another form is a 404, as an unknown
# one is, rather than a 422.
JobId = Annotated[
    str,
    Path(
        description="The ID that queueing the job returned.",
        json_schema_extra={"pattern": job_id_pattern(JOBS)},
    ),
]

router = APIRouter(responses=PROBLEM_RESPONSES)


@router.post(
    "/items/{item_id}/process",
    tags=["items"],
    summary="Process an item",
    response_model=ItemResultRead,
    responses={
        status.HTTP_202_ACCEPTED: {
            "model": JobAccepted,
            "description": "Queued; the Location header is the job's status URL.",
        }
    },
)
async def process_item(
    item_id: ItemId,
    request: Request,
    session: SessionDep,
    queue: JobQueueDep,
    background: Annotated[
        bool, Query(description="Queue a job (202), or process now (200).")
    ] = True,
) -> ItemResultRead | JSONResponse:
    """Compute and store the item's result, in a background job or right away.

    While a job for the item is pending, asking again returns that job.
    """
    if not background:
        return ItemResultRead.model_validate(await store_result(session, item_id))
    await get_item(session, item_id)  # A missing item is a 404, not a queued job.
    job = await queue_processing(queue, item_id)
    accepted = JobAccepted(job_id=job.job_id, status=job.status)
    # A path, not a URL: a URL would be built from the Host header, which the
    # client sends and anyone can forge.
    path = request.app.url_path_for("get_job", job_id=job.job_id)
    location = request.scope.get("root_path", "") + path
    return JSONResponse(
        accepted.model_dump(),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": location},
    )


@router.get("/jobs/{job_id}", tags=["jobs"], summary="Get a job")
async def get_job(job_id: JobId, queue: JobQueueDep) -> JobInfo:
    """The job's status, and its result once it is complete.

    A job is kept for ``JOB_KEEP_RESULT`` seconds after it ends; after that, as for an
    unknown ID, the answer is 404. While the queue is unavailable the answer is 503,
    with Retry-After.
    """
    job = await queue.status(job_id)
    if job is None:
        raise NotFoundError(f"Job {job_id} does not exist or has expired.")
    return job
