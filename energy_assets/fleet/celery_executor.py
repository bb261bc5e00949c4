"""dagster-celery's executor, routed by hardware: every step of a partitioned run goes to the queue of the run's
hardware partition (`<prefix><profile>`), whichever way the run was launched (sensor, backfill, UI).

A step whose worker dies (SIGKILL, host lost) fails the run with that cause instead of waiting forever: Celery never
reports a task whose worker was killed, so the executor pings the worker that started it. A Redis outage shorter than
BROKER_OUTAGE_GRACE_S is waited out. Imported only when
LEM_EXECUTOR=celery (energy_assets.fleet.executor.measure_executor).
"""

import time
from urllib.parse import urlparse

import dagster as dg
from dagster_celery.config import dict_wrapper
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor

from energy_assets.dagster_private import RetryMode, submit_celery_task
from energy_assets.fleet.fleet import (
    BROKER_OUTAGE_GRACE_S,
    FLEET_CELERY_SETTINGS,
    HARDWARE_TAG,
    PING_EVERY_S,
    WORKER_LOST_GRACE_S,
    check_reachable,
    hardware_queue,
)


class WorkerLost(Exception):
    """The worker running a step stopped answering: killed, crashed or its host lost."""


class BrokerLost(Exception):
    """Redis (the broker and result store) stayed unreachable past BROKER_OUTAGE_GRACE_S."""


def _outage_errors() -> tuple[type[BaseException], ...]:
    """What Celery raises while Redis is unreachable (a restart, a network blip)."""
    from kombu.exceptions import OperationalError

    errors: list[type[BaseException]] = [OSError, OperationalError]
    try:
        import redis

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # an AMQP broker
        pass
    return tuple(errors)


class _WatchedResult:
    """A Celery result that becomes 'ready' with an error when the worker that started the task is gone.

    A Redis outage is waited out: the worker goes on measuring while Redis restarts, so failing the run then would let
    its retry measure the partition a second time. A Redis that keeps nothing on disk forgets the task's state; the
    worker named before the outage is still pinged."""

    def __init__(self, result, app, step_key: str):
        self.result, self.app, self.step_key = result, app, step_key
        self.lost: str | None = None
        self.host: str | None = None  # the worker that started the task, once seen
        self._silent_since: float | None = None
        self._outage_since: float | None = None
        self._last_ping = 0.0

    def _through_outage(self, call):
        """`call()`, or None while Redis is unreachable (within the grace)."""
        try:
            value = call()
        except _outage_errors() as exc:
            self._outage_since = self._outage_since or time.monotonic()
            if time.monotonic() - self._outage_since >= BROKER_OUTAGE_GRACE_S:
                raise BrokerLost(
                    f"Redis unreachable for {BROKER_OUTAGE_GRACE_S:.0f} s while step '{self.step_key}' ran "
                    f"({type(exc).__name__}: {exc}); worker {self.host or '(unknown)'} may still be measuring. "
                    f"Start Redis, then re-execute the run (or raise LEM_BROKER_OUTAGE_GRACE_S)"
                ) from exc
            return None
        self._outage_since = None
        return value

    def ready(self) -> bool:
        if self._through_outage(self.result.ready):
            return True
        if self._outage_since is not None or time.monotonic() - self._last_ping < PING_EVERY_S:
            return False
        info = self._through_outage(lambda: self.result.info if self.result.state == "STARTED" else None)
        if isinstance(info, dict) and info.get("hostname"):
            self.host = info["hostname"]
        if not self.host:
            return False
        self._last_ping = time.monotonic()
        answered = self._through_outage(lambda: self.app.control.ping(destination=[self.host], timeout=1.0))
        if self._outage_since is not None:  # the ping itself met the outage
            return False
        if answered:
            self._silent_since = None
            return False
        self._silent_since = self._silent_since or time.monotonic()
        if time.monotonic() - self._silent_since >= WORKER_LOST_GRACE_S:
            self.lost = self.host
            return True
        return False

    def get(self, *a, **kw):
        if self.lost:
            raise WorkerLost(
                f"Celery worker {self.lost} stopped answering for {WORKER_LOST_GRACE_S:.0f} s while running step "
                f"'{self.step_key}' (killed, crashed or host lost). Its measurement never completed: the raw "
                "partition was not written (results are renamed into place only when complete)."
            )
        while True:
            events = self._through_outage(lambda: self.result.get(*a, **kw))
            if events is not None:
                return events
            time.sleep(PING_EVERY_S)

    def revoke(self, *a, **kw):
        return self.result.revoke(*a, **kw)


def _submit_watched(app, plan_context, step, queue, priority, known_state):
    return _WatchedResult(submit_celery_task(app, plan_context, step, queue, priority, known_state), app, step.key)


class HardwareQueueCeleryExecutor(CeleryExecutor):
    def execute(self, plan_context, execution_plan):
        from dagster_celery.core_execution_loop import core_celery_execution_loop

        hardware = plan_context.dagster_run.tags.get(HARDWARE_TAG)
        if not hardware:
            raise dg.DagsterInvariantViolationError(
                f"run {plan_context.run_id} has no '{HARDWARE_TAG}' tag: measurement runs are "
                "partitioned by hardware, launch one partition (experiment|hardware)"
            )
        check_reachable(self.broker, "Redis (Celery broker)")
        self.config_source = dict_wrapper(dict(vars(self.config_source), task_default_queue=hardware_queue(hardware)))
        plan_context.log.info(
            f"routing steps to Celery queue '{hardware_queue(hardware)}' on {urlparse(self.broker).hostname}"
        )
        return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=_submit_watched)


@dg.executor(name="gpu_celery", config_schema=CELERY_CONFIG, requirements=dg.multiple_process_executor_requirements())
def gpu_celery_executor(init_context):
    """dagster-celery, routed by hardware partition (see module docstring)."""
    cfg = init_context.executor_config
    return HardwareQueueCeleryExecutor(
        broker=cfg.get("broker"),
        backend=cfg.get("backend"),
        include=cfg.get("include"),
        config_source={**FLEET_CELERY_SETTINGS, **(cfg.get("config_source") or {})},
        retries=RetryMode.from_config(cfg["retries"]),
    )
