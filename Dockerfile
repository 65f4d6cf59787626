# The platform's image: the official Airflow image plus this project, installed from uv.lock.
# One image for every Airflow component, the MLflow server and the serving gateway
# (docker-compose.yaml). Build from a clean checkout, naming its commit:
#   docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t airflow-retrain .
# (docker compose build reads GIT_COMMIT from the environment: GIT_COMMIT=$(git rev-parse HEAD)
# docker compose build). The commit and the hash of uv.lock are baked into the installed package
# (retrain_lib/_build_info.json) and recorded on every model trained in the image (tags git.commit,
# lock.hash); without GIT_COMMIT, git.commit reads "unknown (image built without GIT_COMMIT)".
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
# Lineage: the image has no .git (.dockerignore), so the build's commit and uv.lock hash are
# written into the package before it is installed (tests/integration/test_image_lineage.py runs
# this very step). Declared here, so a new commit does not invalidate the dependency layer.
ARG GIT_COMMIT=""
RUN python -m retrain_lib.cli.build_info --git-commit "${GIT_COMMIT}" --lock uv.lock \
 && pip install --no-cache-dir --no-deps .
# Airflow's local settings: every Airflow process imports the DAG factory once, so the DAG
# processor's per-file processes inherit it instead of importing it again for every model
COPY --chown=airflow:0 deploy/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py
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
