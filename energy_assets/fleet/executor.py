"""The `measure` job's executor: the run's own process, or the GPU fleet's Celery workers when LEM_EXECUTOR=celery.
Its own module so that the fleet's shared settings (energy_assets.fleet.fleet) import nothing of the executor, and
Celery is imported only when it is chosen (the platform loads without the fleet extra)."""

import os

import dagster as dg

from energy_assets.fleet.fleet import backend_url, broker_url


def measure_executor():
    """The executor of the `measure` job: Celery workers when LEM_EXECUTOR=celery, else the run's own process."""
    if os.environ.get("LEM_EXECUTOR", "inprocess") != "celery":
        return dg.in_process_executor
    from energy_assets.fleet.celery_executor import gpu_celery_executor

    return gpu_celery_executor.configured(
        {"broker": broker_url(), "backend": backend_url()}, name="gpu_celery_configured"
    )
