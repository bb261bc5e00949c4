import shutil

import dagster as dg
import yaml

from energy_assets.ops.local import INSTANCE_FILES


def test_the_platform_instances_show_no_community_dialog(tmp_path):
    """Dagster's "join the community" dialog opens on a localhost UI a moment after a page loads and covers it (a
    lineage browser test's click landed on its backdrop under CI load): both instance files turn it off."""
    shutil.copyfile(INSTANCE_FILES["sqlite"], tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False
    for path in INSTANCE_FILES.values():
        assert yaml.safe_load(path.read_text())["nux"] == {"enabled": False}, path


def test_a_platform_with_run_retries_is_ready_only_once_the_daemons_retry_consumer_made_its_first_pass(
    tmp_path, monkeypatch, pg_database
):
    """The consumer's first pass starts at the newest event: a run a lost worker failed before it is never retried
    (seen in CI: the killed-worker fleet test got no retry). Against real PostgreSQL storage, no daemon running."""
    import time

    import pytest
    from dagster._daemon.auto_run_reexecution.event_log_consumer import _persist_cursors

    from energy_assets.ops.local import Platform, prepare_home

    monkeypatch.setenv("DAGSTER_PG_URL", pg_database)
    home = tmp_path / "home"
    prepare_home(home, "postgres")
    platform = Platform(home, tmp_path / "shared")
    platform.create_storage()
    with pytest.raises(TimeoutError, match="run-retry consumer"):
        platform.wait_retries_armed(time.monotonic() + 1)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_retries_enabled
        _persist_cursors(instance, {dg.DagsterEventType.RUN_FAILURE: 0})  # what the daemon's first pass stores
    platform.wait_retries_armed(time.monotonic() + 1)
