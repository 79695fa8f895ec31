"""Move the wall clock of every Python process of a test run: ``THREEKIT_TEST_CLOCK``.

The suite must pass on any date. To prove it, run it with the clock moved::

    THREEKIT_TEST_CLOCK=+76d make test          # 76 days ahead (another month)
    THREEKIT_TEST_CLOCK=2027-02-14 make test    # that day, at the current time of day

Values: ``+N`` / ``-N`` followed by ``d`` (days), ``h`` (hours) or ``s`` (seconds), or an
ISO date or datetime (UTC when naive). The first process that reads the variable turns it
into a fixed offset in seconds and writes that back into the environment, so every
process started afterwards (pytest-xdist workers, Airflow's scheduler, API server and
task runners, Celery workers, the sandboxes) runs on the same moved clock: wall-clock
time (``time.time``, ``datetime.now``, ``date.today``...) is ``real + offset`` and keeps
ticking. Monotonic clocks are not moved, so timeouts and waits behave normally.

Processes that are not Python (PostgreSQL, vsftpd, ProFTPD, OpenSSH) keep the real clock,
like servers whose clock differs from the pipeline host's. The clock is moved with
``time-machine`` (it patches the C-level time functions of the interpreter), not with
``libfaketime``, whose interposed calls break Python's timed waits.

Reaching the other processes: ``tests/conftest.py`` puts this folder on ``PYTHONPATH``,
where ``sitecustomize.py`` applies the offset when an interpreter starts.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

VARIABLE = "THREEKIT_TEST_CLOCK"
_OFFSET = re.compile(r"^([+-]\d+(?:\.\d+)?)([dhs])$")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "s": 1.0}

_traveller = None


def parse_offset(spec: str, *, now: float) -> float:
    """Seconds to add to the real clock for ``spec`` (``+76d``, ``-3h``, ``2027-02-14``...).

    Raises ``ValueError`` naming the variable when ``spec`` is neither form.
    """
    spec = spec.strip()
    match = _OFFSET.match(spec)
    if match:
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        target = datetime.fromisoformat(spec)
    except ValueError:
        raise ValueError(
            f"{VARIABLE}={spec!r}: expected +N/-N with d, h or s (e.g. +76d) or an ISO date (2027-02-14)"
        ) from None
    if target.tzinfo is None:
        target = target.replace(tzinfo=UTC)
    if len(spec) == 10:  # a date: keep the current time of day
        real = datetime.fromtimestamp(now, UTC)
        target = target.replace(hour=real.hour, minute=real.minute, second=real.second)
    return target.timestamp() - now


def apply() -> float | None:
    """Move this interpreter's clock per ``THREEKIT_TEST_CLOCK`` (idempotent).

    Returns the offset in seconds, or None when the variable is unset. The variable is
    rewritten as ``+<seconds>s`` so that child processes use the same offset.
    """
    global _traveller
    spec = os.environ.get(VARIABLE, "").strip()
    if not spec:
        return None
    if _traveller is not None:
        return _traveller[1]
    import time_machine

    real_now = time.time()
    offset = parse_offset(spec, now=real_now)
    os.environ[VARIABLE] = f"{offset:+.6f}s"
    traveller = time_machine.travel(real_now + offset, tick=True)
    traveller.start()
    _traveller = (traveller, offset)
    return offset
