"""The code location: assets, checks, jobs, sensors, schedules and resources."""

import os

import dagster as dg

from energy_assets.assets.checks import every_row_has_provenance, no_mixed_backends, synthetic_weights_flagged
from energy_assets.assets.leaderboard import leaderboard
from energy_assets.assets.publish import hf_dataset_publish, hf_dataset_snapshot, hub_from_env
from energy_assets.assets.raw import raw_measurements
from energy_assets.assets.site import leaderboard_site
from energy_assets.assets.stats import cycle_statistics
from energy_assets.io import ParquetIOManager, ResultTablesIOManager
from energy_assets.resources import GpuResource, StorageResource
from energy_assets.sensors.automation import automation, build_schedules, experiment_inbox, measure_job, results_inbox
from energy_assets.sensors.moderation import moderate_job
from energy_assets.sensors.notifications import (
    notify_check_failure,
    notify_hf_publish,
    notify_leaderboard,
    notify_run_failure,
)
from energy_assets.sensors.submit import submit_experiment

storage = StorageResource()

defs = dg.Definitions(
    assets=[raw_measurements, cycle_statistics, leaderboard, hf_dataset_snapshot, hf_dataset_publish, leaderboard_site],
    asset_checks=[every_row_has_provenance, no_mixed_backends, synthetic_weights_flagged],
    jobs=[measure_job, moderate_job, submit_experiment],
    sensors=[
        experiment_inbox,
        results_inbox,
        automation,
        notify_run_failure,
        notify_check_failure,
        notify_leaderboard,
        notify_hf_publish,
    ],
    schedules=build_schedules(storage),
    # the automation's steps (statistics, leaderboard, checks, site, dataset) are small: a process per step cost
    # 3-5 s each, 23 s of a 7-step leaderboard run (the measure job has its own executor)
    executor=dg.in_process_executor,
    resources={
        "storage": storage,
        "gpu": GpuResource(visible_devices=os.environ.get("LEM_VISIBLE_DEVICES")),
        "hf_hub": hub_from_env(),
        "tables_io_manager": ResultTablesIOManager(base_path=storage.io_base()),
        "parquet_io_manager": ParquetIOManager(base_path=storage.io_base()),
    },
)
