"""The campaign evidence: one leaderboard number traced back to its raw windows by its provenance columns alone."""

import shutil
from pathlib import Path

import dagster as dg

from energy_assets.assets.raw import SOURCE_TAG, UPLOAD_TAG
from energy_assets.ops.evidence import trace_markdown
from tests.energy_assets.assets.test_pipeline import ASSETS, materialize_partition
from tests.energy_assets.conftest import add_partitions

PARTITION = "builtin-tiny-llama__pytorch|h100-80gb-hbm3"


def test_a_measured_number_is_traced_to_its_windows_and_a_wrong_one_is_caught(
    good_gpu_result, storage, resources, instance
):
    shutil.copytree(good_gpu_result, storage.upload_dir(*PARTITION.split("|")) / "upload1")
    add_partitions(instance, ["builtin-tiny-llama__pytorch"], ["h100-80gb-hbm3"])
    tags = {SOURCE_TAG: "upload", UPLOAD_TAG: "upload1"}
    assert materialize_partition(instance, resources, PARTITION, tags=tags).success
    lb = dg.materialize(ASSETS, selection=["leaderboard"], instance=instance, resources=resources).output_for_node(
        "leaderboard"
    )
    raw_root = Path(storage.io_base().path) / "raw_measurements"
    text = trace_markdown(instance, raw_root, lb)
    assert "# Tracing j_per_token" in text and text.rstrip().endswith("every step agrees") and "✗" not in text
    assert f"`raw_run_id` = `{lb.raw_run_id.iloc[0]}`" in text and text.count("window energy / output tokens") == 3
    wrong = lb.assign(j_per_token_mean=lb.j_per_token_mean * 1.01, raw_data_version="0" * 16)
    bad = trace_markdown(instance, raw_root, wrong)
    assert "**3 step(s) disagree**" in bad  # the data version (event log, folder) and the mean no longer match
