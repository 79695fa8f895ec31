"""Helpers for the transform tests: write odd input files and run a batch end to end."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from threekit_pipeline.transform import TransformResult, load_mapping, transform_files


@dataclass
class Outcome:
    result: TransformResult
    entries: dict[str, dict]  # sku -> entry
    lines: list[str]
    errors: list[dict[str, str]]

    def reasons(self, file: str | None = None) -> list[str]:
        return [e["reason"] for e in self.errors if file is None or e["file"] == file]

    def error_at(self, file: str, line: int) -> list[dict[str, str]]:
        return [e for e in self.errors if e["file"] == file and e["line"] == str(line)]


def read_errors(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        # Row errors of SKU-keyed sources also name the SKU (trailing column).
        assert reader.fieldnames in (
            ["file", "line", "column", "value", "reason"],
            ["file", "line", "column", "value", "reason", "sku"],
        )
        return list(reader)


@pytest.fixture
def write(tmp_path):
    """write(name, text, encoding="utf-8") -> Path; text is written exactly (no newline translation)."""

    def _write(name: str, text: str | bytes, encoding: str = "utf-8") -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
        return path

    return _write


@pytest.fixture
def run(tmp_path):
    """run(files, mapping="canonical") -> Outcome; output in a fresh folder per call."""
    counter = {"n": 0}

    def _run(files: list[Path], mapping="canonical") -> Outcome:
        counter["n"] += 1
        out_dir = tmp_path / f"out{counter['n']}"
        out_dir.mkdir()
        mapping = load_mapping(mapping) if isinstance(mapping, (str, Path)) else mapping
        result = transform_files(mapping, files, out_dir / "catalog.jsonl")
        text = Path(result.output).read_text(encoding="utf-8")
        lines = text.splitlines()
        entries = {}
        for line in lines:
            entry = json.loads(line)
            entries[entry["query"]["metadata"][0]["defaultValue"]] = entry
        return Outcome(result, entries, lines, read_errors(Path(result.errors)))

    return _run
