"""Airflow plugin registering the Threekit extra links ("Threekit job", "Threekit assets").

The operators already declare their links, and the provider metadata lists them under
``extra-links``; registering them here too makes them known to every Airflow component
that loads plugins, including deployments where the package is only on ``PYTHONPATH``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from threekit_pipeline.airflow.links import ThreekitAssetsLink, ThreekitJobLink


class ThreekitLinksPlugin(AirflowPlugin):
    """Registers the operator extra links of the Threekit operators."""

    name = "threekit_links"
    operator_extra_links = [ThreekitJobLink(), ThreekitAssetsLink()]
