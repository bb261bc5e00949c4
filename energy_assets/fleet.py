"""Scale-out to a GPU fleet on Dagster's own pieces: dagster-celery on a Redis broker, one queue per hardware profile.

- `gpu_celery_executor`: dagster-celery's executor, with every step of a partitioned run sent to the queue of the
  run's hardware partition (`gpu-<profile>`), whichever way the run was launched (sensor, backfill, UI).
- A step whose worker dies (SIGKILL, host lost) fails the run with that cause instead of waiting forever:
  Celery never reports a task whose worker was killed, so the executor pings the worker that started it.
- `preflight`: Redis and PostgreSQL reachability in seconds, with a message naming what is unreachable.

Workers: `llm-energy-measure worker --hardware PROFILE` (docs/deployment.md).
"""

import os
import socket
import time
from urllib.parse import urlparse

import dagster as dg
from dagster._core.execution.retries import RetryMode
from dagster_celery.config import dict_wrapper
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor

QUEUE_PREFIX = "gpu-"  # LEM_QUEUE_PREFIX overrides it: fleets (or test runs) sharing one Redis then never share a queue
HARDWARE_TAG = "dagster/partition/hardware"
WORKER_LOST_GRACE_S = float(os.environ.get("LEM_WORKER_LOST_GRACE_S", "10"))
PING_EVERY_S = 2.0
# task_track_started: a running task names its worker (needed to notice a dead one); acks_late +
# reject_on_worker_lost: a task a dying worker had not finished is not silently acknowledged
FLEET_CELERY_SETTINGS = {"task_track_started": True, "task_acks_late": True, "task_reject_on_worker_lost": True,
                         "worker_prefetch_multiplier": 1, "broker_connection_timeout": 5}


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
    host, port = u.hostname or "127.0.0.1", u.port or {"redis": 6379, "postgresql": 5432, "amqp": 5672, "pyamqp": 5672}.get(u.scheme, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ServiceUnreachable(f"{what} unreachable at {host}:{port} ({exc.strerror or exc}); start it or fix "
                                 f"{'LEM_CELERY_BROKER' if 'broker' in what.lower() else 'DAGSTER_PG_URL'}") from None


def preflight(require_postgres: bool = True) -> None:
    check_reachable(broker_url(), "Redis (Celery broker)")
    if require_postgres:
        pg = os.environ.get("DAGSTER_PG_URL")
        if not pg:
            raise ServiceUnreachable("DAGSTER_PG_URL is not set; the fleet needs a PostgreSQL instance shared by the platform and its workers")
        check_reachable(pg, "PostgreSQL (Dagster instance)")


class WorkerLost(Exception):
    """The worker running a step stopped answering: killed, crashed or its host lost."""


class _WatchedResult:
    """A Celery result that becomes 'ready' with an error when the worker that started the task is gone."""

    def __init__(self, result, app, step_key: str):
        self.result, self.app, self.step_key = result, app, step_key
        self.lost: str | None = None
        self._silent_since: float | None = None
        self._last_ping = 0.0

    def ready(self) -> bool:
        if self.result.ready():
            return True
        if self.result.state != "STARTED" or time.monotonic() - self._last_ping < PING_EVERY_S:
            return False
        self._last_ping = time.monotonic()
        host = (self.result.info or {}).get("hostname") if isinstance(self.result.info, dict) else None
        if not host:
            return False
        if self.app.control.ping(destination=[host], timeout=1.0):
            self._silent_since = None
            return False
        self._silent_since = self._silent_since or time.monotonic()
        if time.monotonic() - self._silent_since >= WORKER_LOST_GRACE_S:
            self.lost = host
            return True
        return False

    def get(self, *a, **kw):
        if self.lost:
            raise WorkerLost(f"Celery worker {self.lost} stopped answering for {WORKER_LOST_GRACE_S:.0f} s while running step "
                             f"'{self.step_key}' (killed, crashed or host lost). Its measurement never completed: the raw "
                             "partition was not written (results are renamed into place only when complete).")
        return self.result.get(*a, **kw)

    def revoke(self, *a, **kw):
        return self.result.revoke(*a, **kw)


def _submit_watched(app, plan_context, step, queue, priority, known_state):
    from dagster_celery.executor import _submit_task

    return _WatchedResult(_submit_task(app, plan_context, step, queue, priority, known_state), app, step.key)


class HardwareQueueCeleryExecutor(CeleryExecutor):
    def execute(self, plan_context, execution_plan):
        from dagster_celery.core_execution_loop import core_celery_execution_loop

        hardware = plan_context.dagster_run.tags.get(HARDWARE_TAG)
        if not hardware:
            raise dg.DagsterInvariantViolationError(f"run {plan_context.run_id} has no '{HARDWARE_TAG}' tag: measurement runs are "
                                                    "partitioned by hardware, launch one partition (experiment|hardware)")
        check_reachable(self.broker, "Redis (Celery broker)")
        self.config_source = dict_wrapper(dict(vars(self.config_source), task_default_queue=hardware_queue(hardware)))
        plan_context.log.info(f"routing steps to Celery queue '{hardware_queue(hardware)}' on {urlparse(self.broker).hostname}")
        return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=_submit_watched)


