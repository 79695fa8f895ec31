"""A throwaway PostgreSQL database on the loopback server (trust auth) for ledger tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from threekit_pipeline.devtools.cluster import (
    DEFAULT_POSTGRES_ADMIN_DSN,
    drop_postgres_database,
    reset_postgres_database,
)

ADMIN_DSN = os.environ.get("THREEKIT_TEST_POSTGRES_ADMIN_DSN", DEFAULT_POSTGRES_ADMIN_DSN)


@contextmanager
def throwaway_database(prefix: str = "ledger_test") -> Iterator[str]:
    """Create an empty database, yield its DSN, drop it afterwards (its sessions terminated)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    reset_postgres_database(ADMIN_DSN, name)
    try:
        yield ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        drop_postgres_database(ADMIN_DSN, name)
