"""Airflow Assets shared between producer and consumer DAGs (defined once, imported everywhere)."""

from __future__ import annotations

from airflow.sdk import Asset

# Updated by threekit_catalog_import after products landed in Threekit; the export DAGs
# are scheduled on it.
THREEKIT_CATALOG = Asset(name="threekit_catalog", uri="threekit://catalog")
