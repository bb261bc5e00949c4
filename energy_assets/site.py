"""`leaderboard_site`: the static leaderboard site (gpu_ops.site) rebuilt after every leaderboard update.

The folder lands in storage (`site/`), ready to sync to object storage, a Space or GitHub Pages. Its charts
also go into the asset's metadata as plotly JSON, and provenance links point into this Dagster UI when
LEM_DAGSTER_URL is set.
"""

import os

import dagster as dg
import pandas as pd

from energy_assets.publish import AFTER_LEADERBOARD, RAW_FOLDERS, published_raw
from energy_assets.resources import StorageResource
from gpu_ops.site import build_site

SITE_CODE_VERSION = "site-v1"


@dg.asset(
    ins={
        "leaderboard": dg.AssetIn(),
        "raw_measurements": RAW_FOLDERS,
    },
    code_version=SITE_CODE_VERSION,
    group_name="publish",
    kinds={"html", "plotly"},
    automation_condition=AFTER_LEADERBOARD,
    description="Static leaderboard site: sortable/filterable table, detail page per row, plotly charts; works "
    "offline.",
)
def leaderboard_site(
    context: dg.AssetExecutionContext, storage: StorageResource, leaderboard: pd.DataFrame, raw_measurements: dict
) -> dg.MaterializeResult:
    site = build_site(
        leaderboard,
        published_raw(context, raw_measurements, leaderboard),
        storage.root / "site",
        dagster_url=os.environ.get("LEM_DAGSTER_URL"),
        generated_from="Built by the leaderboard_site asset.",
        submissions=storage.submissions(),
    )
    context.log.info(f"site: {site.rows} rows, {site.pages} detail pages in {site.folder}")
    meta = {
        "index": dg.MetadataValue.path(str(site.folder / "index.html")),
        "rows": site.rows,
        "detail_pages": site.pages,
    }
    for chart, fig in site.figures.items():  # the UI shows JSON; a plotly figure's JSON opens in any plotly viewer
        meta[chart.removeprefix("chart-")] = dg.MetadataValue.json(fig)
    return dg.MaterializeResult(metadata=meta)
