"""Which pinned packages the Docker image must install on top of ``apache/airflow:3.3.2-python3.11``.

The official image ships Airflow and its providers installed under Airflow's own constraints.
Installing the whole ``requirements.lock`` over it (even with ``--no-deps``) would replace packages
the image's Airflow was built and tested with, so the ``Dockerfile`` installs only:

* the project's direct runtime pins (``requirements.txt`` above the test/tooling section) whose
  version in the image differs or which are missing: the versions this project is tested with;
* any other pin of ``requirements.lock`` that the image lacks altogether;

never the Airflow core distributions (the image's own) nor the test/tooling pins. ``pip check``
in the ``Dockerfile`` then proves the result consistent. Run as a script (stdlib only, before the
project is installed)::

    python image_requirements.py requirements.txt requirements.lock > extra-requirements.txt
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

#: Distributions that belong to the base image and are never reinstalled.
IMAGE_OWNED = frozenset({"apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"})

#: The comment in requirements.txt after which the pins are test/tooling only.
TOOLING_MARKER = re.compile(r"^#\s*test and tooling", re.IGNORECASE)

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def normalize(name: str) -> str:
    """PEP 503 name normalization (``Foo_Bar`` and ``foo-bar`` are the same distribution)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: Iterable[str], *, stop_at_tooling: bool = False) -> dict[str, str]:
    """``name==version`` lines as ``{normalized name: version}``; other lines are ignored."""
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if stop_at_tooling and TOOLING_MARKER.match(line):
            break
        match = _PIN.match(line)
        if match:
            pins[normalize(match.group(1))] = match.group(3)
    return pins


def tooling_pins(lines: Iterable[str]) -> set[str]:
    """Names pinned below the test/tooling marker of requirements.txt."""
    lines = list(lines)
    for index, line in enumerate(lines):
        if TOOLING_MARKER.match(line.strip()):
            return set(parse_pins(lines[index + 1 :]))
    return set()


def installed_distributions() -> dict[str, str]:
    """``{normalized name: version}`` of this interpreter's environment."""
    return {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def select_image_requirements(
    direct: Mapping[str, str], lock: Mapping[str, str], installed: Mapping[str, str], tooling: Iterable[str] = ()
) -> list[str]:
    """Sorted ``name==version`` lines to install over the base image (see module docstring)."""
    skip = IMAGE_OWNED | {normalize(n) for n in tooling}
    wanted: dict[str, str] = {}
    for name, version in direct.items():
        if name not in skip and installed.get(name) != version:
            wanted[name] = version
    for name, version in lock.items():
        if name not in skip and name not in installed:
            wanted[name] = version
    return [f"{name}=={version}" for name, version in sorted(wanted.items())]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: image_requirements.py REQUIREMENTS_TXT REQUIREMENTS_LOCK", file=sys.stderr)
        return 2
    requirements = Path(args[0]).read_text().splitlines()
    lock = parse_pins(Path(args[1]).read_text().splitlines())
    selected = select_image_requirements(
        parse_pins(requirements, stop_at_tooling=True), lock, installed_distributions(), tooling_pins(requirements)
    )
    for line in selected:
        print(line)
    print(f"{len(selected)} pin(s) to install over the base image", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
