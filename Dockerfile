# The pipeline's image for docker-compose: the pinned stack plus this package.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    OMNI_HOME=/omni \
    AIRFLOW_HOME=/omni/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/omni/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    AIRFLOW__COSMOS__ENABLE_CACHE_DBT_LS=False \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false

WORKDIR /opt/omni
# g++: pytensor (the predictions model) compiles its operations; pure Python is far too slow.
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/requirements.txt requirements/requirements.txt
RUN pip install -r requirements/requirements.txt psycopg2-binary==2.9.13
COPY . .
RUN pip install --no-deps -e . && omni dbt parse
