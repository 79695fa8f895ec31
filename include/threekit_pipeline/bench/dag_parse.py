"""DAG file parse time: all DAGs of ``dags/`` together against an empty DAG file.

Each side runs in a fresh interpreter that imports Airflow's SDK first (the dag-processor has
it loaded already), then times ``DagBag`` parsing of the folder. Target: under 1 s in total.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from threekit_pipeline.bench._measure import python_child, ratio

REPO = Path(__file__).resolve().parents[3]

_PARSE = r"""
import json, sys, time
import airflow.sdk  # noqa: F401  (warm, as in the dag-processor)
from airflow.dag_processing.dagbag import DagBag
folder = sys.argv[1]
# One cold round: the dag-processor parses each file in a fresh process in which only Airflow
# itself is already imported, so the project modules a DAG file imports count too.
start = time.perf_counter()
bag = DagBag(dag_folder=folder)
best = time.perf_counter() - start
print("RESULT " + json.dumps({"seconds": best, "dags": len(bag.dags), "errors": {k: str(v)[:300] for k, v in bag.import_errors.items()}}))
"""

_EMPTY_DAG = '''"""An empty DAG: the parse-time floor."""
from airflow.sdk import dag


@dag(schedule=None)
def empty():
    pass


empty()
'''


def _result(stdout: str) -> dict:
    (line,) = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def run(work_dir: Path) -> dict:
    dags_dir = REPO / "dags"
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        (Path(tmp) / "empty_dag.py").write_text(_EMPTY_DAG)
        floor = _result(python_child(_PARSE, tmp).stdout)
    ours = _result(python_child(_PARSE, str(dags_dir)).stdout)
    return {
        "dag_files": len(list(dags_dir.glob("*.py"))),
        "dags": ours["dags"],
        "import_errors": ours["errors"],
        "parse_s": round(ours["seconds"], 4),
        "empty_dag_parse_s": round(floor["seconds"], 4),
        "ratio": ratio(ours["seconds"], floor["seconds"]),
        "target": "parse_s < 1.0",
        "met": ours["seconds"] < 1.0 and not ours["errors"],
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir())), indent=2))
