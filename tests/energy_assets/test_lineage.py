"""From a leaderboard row to its run, resolved config and environment in the real Dagster UI (webserver started by
Platform, headless Chromium): the links are there, they use the full run id, and they lead somewhere."""

import dagster as dg
import pytest

from energy_assets.assets.checks import every_row_has_provenance, no_mixed_backends, synthetic_weights_flagged
from energy_assets.assets.leaderboard import leaderboard
from energy_assets.assets.raw import FILE_SHA_TAG, raw_measurements
from energy_assets.assets.stats import cycle_statistics
from energy_assets.io import ParquetIOManager, ResultTablesIOManager
from energy_assets.ops.local import Platform, free_port, prepare_home
from energy_assets.resources import GpuResource, StorageResource
from tests.energy_assets.conftest import HW, experiment_config
from tests.gpu_ops.site.test_site import browser  # noqa: F401  (the fixture: Debian's Chromium through Playwright)

pytestmark = pytest.mark.slow
EXPERIMENT = "builtin-tiny-llama__pytorch"


def _materialize(storage: StorageResource, instance: dg.DagsterInstance) -> str:
    """One CPU partition measured, summarised and ranked in this instance; the raw run's id."""
    base = storage.io_base()
    resources = {
        "storage": storage,
        "gpu": GpuResource(),
        "tables_io_manager": ResultTablesIOManager(base_path=base),
        "parquet_io_manager": ParquetIOManager(base_path=base),
    }
    storage.register_experiment(EXPERIMENT, HW, experiment_config("tiny", "builtin:tiny-llama"))
    instance.add_dynamic_partitions("experiment", [EXPERIMENT])
    instance.add_dynamic_partitions("hardware", [HW])
    raw = dg.materialize(
        [raw_measurements, cycle_statistics],
        partition_key=f"{EXPERIMENT}|{HW}",
        instance=instance,
        resources=resources,
        tags={FILE_SHA_TAG: "ab" * 8},
    )
    board = [raw_measurements, cycle_statistics, leaderboard, every_row_has_provenance, no_mixed_backends]
    board += [synthetic_weights_flagged]
    dg.materialize(board, selection=["leaderboard"], instance=instance, resources=resources)
    return raw.run_id


def test_a_leaderboard_row_reaches_its_run_config_and_environment_in_three_clicks(tmp_path, monkeypatch, browser):  # noqa: F811
    home, storage_dir, port = prepare_home(tmp_path / "home", "sqlite"), tmp_path / "storage", free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LEM_STORAGE", str(storage_dir))
    monkeypatch.setenv("LEM_DAGSTER_URL", url)  # as Platform sets it for its processes
    run_id = _materialize(StorageResource(base_path=str(storage_dir)), dg.DagsterInstance.get())
    with Platform(home, storage_dir, port=port) as platform:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{platform.url}/assets/leaderboard", wait_until="networkidle")
        page.get_by_text("Events", exact=True).first.click()  # click 1: the leaderboard's latest metadata
        run_link = page.get_by_role("link", name=run_id[:8], exact=True).first
        assert run_link.get_attribute("href") == f"/runs/{run_id}"  # the full id; relative: the UI reads it
        partition = page.get_by_role("link", name=f"{EXPERIMENT}|{HW}", exact=True).first
        assert partition.get_attribute("href").endswith(f"partition={EXPERIMENT}%7C{HW}")
        run_link.click()  # click 2: the run that measured the row
        page.wait_for_url(f"**/runs/{run_id}")
        page.get_by_text(f"partition: {EXPERIMENT}|{HW}").wait_for()
        assert "No run found" not in page.inner_text("body")
        page.get_by_role("link", name="raw_measurements", exact=True).first.click()  # click 3: what it materialized
        page.get_by_text("config_identity").first.wait_for()
        body = page.inner_text("body")
        assert "model: builtin:tiny-llama" in body and "max_output_tokens: 8" in body  # the resolved config
        assert "fingerprint_hash" in body and "experiment_hash" in body  # the environment table
        assert "ab" * 8 in body  # the file_sha its run was tagged with
        # the site's row -> its raw partition in this UI, one click (the site built against this instance's URL)
        import pandas as pd

        from gpu_ops.site import build_site

        board = pd.read_parquet(storage_dir / "assets" / "leaderboard.parquet")
        site = build_site(board, {}, tmp_path / "site", dagster_url=url)
        page.goto((site.folder / "index.html").as_uri())
        page.click("#body tr a.raw")
        page.wait_for_url("**/assets/raw_measurements?**")
        page.get_by_text(f"{EXPERIMENT}|{HW}").first.wait_for()
        assert "local" in site.warnings[0]  # a 127.0.0.1 UI: the links were marked local, with a warning
        page.close()
