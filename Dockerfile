# The platform's image: the official Airflow image plus this project, installed from uv.lock.
# One image for every Airflow component, the MLflow server and the serving gateway
# (docker-compose.yaml). Build: docker build -t airflow-retrain .
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${AIRFLOW_IMAGE}

USER root
# git: the data registry (DVC) is a git repository; curl: health checks
RUN apt-get update \
 && apt-get install -y --no-install-recommends git curl \
 && apt-get autoremove -yqq --purge \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/retrain/state \
 && chown -R airflow:0 /opt/retrain
COPY --from=uv /uv /usr/local/bin/uv

USER airflow
WORKDIR /opt/retrain

# Dependencies first (cached while only the code changes): exactly the versions of uv.lock,
# with their hashes, no dev group. The lock pins apache-airflow to the image's version.
COPY --chown=airflow:0 pyproject.toml uv.lock README.md ./
RUN uv export --frozen --no-dev --no-emit-project --no-header --output-file /tmp/requirements.txt \
 && pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The project itself (retrain_lib, the `retrain` command and the Airflow package
# retrain_airflow, whose plugin Airflow finds by its entry point), then the DAG file and
# default configs (docker-compose.yaml mounts the deployment's configs over them).
COPY --chown=airflow:0 retrain_lib ./retrain_lib
COPY --chown=airflow:0 plugins ./plugins
RUN pip install --no-cache-dir --no-deps .
COPY --chown=airflow:0 dags ./dags
COPY --chown=airflow:0 configs ./configs
# the runbooks every alert links to, served by the fleet app (/retrain/runbooks/)
COPY --chown=airflow:0 docs ./docs

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/retrain/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/retrain/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    RETRAIN_CONFIG_DIR=/opt/retrain/configs \
    RETRAIN_HOME=/opt/retrain/state

WORKDIR /opt/airflow
