"""Catalog benchmarks' set-up: generated catalog files beside a fresh Threekit sandbox."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def catalog_and_sandbox(work: Path, products: int, org_id: str) -> Iterator[tuple[dict[str, Path], Any, Any]]:
    """``(files, server, client)``: ``products`` generated products (3 options and 2 prices each,
    translations left out) under ``<work>/files``, a Threekit sandbox on ``<work>/threekit``
    (20 ms per job) and a client of it. The sandbox is stopped on exit.
    """
    from threekit_pipeline.samples.catalog import generate_catalog
    from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess
    from threekit_pipeline.threekit.client import ThreekitClient

    generated = generate_catalog(work / "files", products=products, options_per_product=3, prices_per_product=2)
    files = {name: path for name, path in generated.items() if name != "translations"}
    server = ThreekitSandboxProcess(
        data_dir=work / "threekit", token=secrets.token_hex(16), org_id=org_id, job_delay_ms=20
    ).start()
    try:
        yield files, server, ThreekitClient(server.base_url, server.token, org_id)
    finally:
        server.stop()
