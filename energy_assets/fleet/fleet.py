"""Scale-out to a GPU fleet on Dagster's own pieces: dagster-celery on a Redis broker, one queue per hardware profile.

This module holds what every part of the fleet shares (queue names, service URLs, Celery settings, the preflight)
and imports nothing of the executor. Celery itself is imported only where it is used, so the platform loads without
the fleet extra: `energy_assets.fleet.celery_executor` (the executor; energy_assets.fleet.executor imports it when
LEM_EXECUTOR=celery) and `energy_assets.fleet.worker` (a GPU worker:
`python -m energy_assets.fleet.worker --hardware PROFILE`, docs/deployment.md).
"""

import os
import socket
from urllib.parse import urlparse

QUEUE_PREFIX = "gpu-"  # LEM_QUEUE_PREFIX overrides it: fleets (or test runs) sharing one Redis then never share a queue
HARDWARE_TAG = "dagster/partition/hardware"
WORKER_LOST_GRACE_S = float(os.environ.get("LEM_WORKER_LOST_GRACE_S", "10"))
PING_EVERY_S = 2.0
# a Redis restart or network blip shorter than this does not fail a running step (its worker goes on measuring)
BROKER_OUTAGE_GRACE_S = float(os.environ.get("LEM_BROKER_OUTAGE_GRACE_S", "300"))
# task_track_started: a running task names its worker (needed to notice a dead one); acks_late +
# reject_on_worker_lost: a task a dying worker had not finished is not silently acknowledged
FLEET_CELERY_SETTINGS = {
    "task_track_started": True,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_timeout": 5,
}


def broker_url() -> str:
    return os.environ.get("LEM_CELERY_BROKER", "redis://127.0.0.1:6379/0")


def backend_url() -> str:
    return os.environ.get("LEM_CELERY_BACKEND", "redis://127.0.0.1:6379/1")


def hardware_queue(hardware: str) -> str:
    return f"{os.environ.get('LEM_QUEUE_PREFIX', QUEUE_PREFIX)}{hardware}"


class ServiceUnreachable(Exception):
    pass


def check_reachable(url: str, what: str, timeout_s: float = 3.0) -> None:
    """A TCP connect to the service in `url`, so a dead Redis or PostgreSQL is named at once instead of hanging."""
    u = urlparse(url.replace("+psycopg2", ""))
    host, port = (
        u.hostname or "127.0.0.1",
        u.port or {"redis": 6379, "postgresql": 5432, "amqp": 5672, "pyamqp": 5672}.get(u.scheme, 0),
    )
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ServiceUnreachable(
            f"{what} unreachable at {host}:{port} ({exc.strerror or exc}); start it or fix "
            f"{'LEM_CELERY_BROKER' if 'broker' in what.lower() else 'DAGSTER_PG_URL'}"
        ) from None


def preflight(require_postgres: bool = True) -> None:
    check_reachable(broker_url(), "Redis (Celery broker)")
    if require_postgres:
        pg = os.environ.get("DAGSTER_PG_URL")
        if not pg:
            raise ServiceUnreachable(
                "DAGSTER_PG_URL is not set; the fleet needs a PostgreSQL instance shared by the platform and its "
                "workers"
            )
        check_reachable(pg, "PostgreSQL (Dagster instance)")


HOST_TAG = "lem/host"
"""Runs that execute on the Dagster host carry its name; dagster.yaml lets one run per value run at a time, so the
automation's platform runs (statistics, leaderboard, site, dataset) wait while a measurement runs there and never
share its CPU cores, GPUs or memory bandwidth with a measured window."""


def host_tags() -> dict[str, str]:
    """The tag of runs executing on this host (LEM_HOST names it where the hostname is not stable)."""
    return {HOST_TAG: os.environ.get("LEM_HOST") or socket.gethostname()}


def measure_tags() -> dict[str, str]:
    """The `measure` job's tags: the host's, unless Celery workers measure elsewhere (the platform's runs need not wait
    for a GPU host they do not share)."""
    return {} if os.environ.get("LEM_EXECUTOR", "inprocess") == "celery" else host_tags()


def worker_config_yaml() -> str:
    """The `-y` file of `dagster-celery worker start`: the same broker, backend and settings as the executor."""
    import yaml

    return yaml.safe_dump(
        {
            "execution": {
                "config": {"broker": broker_url(), "backend": backend_url(), "config_source": FLEET_CELERY_SETTINGS}
            }
        }
    )
