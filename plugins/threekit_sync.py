"""Airflow plugin: the Threekit sync view, its links, and the run notes of the import DAGs.

* ``fastapi_apps``: the view's app under ``/threekit-sync`` in Airflow's API server (Airflow's own
  login is required; see ``threekit_pipeline.airflow.sync_view.app``).
* ``external_views``: "Threekit sync" in the navigation bar, and a "Threekit sync" tab on the
  DAG-run page of every DAG (it opens that run in the view).
* ``global_operator_extra_links``: "Threekit sync" on every task of an import DAG.
* ``listeners``: writes the counts into each import run's note when the run ends.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from threekit_pipeline.airflow.links import ThreekitSyncLink
from threekit_pipeline.airflow.sync_view import listener
from threekit_pipeline.airflow.sync_view.app import create_app


class ThreekitSyncPlugin(AirflowPlugin):
    name = "threekit_sync"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/threekit-sync", "name": "Threekit sync"}]
    external_views = [
        {
            "name": "Threekit sync",
            "href": "threekit-sync/",
            "destination": "nav",
            "url_route": "threekit-sync",
        },
        {
            "name": "Threekit sync",
            "href": "threekit-sync/run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "threekit-sync-run",
        },
    ]
    listeners = [listener]
    global_operator_extra_links = [ThreekitSyncLink()]