@dg.executor(name="gpu_celery", config_schema=CELERY_CONFIG, requirements=dg.multiple_process_executor_requirements())
def gpu_celery_executor(init_context):
    """dagster-celery, routed by hardware partition (see module docstring)."""
    cfg = init_context.executor_config
    return HardwareQueueCeleryExecutor(
        broker=cfg.get("broker"), backend=cfg.get("backend"), include=cfg.get("include"),
        config_source={**FLEET_CELERY_SETTINGS, **(cfg.get("config_source") or {})}, retries=RetryMode.from_config(cfg["retries"]),
    )


def measure_executor():
    """The executor of the `measure` job: Celery workers when LEM_EXECUTOR=celery, else the run's own process."""
    if os.environ.get("LEM_EXECUTOR", "inprocess") != "celery":
        return dg.in_process_executor
    return gpu_celery_executor.configured({"broker": broker_url(), "backend": backend_url()}, name="gpu_celery_configured")


def worker_config_yaml() -> str:
    """The `-y` file of `dagster-celery worker start`: the same broker, backend and settings as the executor."""
    import yaml

    return yaml.safe_dump({"execution": {"config": {"broker": broker_url(), "backend": backend_url(), "config_source": FLEET_CELERY_SETTINGS}}})


def run_worker(hardware: str, gpus: list[int] | None = None, name: str | None = None, concurrency: int = 1) -> int:
    """Start a Celery worker for `hardware`'s queue after checking this machine is that hardware; blocks until it exits."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from energy_assets.resources import GpuResource
    from gpu_ops.errors import UserError

    local = GpuResource(visible_devices=os.environ.get("LEM_VISIBLE_DEVICES")).local_profile(gpus or [0])
    if local != hardware:
        raise UserError(f"this machine's GPUs {gpus or [0]} are hardware '{local}', not '{hardware}': refusing to serve queue "
                        f"'{hardware_queue(hardware)}'. Start the worker with --hardware {local}, or select other GPUs with --gpus")
    if not os.environ.get("DAGSTER_HOME"):
        raise UserError("DAGSTER_HOME is not set: a worker needs the platform's instance config (the fleet's dagster.yaml)")
    try:
        preflight(require_postgres=True)
    except ServiceUnreachable as exc:
        raise UserError(str(exc)) from None
    cfg = Path(tempfile.mkdtemp(prefix="lem-worker-")) / "celery.yaml"
    cfg.write_text(worker_config_yaml())
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(bindir, "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(cfg),
           "-q", hardware_queue(hardware), "-n", name or f"lem-{hardware}-{os.getpid()}", "--", f"--concurrency={concurrency}"]
    print(f"worker for '{hardware}' (queue {hardware_queue(hardware)}, broker {urlparse(broker_url()).hostname}): {' '.join(cmd)}", flush=True)
    return subprocess.call(cmd, env=env)
