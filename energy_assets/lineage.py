"""Markdown links into the Dagster UI, for metadata: a number's run and raw partition are one click away.

Links use LEM_DAGSTER_URL as their base when it is set (the site, opened from elsewhere, needs it); without it they
are relative to the UI that shows them (`/runs/<id>`), which is where metadata is read.
"""

import os
from urllib.parse import quote

RAW_ASSET = "raw_measurements"
OWNERS = ["team:energy-measurement"]
"""Who answers for the assets' numbers (shown on every asset)."""


def dagster_url() -> str:
    """The UI's base URL without a trailing slash, or "" (links relative to the UI)."""
    return os.environ.get("LEM_DAGSTER_URL", "").rstrip("/")


def run_url(run_id: str) -> str:
    """The run's page: it needs the full id (a short one finds no run)."""
    return f"{dagster_url()}/runs/{quote(str(run_id))}"


def partition_url(partition_key: str, asset: str = RAW_ASSET) -> str:
    return f"{dagster_url()}/assets/{asset}?view=partitions&partition={quote(str(partition_key))}"


def run_link(run_id: str) -> str:
    """`[2c32a51d](/runs/2c32a51d-…)`: short to read, the full id to follow."""
    return f"[{str(run_id)[:8]}]({run_url(run_id)})"


def partition_link(partition_key: str, asset: str = RAW_ASSET) -> str:
    """The partition's page; the `|` of its key escaped, so the link can stand in a Markdown table's cell."""
    return f"[{partition_key.replace('|', chr(92) + '|')}]({partition_url(partition_key, asset)})"
