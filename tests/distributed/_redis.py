"""A Redis database of the loopback server that no other test run on this machine holds."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def private_redis_database() -> Iterator[str]:
    """A Redis database (9..15) no other suite on this machine holds: claimed in DB 0, freed after.

    The cluster flushes its broker database on start; two suites running at once must not share one.
    """
    import redis

    admin = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=10)
    owner = f"{os.getpid()}-{time.time_ns()}"
    for number in range(9, 16):
        key = f"threekit-pipeline-tests:redis-db:{number}"
        if admin.set(key, owner, nx=True, ex=3 * 3600):
            try:
                yield f"redis://127.0.0.1:6379/{number}"
            finally:
                if admin.get(key) == owner.encode():
                    admin.delete(key)
            return
    raise RuntimeError("Redis databases 9..15 are all claimed by other test runs")
