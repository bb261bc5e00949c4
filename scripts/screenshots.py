"""Screenshots of the static site for docs/screenshots/, built from the GPU result folders in docs/benchmarks/raw.

.venv/bin/python scripts/screenshots.py   # needs Debian's chromium (/usr/bin/chromium)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = sorted((REPO / "docs" / "benchmarks" / "raw" / "multigpu").glob("llama8b-*"))
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> int:
    sys.path.insert(0, str(REPO))
    from playwright.sync_api import sync_playwright

    from gpu_ops.site import report_from_folders

    out = REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = report_from_folders(RESULTS, Path(tmp) / "site", dagster_url="http://127.0.0.1:3000")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto((site.folder / "index.html").as_uri())
            page.wait_for_selector("#chart-scatter .main-svg")
            page.check("#body tr:nth-child(1) input.sel")
            page.check("#body tr:nth-child(2) input.sel")
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "leaderboard.png"), full_page=True)
            page.click("#body tr:nth-child(2) a")
            page.wait_for_selector("#chart-power .main-svg")
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "detail.png"), full_page=True)
            browser.close()
    print(f"wrote {out / 'leaderboard.png'} and {out / 'detail.png'} from {len(RESULTS)} result folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
