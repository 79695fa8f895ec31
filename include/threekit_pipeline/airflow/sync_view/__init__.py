"""The Threekit sync view (Airflow UI plugin): run counts, reports, SKU search."""
