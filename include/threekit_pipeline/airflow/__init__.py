"""Airflow integration of the Threekit pipelines: provider metadata, hooks, operators, sensors, triggers, links.

Only this package imports Airflow; the building blocks in :mod:`threekit_pipeline.ftp`
and :mod:`threekit_pipeline.threekit` stay plain Python. Connection set-up is described in
``CONNECTIONS.md`` next to this file.
"""
