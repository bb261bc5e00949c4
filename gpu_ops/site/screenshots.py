"""Screenshots of the static site for docs/screenshots/, built from the GPU result folders committed under
docs/benchmarks/raw (H200, two H200s, H100); run from a checkout, with Chromium installed:

    python -m gpu_ops.site.screenshots

The earlier repeats of the same configurations (docs/benchmarks/raw/multigpu/earlier-run) are left out: they would
show every row twice.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from gpu_ops.site.pages import SiteResult, report_from_folders

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "docs" / "benchmarks" / "raw"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package; Playwright downloads none
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def gpu_result_folders() -> list[Path]:
    """Every committed result folder (one holding summary.json) except the earlier repeats."""
    return sorted(p.parent for p in RAW.rglob("summary.json") if "earlier-run" not in p.parts)


def shoot(site: SiteResult, out: Path) -> list[Path]:
    """The leaderboard, the Pareto chart, a detail page and the embeddable card, as PNGs in `out`."""
    from playwright.sync_api import sync_playwright

    index = (site.folder / "index.html").as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(index)
        page.wait_for_selector("#chart-pareto .main-svg")
        page.check("#body tr:nth-child(1) input.sel")
        page.check("#body tr:nth-child(2) input.sel")
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "leaderboard.png"), full_page=True)
        page.locator("#chart-pareto").screenshot(path=str(out / "pareto.png"))
        row_id = page.get_attribute("#body tr:nth-child(1)", "data-id")
        page.click("#body tr:nth-child(1) a.detail")
        page.wait_for_selector("#chart-power .main-svg")
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "detail.png"), full_page=True)
        embed = page.input_value("#embed-snippet").split('src="')[1].split('"')[0]
        card = browser.new_page(viewport={"width": 560, "height": 320})
        card.goto(embed)
        card.wait_for_selector(f"#card tr[data-id='{row_id}']")
        card.screenshot(path=str(out / "embed.png"))
        browser.close()
    return [out / n for n in ("leaderboard.png", "pareto.png", "detail.png", "embed.png")]


def main() -> int:
    folders = gpu_result_folders()
    out = REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = report_from_folders(folders, Path(tmp) / "site", dagster_url="http://127.0.0.1:3000")
        written = shoot(site, out)
    print(f"wrote {', '.join(p.name for p in written)} from {len(folders)} result folders:", file=sys.stderr)
    for folder in folders:
        print(f"  {folder.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
