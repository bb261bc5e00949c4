"""`leaderboard_site`: the static leaderboard site (gpu_ops.site) rebuilt after every leaderboard update.

The folder lands in storage (`site/`), ready to sync to object storage, a Space or GitHub Pages. Per instance, two
public addresses make its links travel: LEM_DAGSTER_PUBLIC_URL (default LEM_DAGSTER_URL), the Dagster UI that rows'
run and raw links open, and LEM_SITE_URL, where the site is served (its embed snippets, and the asset's links to the
index and its charts; the UI would show plotly JSON as text). Without LEM_SITE_URL the metadata gives the folder's
path, never a file:// link a browser refuses from the UI.
"""

import os

import dagster as dg
import pandas as pd

from energy_assets.assets.checks import require_checked_leaderboard
from energy_assets.assets.leaderboard import leaderboard_slo
from energy_assets.assets.publish import AFTER_LEADERBOARD, RAW_FOLDERS, published_raw
from energy_assets.lineage import OWNERS, dagster_url
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
    require_checked_leaderboard(context.instance)
    site_url = os.environ.get("LEM_SITE_URL") or None
    site = build_site(
        leaderboard,
        published_raw(context, raw_measurements, leaderboard),
        storage.root / "site",
        dagster_url=dagster_url() or None,
        generated_from="Built by the leaderboard_site asset.",
        submissions=storage.submissions(),
        site_url=site_url,
        slo=leaderboard_slo(),
        history=storage.all_history(),
    )
    for warning in site.warnings:
        context.log.warning(warning)
    context.log.info(f"site: {site.rows} rows, {site.pages} detail pages in {site.folder}")
    if site_url:
        index = f"{site_url.rstrip('/')}/index.html"
        charts = "\n".join(f"- [{_chart_title(fig)}]({index}#{chart})" for chart, fig in site.figures.items())
        where = dg.MetadataValue.url(index)
    else:
        charts = "\n".join(f"- {_chart_title(fig)} (`index.html#{chart}`)" for chart, fig in site.figures.items())
        charts += "\n\n_Set LEM_SITE_URL to the site's public address to link them._" if charts else ""
        where = dg.MetadataValue.path(str(site.folder / "index.html"))
    return dg.MaterializeResult(
        metadata={
            "index": where,
            "rows": site.rows,
            "detail_pages": site.pages,
            "charts": dg.MetadataValue.md(charts or "no charts: no rows yet"),
        }
    )


def _chart_title(figure: dict) -> str:
    """A plotly figure's title without its subtitle."""
    text = figure.get("layout", {}).get("title", {}).get("text", "chart")
    return text.split("<br>")[0]
