"""DAG integrity: every file in dags/ parses, and every DAG follows the project's policies.

Policies: an owner other than the default "airflow", at least one tag, ``retries >= 1`` in
``default_args``, a ``doc_md``; and no DAG file imports pandas at top level (the DAG
processor re-parses files every few minutes, so heavy imports belong inside tasks).

Files whose name starts with ``_`` are helper modules, not DAG files. The test is
parametrised over the files present, so it keeps checking new DAGs as they are added;
with no DAG files it still checks that dags/ exists and that parsing it is error-free.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO / "dags"
HEAVY_MODULES = ("pandas", "pyarrow", "openpyxl")


def _dag_files() -> list[Path]:
    if not DAGS_DIR.is_dir():
        return []
    return sorted(
        p for p in DAGS_DIR.rglob("*.py") if not p.name.startswith("_") and "__pycache__" not in p.parts
    )


DAG_FILES = _dag_files()


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR), safe_mode=False)


def test_dags_folder_exists_and_is_configured():
    assert DAGS_DIR.is_dir(), "dags/ is missing"
    assert Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).resolve() == DAGS_DIR.resolve()


def test_dag_folder_parses_without_import_errors(dagbag):
    errors = {
        Path(path).name: message.strip().splitlines()[-1] for path, message in dagbag.import_errors.items()
    }
    assert errors == {}, f"DAG files failing to import: {json.dumps(errors, indent=2)}"
    # Every DAG in the bag comes from dags/ (no stray example or test DAGs).
    for dag in dagbag.dags.values():
        assert Path(dag.fileloc).resolve().is_relative_to(DAGS_DIR.resolve()), dag.fileloc


def _dags_of(dagbag, path: Path) -> list:
    return [dag for dag in dagbag.dags.values() if Path(dag.fileloc).resolve() == path.resolve()]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: str(p.relative_to(DAGS_DIR)))
def test_dag_file_defines_compliant_dags(dagbag, path: Path):
    assert str(path) not in dagbag.import_errors, dagbag.import_errors.get(str(path))
    dags = _dags_of(dagbag, path)
    assert dags, f"{path.name} defines no DAG (name helper modules with a leading underscore)"
    for dag in dags:
        problems = []
        owners = {task.owner for task in dag.tasks}
        if not owners or owners & {"airflow", "", None}:
            problems.append(f"owner must name the team, got {sorted(map(str, owners))}")
        if not dag.tags:
            problems.append("no tags")
        retries = (dag.default_args or {}).get("retries")
        if not isinstance(retries, int) or retries < 1:
            problems.append(f"default_args retries must be >= 1, got {retries!r}")
        if not (dag.doc_md or "").strip():
            problems.append("no doc_md")
        problems += _ui_form_problems(dag)
        # The DAG list shows only the timetable's main part (an Asset, say): the description says when it runs.
        if not any(word in (dag.description or "").lower() for word in ("hourly", "daily", "weekly", "manual")):
            problems.append(f"description must say when it runs, got {dag.description!r}")
        assert not problems, f"{dag.dag_id} ({path.name}): " + "; ".join(problems)


def _ui_form_problems(dag) -> list[str]:
    """Params the UI's Trigger and Run Backfill forms accept unchanged.

    The form sends an empty text field as ``null``: a param whose schema refuses ``null`` and
    whose default is empty keeps the form's button disabled until someone types into it.
    """
    import jsonschema

    problems = []
    for name, param in dag.params.items():
        schema = dict(param.schema)
        types = schema.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        if param.value in (None, "") and "null" not in types:
            problems.append(f"param {name!r}: empty default {param.value!r} but type {types} refuses null")
            continue
        try:
            jsonschema.validate(param.value, schema)
        except jsonschema.ValidationError as exc:
            problems.append(f"param {name!r}: default {param.value!r} invalid ({exc.message})")
        if param.value is None:
            try:
                jsonschema.validate(None, schema)
            except jsonschema.ValidationError as exc:
                problems.append(f"param {name!r}: the form's null is refused ({exc.message})")
    return problems


def test_ui_form_check_flags_a_param_the_form_cannot_send():
    from airflow.sdk import DAG, Param

    with DAG("form_probe", schedule=None, params={"file": Param("", type="string")}) as bad:
        pass
    with DAG("form_probe_ok", schedule=None, params={"file": Param(None, type=["null", "string"])}) as good:
        pass
    assert _ui_form_problems(bad) and not _ui_form_problems(good)


# Imports each DAG file in a forked child of one interpreter that already has Airflow
# loaded, and reports which heavy modules the file itself pulled in.
_PROBE = r"""
import importlib.util, json, os, sys
import airflow.sdk  # noqa: F401  (baseline: Airflow itself)
heavy = sys.argv[1].split(",")
baseline = [m for m in heavy if m in sys.modules]
results = {"__baseline__": baseline}
for path in sys.argv[2:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            spec = importlib.util.spec_from_file_location("dag_probe", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            out = [m for m in heavy if m in sys.modules]
        except BaseException as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    results[path] = json.loads(b"".join(chunks) or b'{"error": "no answer"}')
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def top_level_imports() -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(HEAVY_MODULES), *map(str, DAG_FILES)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(DAGS_DIR), os.environ.get("PYTHONPATH", "")])},
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_airflow_alone_does_not_load_heavy_modules(top_level_imports):
    # Otherwise the per-file check below could not tell a DAG file's imports from Airflow's.
    assert top_level_imports["__baseline__"] == []


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: str(p.relative_to(DAGS_DIR)))
def test_dag_file_does_not_import_heavy_modules_at_top_level(top_level_imports, path: Path):
    loaded = top_level_imports[str(path)]
    assert not isinstance(loaded, dict), f"{path.name} failed to import: {loaded['error']}"
    assert loaded == [], f"{path.name} imports {loaded} at top level; import them inside the tasks"
