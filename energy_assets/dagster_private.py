"""Every use of Dagster's private API, in one place, pinned to the versions pyproject.toml installs (dagster 1.13.27,
dagster-celery 0.29.27): tests/energy_assets/test_dagster_private.py fails on any other version, so an upgrade
re-checks each name here instead of breaking somewhere else at run time. Nothing outside this module imports
`dagster._*` or a private name of dagster-celery (the same test greps for it).

Why each is needed (no public equivalent in 1.13):
- the daemon has no `python -m` entry point but its private package; `python -m` finds it however Dagster was
  installed (the `dagster-daemon` console script is not on PATH under `pip --target`);
- a blocking check's failed evaluations are read from the event log's check-execution history;
- the hardware-routed Celery executor builds its CeleryExecutor as dagster-celery's own does (RetryMode) and wraps
  dagster-celery's task submission;
- a platform waits for the daemon's run-retry consumer to store its first cursor (the key's format is the daemon's).
"""

import dagster as dg
from dagster._core.execution.retries import RetryMode
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

DAGSTER_VERSION = "1.13.27"
DAGSTER_CELERY_VERSION = "0.29.27"
DAEMON_MODULE = "dagster._daemon"  # `python -m dagster._daemon run -w WORKSPACE` is `dagster-daemon run`

__all__ = [
    "DAEMON_MODULE",
    "RUN_RETRY_CURSOR_KEY",
    "RetryMode",
    "failed_check_records",
    "last_check_record_id",
    "run_retries_armed",
    "submit_celery_task",
]
# the daemon's run-retry consumer's cursor for failed runs (event_log_consumer._create_cursor_key: the event type's
# value, which for RUN_FAILURE is still "PIPELINE_FAILURE")
RUN_RETRY_CURSOR_KEY = f"EVENT_LOG_CONSUMER_CURSOR-{dg.DagsterEventType.RUN_FAILURE.value}"


def run_retries_armed(instance: dg.DagsterInstance) -> bool:
    """Whether the daemon's run-retry consumer has made its first pass. That pass starts at the newest event and
    ignores older ones, so a run that fails before it is never retried."""
    values = instance.daemon_cursor_storage.get_cursor_values({RUN_RETRY_CURSOR_KEY})
    return values.get(RUN_RETRY_CURSOR_KEY) is not None


def last_check_record_id(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> int:
    """The id of the newest execution record of check `key` (0: none yet): a cursor from which failures are news."""
    latest = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return latest[0].id if latest else 0


def failed_check_records(instance: dg.DagsterInstance, key: dg.AssetCheckKey, after_id: int, limit: int = 100) -> list:
    """The failed evaluations of check `key` recorded after `after_id`, oldest first. Each has `id`, `run_id`,
    `partition` and `event` (whose `dagster_event.event_specific_data` is the dg.AssetCheckEvaluation)."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=limit, status={AssetCheckExecutionRecordStatus.FAILED}
    )
    return sorted((r for r in records if r.id > after_id), key=lambda r: r.id)


def submit_celery_task(app, plan_context, step, queue: str, priority: int, known_state):
    """dagster-celery's own submission of one step (its AsyncResult); imported here, lazily, so the platform loads
    without the fleet extra."""
    from dagster_celery.executor import _submit_task

    return _submit_task(app, plan_context, step, queue, priority, known_state)
