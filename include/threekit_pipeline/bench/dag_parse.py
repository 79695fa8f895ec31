"""DAG file parse time: all DAGs of ``dags/`` together against an empty DAG file.

Each side runs in a fresh interpreter that imports Airflow's SDK first (the dag-processor has
it loaded already), then times ``DagBag`` parsing of the folder. Measured with the default
feeds file (seven DAGs) and with a generated feeds file of 20 feeds (every flow kind, over
several connections). Target: under 1 s in total for each.
"""

from __future__ import annotations

import json
import os
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


def twenty_feeds() -> str:
    """A feeds file of 20 feeds (YAML text): 4 of each inbound kind, 8 deliveries to 2 destinations each."""
    lines = ["version: 1", "defaults: {notify: [ops@example.com]}", "inbound:"]
    for n in range(4):
        lines.append(f"  - {{id: erp{n}, kind: catalog, transfer: erp{n}_sftp, folder: /erp{n}/in, mapping: canonical}}")
        lines.append(f"  - {{id: tr{n}, kind: translations, transfer: tr{n}_ftp, folder: /tr{n}}}")
        lines.append(f"  - {{id: src{n}, kind: source_assets, folder: /src{n}}}")
    lines.append("outbound:")
    for n, kind in enumerate(("catalog", "assets", "translations", "renders") * 2):
        lines.append(f"  - {{id: out{n}, kind: {kind}, schedule: '0 {n} * * *', on_catalog_change: {str(n < 4).lower()}, "
                     f"destinations: [{{transfer: dest{n}_ftps, folder: /o{n}}}, {{transfer: dest{n}_sftp, folder: /p{n}}}]}}")
    return "\n".join(lines) + "\n"


def _result(stdout: str) -> dict:
    (line,) = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def run(work_dir: Path) -> dict:
    dags_dir = REPO / "dags"
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        (Path(tmp) / "empty_dag.py").write_text(_EMPTY_DAG)
        floor = _result(python_child(_PARSE, tmp).stdout)
    ours = _result(python_child(_PARSE, str(dags_dir)).stdout)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        feeds = Path(tmp) / "twenty_feeds.yaml"
        feeds.write_text(twenty_feeds())
        many = _result(python_child(_PARSE, str(dags_dir), env={**os.environ, "THREEKIT_FEEDS_FILE": str(feeds)}).stdout)
    return {
        "dag_files": len(list(dags_dir.glob("*.py"))),
        "dags": ours["dags"],
        "import_errors": ours["errors"],
        "parse_s": round(ours["seconds"], 4),
        "empty_dag_parse_s": round(floor["seconds"], 4),
        "ratio": ratio(ours["seconds"], floor["seconds"]),
        "feeds_20_dags": many["dags"],
        "feeds_20_import_errors": many["errors"],
        "feeds_20_parse_s": round(many["seconds"], 4),
        "target": "parse_s < 1.0 and feeds_20_parse_s < 1.0",
        "met": ours["seconds"] < 1.0 and many["seconds"] < 1.0 and not ours["errors"] and not many["errors"],
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir())), indent=2))
