"""Developer tooling: the local sandbox stack, a native CeleryExecutor cluster and ``airflow standalone``.

Nothing here is imported by DAGs or tasks; it runs the product locally (``make airflow``, the demo)
and in the end-to-end and distributed tests.
"""
