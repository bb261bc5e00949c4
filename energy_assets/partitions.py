"""Partitions: `experiment` (= `model__backend`) x `hardware` (a profile slug detected by gpu_ops)."""

from __future__ import annotations

import dagster as dg

from gpu_ops.environment import validate_slug

experiment_partitions = dg.DynamicPartitionsDefinition(name="experiment")
hardware_partitions = dg.DynamicPartitionsDefinition(name="hardware")
measurement_partitions = dg.MultiPartitionsDefinition(
    {"experiment": experiment_partitions, "hardware": hardware_partitions}
)


def partition_key(experiment: str, hardware: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey(
        {"experiment": validate_slug(experiment, "experiment"), "hardware": validate_slug(hardware, "hardware")}
    )


def split(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(experiment, hardware) of a partition key, whichever form it comes in."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        exp_or_hw = key.split("|")
        dims = dict(zip(sorted(measurement_partitions.partition_dimension_names), exp_or_hw))
    return dims["experiment"], dims["hardware"]
