"""Markdown links into the Dagster UI, for metadata: a number's run and raw partition are one click away.

Links use the UI's public address as their base when it is set (LEM_DAGSTER_PUBLIC_URL, else LEM_DAGSTER_URL: a
notification, read elsewhere, needs it); without it, or with `base=""`, they are relative to the UI that shows them
(`/runs/<id>`), which is where metadata is read.
"""

import os
from urllib.parse import quote

RAW_ASSET = "raw_measurements"
OWNERS = ["team:energy-measurement"]
"""Who answers for the assets' numbers (shown on every asset)."""


def dagster_url() -> str:
    """The UI's public base URL without a trailing slash, or "" (links relative to the UI)."""
    return (os.environ.get("LEM_DAGSTER_PUBLIC_URL") or os.environ.get("LEM_DAGSTER_URL", "")).rstrip("/")


def run_url(run_id: str, base: str | None = None) -> str:
    """The run's page: it needs the full id (a short one finds no run)."""
    return f"{dagster_url() if base is None else base}/runs/{quote(str(run_id))}"


def partition_url(partition_key: str, asset: str = RAW_ASSET, base: str | None = None) -> str:
    root = dagster_url() if base is None else base
    return f"{root}/assets/{asset}?view=partitions&partition={quote(str(partition_key))}"


def run_link(run_id: str, base: str | None = None) -> str:
    """`[2c32a51d](/runs/2c32a51d-…)`: short to read, the full id to follow."""
    return f"[{str(run_id)[:8]}]({run_url(run_id, base)})"


def partition_link(partition_key: str, asset: str = RAW_ASSET, base: str | None = None) -> str:
    """The partition's page; the `|` of its key escaped, so the link can stand in a Markdown table's cell."""
    return f"[{partition_key.replace('|', chr(92) + '|')}]({partition_url(partition_key, asset, base)})"
