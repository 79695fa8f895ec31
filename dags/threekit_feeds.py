"""
### Threekit feeds

One DAG per feed of the feeds file (`include/feeds/default.yaml`, or the file named by the
`THREEKIT_FEEDS_FILE` environment variable or the `threekit_feeds_file` Variable), built by
one factory per flow kind (`threekit_pipeline.airflow.dag_factories`). A mistake in the
feeds file is this file's import error, naming the file, the feed and the key.
"""

from __future__ import annotations

from threekit_pipeline.airflow.dag_factories import build_dags

globals().update(build_dags())
