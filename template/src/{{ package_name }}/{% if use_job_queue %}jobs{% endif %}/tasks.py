"""The jobs: ``process_item``, and a cron job that queues the items it has missed."""

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from arq import Retry
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db import Database, is_database_unavailable, utc_now
from ..items.models import Item
from ..items.service import get_item
from ..logs import get_logger
from ..problems import NotFoundError
from .models import ItemResult
from .schemas import ItemResultRead, JobInfo

if TYPE_CHECKING:
    from .queue import JobQueue

log = get_logger(__name__)

# A try that finds the database unreachable is retried after 5 s, then 10 s, 20 s, ...
# until JOB_MAX_TRIES tries have been made.
RETRY_BASE_DELAY = timedelta(seconds=5)
# The most items one run of the cron job queues.
SWEEP_BATCH_SIZE = 100


async def store_result(session: AsyncSession, item_id: int) -> ItemResult:
    """Compute the item's result and store it; running it again updates the same row."""
    item = await get_item(session, item_id, lock=True)
    text = f"{item.name}\n{item.description or ''}"
    result = await session.get(ItemResult, item_id) or ItemResult(item_id=item_id)
    result.word_count = len(text.split())
    result.checksum = hashlib.sha256(text.encode()).hexdigest()
    result.processed_at = utc_now()
    session.add(result)
    await session.flush()
    return result


async def process_item(ctx: dict[str, Any], item_id: int) -> dict[str, Any] | None:
    """Process one item and return its result.

    An unreachable database is retried with backoff; an item deleted since the job was
    queued is skipped (the result is None).
    """
    database: Database = ctx["database"]
    try:
        async with database.sessions.begin() as session:
            result = await store_result(session, item_id)
    except NotFoundError:
        log.warning("item_gone", item_id=item_id)
        return None
    except Exception as error:
        if not is_database_unavailable(error):
            raise
        delay = RETRY_BASE_DELAY * 2 ** (ctx["job_try"] - 1)
        log.warning(
            "database_unavailable",
            item_id=item_id,
            retry_in_s=delay.total_seconds(),
            error=str(error),
        )
        raise Retry(defer=delay) from error
    log.info("item_processed", item_id=item_id, word_count=result.word_count)
    return ItemResultRead.model_validate(result).model_dump(mode="json")


async def queue_processing(queue: "JobQueue", item_id: int) -> JobInfo:
    """Queue ``process_item`` for an item; while one is pending, return that one."""
    return await queue.enqueue(process_item.__name__, item_id, unique_key=str(item_id))


async def queue_unprocessed_items(ctx: dict[str, Any]) -> int:
    """Cron job: queue the items never processed, or changed since they were."""
    database: Database = ctx["database"]
    async with database.sessions() as session:
        item_ids = await session.scalars(
            select(Item.id)
            .outerjoin(ItemResult)
            .where(
                or_(
                    ItemResult.item_id.is_(None),
                    ItemResult.processed_at < Item.updated_at,
                )
            )
            .order_by(Item.id)
            .limit(SWEEP_BATCH_SIZE)
        )
        queued = list(item_ids)
    for item_id in queued:
        await queue_processing(ctx["queue"], item_id)
    log.info("unprocessed_items_queued", count=len(queued))
    return len(queued)
