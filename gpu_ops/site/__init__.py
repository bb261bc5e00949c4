"""The static leaderboard site: an index page (sortable, filterable table, charts), one detail page per row and an
embeddable card per model (embed.html?model=...).

Used by the platform's `leaderboard_site` asset and by `llm-energy-measure report`. data: the rows and how their
columns show; charts: the plotly figures; pages: the HTML and the site folder.
"""

from gpu_ops.site.data import COLUMNS, FILTERS, row_id
from gpu_ops.site.pages import SiteResult, build_site, report_from_folders

__all__ = ["COLUMNS", "FILTERS", "SiteResult", "build_site", "report_from_folders", "row_id"]
