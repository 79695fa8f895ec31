"""Debian's Chromium for the browser tests (Playwright and headless runs drive it; no download)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium(on_missing: Callable[[str], object]) -> None:
    """Install Chromium with scripts/install-chromium.sh when absent; ``on_missing(reason)`` if that fails.

    ``on_missing`` is ``pytest.fail`` where the browser is required, ``pytest.skip`` where it is not.
    """
    if CHROMIUM.exists():
        return
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-chromium.sh")], capture_output=True, text=True, timeout=900
    )
    if not CHROMIUM.exists():
        on_missing(f"Chromium missing and scripts/install-chromium.sh failed: {result.stderr[-800:]}")
