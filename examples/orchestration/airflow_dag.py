"""Airflow DAG: the FTI pipelines as three tasks, one process each, talking only through the store.

features -> train -> score, daily. The logical date is passed through: features recompute the
day's event-time range (incremental, idempotent), training reads whatever table versions are
current, scoring runs as of the next day. Exit codes drive Airflow:
  0  done                                  -> success
  99 this exact run already committed      -> skipped (skip_on_exit_code)
  4  validation / gate rejected            -> failure, no retry worth trying (fix data or model)
  7  monitoring thresholds failed          -> failure, nothing published
  2, 3 bad config / bad input              -> failure (do not retry)
  5, 6 store or service failure, conflict  -> retried
Flags used here are checked against each binary's --help by tests/it/orchestration.rs.
"""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.docker.operators.docker import DockerOperator

STORE = "s3://fti-prod/flights"
ENV = {
    "FTI_STORE": STORE,
    "FTI_LOG_FORMAT": "json",
    "AWS_REGION": "us-east-1",
    # credentials come from the worker's environment / instance role, never from the DAG
}

default_args = {
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
}

with DAG(
    dag_id="fti_flights",
    start_date=datetime(2001, 1, 8),
    schedule="@daily",
    catchup=False,
    default_args=default_args,
    max_active_runs=1,
) as dag:
    features = DockerOperator(
        task_id="features",
        image="fti/feature-pipeline:latest",
        command=[
            "run", "/config/features.toml",
            "--from", "{{ ds }}",
            "--to", "{{ next_ds }}",
            "--run-id", "features-{{ ds_nodash }}",
        ],
        environment=ENV,
        skip_on_exit_code=[99],
    )

    train = DockerOperator(
        task_id="train",
        image="fti/training-pipeline:latest",
        command=["train", "/config/model.toml", "--promote", "--actor", "airflow"],
        environment=ENV,
        skip_on_exit_code=[99],
    )

    score = DockerOperator(
        task_id="score",
        image="fti/inference-pipeline:latest",
        command=[
            "score", "/config/score.toml",
            "--as-of", "{{ next_ds }}",
            "--run-id", "score-{{ ds_nodash }}",
        ],
        environment={**ENV, "FTI_REDIS_URL": "redis://redis:6379/"},
        skip_on_exit_code=[99],
    )

    features >> train >> score
