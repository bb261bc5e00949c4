"""`leaderboard_site`: the static leaderboard site (gpu_ops.site) rebuilt after every leaderboard update.

The folder lands in storage (`site/`), ready to sync to object storage, a Space or GitHub Pages. The asset's metadata
links the site's charts (a link opens the index at that chart; the UI would show plotly JSON as text), and the rows
link their Dagster runs when LEM_DAGSTER_URL is set.
"""

import os

import dagster as dg
import pandas as pd

from energy_assets.leaderboard import leaderboard_slo
from energy_assets.lineage import OWNERS
from energy_assets.publish import AFTER_LEADERBOARD, RAW_FOLDERS, published_raw
from energy_assets.resources import StorageResource
from gpu_ops.site import build_site

SITE_CODE_VERSION = "site-v3"  # v3: slo.html, carbon and cost with inputs, history


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
    owners=OWNERS,
    tags={"stage": "publish"},
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
        slo=leaderboard_slo(),
        history=storage.all_history(),
    )
    context.log.info(f"site: {site.rows} rows, {site.pages} detail pages in {site.folder}")
    index = (site.folder / "index.html").as_uri()
    charts = "\n".join(f"- [{_chart_title(fig)}]({index}#{chart})" for chart, fig in site.figures.items())
    return dg.MaterializeResult(
        metadata={
            "index": dg.MetadataValue.url(index),
            "rows": site.rows,
            "detail_pages": site.pages,
            "charts": dg.MetadataValue.md(charts or "no charts: no rows yet"),
        }
    )


def _chart_title(figure: dict) -> str:
    """A plotly figure's title without its subtitle."""
    text = figure.get("layout", {}).get("title", {}).get("text", "chart")
    return text.split("<br>")[0]
