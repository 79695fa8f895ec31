"""Operators of the Threekit pipeline's Airflow provider."""
