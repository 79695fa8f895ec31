"""Threekit <-> FTP integration: domain logic (transform, Threekit client, FTP client) and its Airflow layer."""
