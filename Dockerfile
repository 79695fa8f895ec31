# Threekit pipeline image: the official Airflow 3.3.2 image plus this project.
#
# Dependency policy: the base image already holds Airflow and its providers, installed under
# Airflow's own constraints. Installing all of requirements.lock over it (even with --no-deps) would
# swap out packages that Airflow image was built with, so we install only
#   * the project's direct runtime pins whose version differs from (or is missing in) the image,
#   * pins of requirements.lock the image lacks altogether,
# as computed by include/threekit_pipeline/devtools/image_requirements.py, then the project itself
# with --no-deps, and `pip check` fails the build if the result is inconsistent.
#
# Build: docker compose build   (or: docker build -t threekit-pipeline:local .)
FROM apache/airflow:3.3.2-python3.11

ENV THREEKIT_PIPELINE_HOME=/opt/airflow/project \
    THREEKIT_PIPELINE_STAGING_DIR=/opt/airflow/staging \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

USER root
# The staging directory is a volume shared by every worker (tasks hand files over through it).
RUN mkdir -p /opt/airflow/staging /opt/airflow/project \
    && chown -R airflow:0 /opt/airflow/staging /opt/airflow/project \
    && chmod -R g+rwX /opt/airflow/staging
USER airflow

WORKDIR /opt/airflow/project
COPY --chown=airflow:0 requirements.txt requirements.lock ./
COPY --chown=airflow:0 include/threekit_pipeline/devtools/image_requirements.py /tmp/image_requirements.py
RUN python /tmp/image_requirements.py requirements.txt requirements.lock > /tmp/image-requirements.txt \
    && if [ -s /tmp/image-requirements.txt ]; then \
         pip install --no-deps -r /tmp/image-requirements.txt; \
       fi

# Editable install: the mappings (include/mappings/*.yaml) are read relative to the source tree.
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 include ./include
RUN pip install --no-deps -e . && pip check

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins

WORKDIR /opt/airflow
