"""Redis: the run's server answers, and the run keeps to its own key prefix."""

from redis.asyncio import Redis


async def test_keys_round_trip_under_the_run_prefix(
    redis_url: str, redis_prefix: str
) -> None:
    client = Redis.from_url(redis_url)
    try:
        await client.set(f"{redis_prefix}greeting", "hello", ex=60)
        assert await client.get(f"{redis_prefix}greeting") == b"hello"
    finally:
        await client.aclose()
