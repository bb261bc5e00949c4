"""Dataset export and publishing, against a loopback stub of the Hub driven by the real huggingface_hub client."""

import html
import logging
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from energy_assets.assets.checks import every_row_has_provenance, no_mixed_backends, synthetic_weights_flagged
from energy_assets.assets.leaderboard import leaderboard
from energy_assets.assets.publish import HuggingFaceHub, hf_dataset_publish, hf_dataset_snapshot, snapshot_folder
from energy_assets.assets.raw import SOURCE_TAG, UPLOAD_TAG, raw_measurements
from energy_assets.assets.stats import cycle_statistics
from tests.energy_assets.conftest import HW, add_partitions, experiment_config
from tests.hub_stub import HubStub

REPO_ROOT = Path(__file__).resolve().parents[3]
TOKEN = "hf_TestSecret0123456789abcdefXYZ"
REPO = "lem-org/llm-energy"
ALL = [
    raw_measurements,
    cycle_statistics,
    leaderboard,
    every_row_has_provenance,
    no_mixed_backends,
    synthetic_weights_flagged,
    hf_dataset_snapshot,
    hf_dataset_publish,
]


@pytest.fixture
def measured(good_gpu_result, storage, resources, instance):
    """Two partitions: one measured (an upload of the session's GPU result, NVML fake), one CPU run with energy
    unmeasured."""
    resources = {**resources, "hf_hub": HuggingFaceHub(mode="off")}
    shutil.copytree(good_gpu_result, storage.upload_dir("builtin-tiny-llama__pytorch", "h100-80gb-hbm3") / "upload1")
    storage.register_experiment("builtin-small-llama__pytorch", HW, experiment_config("small", "builtin:small-llama"))
    add_partitions(instance, ["builtin-tiny-llama__pytorch", "builtin-small-llama__pytorch"], ["h100-80gb-hbm3", HW])
    for key, tags in (
        ("builtin-tiny-llama__pytorch|h100-80gb-hbm3", {SOURCE_TAG: "upload", UPLOAD_TAG: "upload1"}),
        (f"builtin-small-llama__pytorch|{HW}", {}),
    ):
        assert dg.materialize(
            [raw_measurements, cycle_statistics], partition_key=key, instance=instance, resources=resources, tags=tags
        ).success
    assert dg.materialize(ALL, selection=["leaderboard"], instance=instance, resources=resources).success
    return resources


def publish(instance, resources, hub: HuggingFaceHub, raise_on_error=True):
    return dg.materialize(
        ALL,
        selection=["hf_dataset_snapshot", "hf_dataset_publish"],
        instance=instance,
        resources={**resources, "hf_hub": hub},
        raise_on_error=raise_on_error,
    )


def meta(instance, key):
    return {
        k: v.value
        for k, v in instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata.items()
    }


def test_snapshot_is_deterministic_and_loadable(measured, storage, instance, tmp_path):
    res = publish(instance, measured, HuggingFaceHub(mode="dry-run"))
    assert res.success
    folder = snapshot_folder(storage)
    first = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    m = meta(instance, "hf_dataset_snapshot")
    assert (
        m["rows_requests"] == 384 * 3 + 8 * 3 and m["rows_leaderboard"] == 2 and "data/requests.parquet" in m["files"]
    )
    pub = meta(instance, "hf_dataset_publish")
    assert pub["committed"] is False and pub["reason"].startswith("dry run") and "README.md" in pub["would_commit"]
    # rebuild from the same inputs: byte-identical files, same content hash
    assert publish(instance, measured, HuggingFaceHub(mode="dry-run")).success
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == first
    assert meta(instance, "hf_dataset_snapshot")["content_hash"] == m["content_hash"]
    # the card: YAML configs for every table, units, methodology, how to trace a row
    card = (folder / "README.md").read_text()
    assert (
        "config_name: requests" in card
        and "path: data/power_timelines.parquet" in card
        and "license: cc-by-4.0" in card
    )
    assert "| `j_per_token_mean` |" in card and "J/token" in card and "## Tracing a number back to its run" in card
    # datasets can load every config from the folder, and the leaderboard equals the asset's
    from datasets import load_dataset

    lb_asset = pd.read_parquet(storage.io_base().path + "/leaderboard.parquet")
    for config in ("leaderboard", "requests", "cycles", "provenance", "power_timelines"):
        ds = load_dataset(str(folder), config, split="train", cache_dir=str(tmp_path / "hf-cache"))
        assert ds.num_rows == pq.ParquetFile(folder / "data" / f"{config}.parquet").metadata.num_rows
    lb = load_dataset(str(folder), "leaderboard", split="train", cache_dir=str(tmp_path / "hf-cache")).to_pandas()
    key = ["partition_key", "sweep_point"]
    pd.testing.assert_frame_equal(
        lb.sort_values(key).reset_index(drop=True)[["partition_key", "j_per_token_mean", "raw_run_id"]],
        lb_asset.sort_values(key).reset_index(drop=True)[["partition_key", "j_per_token_mean", "raw_run_id"]],
        check_dtype=False,
    )
    measured_row = lb[lb.energy_status == "measured"].iloc[0]
    assert measured_row.j_per_token_mean > 0
    assert pd.isna(lb[lb.energy_status == "unmeasured"].iloc[0].j_per_token_mean)  # never 0
    # the row without energy carries its throughput fallback (#29) as the leaderboard stores it; the measured row none
    cpu_row = lb[lb.energy_status == "unmeasured"].iloc[0]
    assert cpu_row.throughput_fallback_rank == 1 and cpu_row.throughput_fallback_label == "throughput 1 of 1"
    assert pd.isna(measured_row.throughput_fallback_rank) and not measured_row.throughput_fallback_label
    assert not cpu_row.ranked and "energy unmeasured" in cpu_row.not_ranked_reason
    assert "| `throughput_fallback_label` |" in card and "`throughput =1 of 3`" in card  # documented in the card
    prov = load_dataset(str(folder), "provenance", split="train", cache_dir=str(tmp_path / "hf-cache")).to_pandas()
    assert set(prov.raw_run_id) == set(lb.raw_run_id) and prov.content_hash.notna().all()


def test_publish_to_stub_hub(measured, storage, instance, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with HubStub() as stub:
        hub = HuggingFaceHub(repo_id=REPO, endpoint=stub.url, mode="on", token=TOKEN, backoff_s=0.01)
        assert publish(instance, measured, hub).success
        repo = stub.repos[REPO]
        assert len(repo.commits) == 2  # the repo's initial commit + exactly one snapshot commit
        files = repo.files
        assert {"README.md", "data/leaderboard.parquet", "data/requests.parquet", "data/provenance.parquet"} <= set(
            files
        )
        folder = snapshot_folder(storage)
        assert all(files[p.relative_to(folder).as_posix()] == p.read_bytes() for p in folder.rglob("*") if p.is_file())
        m = meta(instance, "hf_dataset_publish")
        assert m["committed"] is True and m["commit"] == repo.head and repo.tags[m["tag"]] == repo.head
        assert all(h == f"Bearer {TOKEN}" for h in stub.auth_headers) and stub.auth_headers

        # the same data again: no new commit, and metadata says so
        assert publish(instance, measured, hub).success
        assert len(repo.commits) == 2
        m2 = meta(instance, "hf_dataset_publish")
        assert m2["committed"] is False and "already holds" in m2["reason"]

        # changed data: one new commit and one new tag
        more = dg.materialize(
            [raw_measurements, cycle_statistics],
            partition_key=f"builtin-small-llama__pytorch|{HW}",
            instance=instance,
            resources=measured,
        )
        assert more.success
        assert dg.materialize(ALL, selection=["leaderboard"], instance=instance, resources=measured).success
        assert publish(instance, measured, hub).success
        assert len(repo.commits) == 3 and len(repo.tags) == 2

        # a 500 on every try of the commit: the run fails with a clear message, no tag, nothing half-published; the
        # next run succeeds (one 500 is retried: tests/energy_assets/test_faults.py)
        assert dg.materialize(
            [raw_measurements, cycle_statistics],
            partition_key=f"builtin-small-llama__pytorch|{HW}",
            instance=instance,
            resources=measured,
        ).success
        assert dg.materialize(ALL, selection=["leaderboard"], instance=instance, resources=measured).success
        stub.faults = [(r"POST .*/commit/", "500")] * hub.attempts
        res = publish(instance, measured, hub, raise_on_error=False)
        assert not res.success
        failure = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error
        text = failure.message + (failure.cause.message if failure.cause else "")
        assert f"failed after {hub.attempts} tries" in text and "500" in text and TOKEN not in text
        assert len(repo.commits) == 3 and len(repo.tags) == 2
        assert publish(instance, measured, hub).success
        assert len(repo.commits) == 4 and len(repo.tags) == 3

    # the token appears nowhere: captured logs, stdout/stderr, the event log, run configs
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + caplog.text
    runs = instance.get_runs()
    assert len(runs) >= 8
    for run in runs:
        assert TOKEN not in str(run.run_config) and TOKEN not in str(run.tags)
        assert all(TOKEN not in str(e) for e in instance.all_logs(run.run_id))


def test_concurrent_writer_is_detected(measured, storage, instance):
    """Another writer commits between our read of the head and our commit: parent_commit makes ours fail."""
    with HubStub() as stub:
        hub = HuggingFaceHub(repo_id=REPO, endpoint=stub.url, mode="on", token=TOKEN)
        real_info = __import__("huggingface_hub").HfApi.repo_info

        def racing_info(self, *a, **kw):
            info = real_info(self, *a, **kw)
            repo = stub.repos[REPO]
            stub._commit(repo, dict(repo.files, **{"other.txt": b"someone else"}), "concurrent")
            return info

        import huggingface_hub

        huggingface_hub.HfApi.repo_info = racing_info
        try:
            res = publish(instance, measured, hub, raise_on_error=False)
        finally:
            huggingface_hub.HfApi.repo_info = real_info
        assert not res.success
        failure = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error
        assert "412" in failure.message + (failure.cause.message if failure.cause else "")
        assert not stub.repos[REPO].tags


def test_publishing_off(measured, instance):
    assert publish(instance, measured, HuggingFaceHub(mode="off", repo_id=REPO)).success
    m = meta(instance, "hf_dataset_publish")
    assert m["committed"] is False and m["reason"] == "publishing switched off"


def test_leaderboard_site_asset(measured, storage, instance, monkeypatch):
    from energy_assets.assets.site import leaderboard_site

    monkeypatch.setenv("LEM_DAGSTER_URL", "http://127.0.0.1:3000")
    monkeypatch.setenv("LEM_SITE_URL", "https://energy.example.org/board")

    res = dg.materialize(
        [*ALL, leaderboard_site], selection=["leaderboard_site"], instance=instance, resources=measured
    )
    assert res.success
    m = meta(instance, "leaderboard_site")
    assert m["rows"] == 2 and m["detail_pages"] == 2
    index = "https://energy.example.org/board/index.html"  # the public address, never a file:// URL
    assert m["index"] == index and f"({index}#chart-scatter)" in m["charts"] and "{" not in m["charts"]  # no JSON
    logs = [e.message for e in instance.all_logs(res.run_id) if e.level >= logging.WARNING]
    assert any("names this machine only" in message for message in logs)  # a localhost Dagster: warned
    snippets = [html.unescape(p.read_text()) for p in (storage.root / "site" / "detail").glob("*.html")]
    assert all(
        'src="https://energy.example.org/board/embed.html?model=' in p and 'id="links-local"' in p for p in snippets
    )
    monkeypatch.delenv("LEM_SITE_URL")
    assert dg.materialize(
        [*ALL, leaderboard_site], selection=["leaderboard_site"], instance=instance, resources=measured
    ).success
    assert meta(instance, "leaderboard_site")["index"] == str(storage.root / "site" / "index.html")  # a path
    index = (storage.root / "site" / "index.html").read_text()
    assert "assets/plotly.min.js" in index and "cdn" not in index.lower()
    pages = list((storage.root / "site" / "detail").glob("*.html"))
    assert len(pages) == 2
    runs = {r.run_id for r in instance.get_runs()}
    linked = {h.split("/runs/")[1].split('"')[0] for p in pages for h in p.read_text().split("href=") if "/runs/" in h}
    assert linked and linked <= runs  # every detail page links the Dagster run that measured it


def test_nothing_is_published_from_a_leaderboard_whose_blocking_checks_did_not_run(measured, storage, instance):
    """A leaderboard materialized without its checks (here: their definitions left out of the run) must not reach
    the site, the snapshot or the Hub: each refuses, naming the checks."""
    from energy_assets.assets.site import leaderboard_site

    unchecked = [raw_measurements, cycle_statistics, leaderboard]
    assert dg.materialize(unchecked, selection=["leaderboard"], instance=instance, resources=measured).success
    for asset in ("leaderboard_site", "hf_dataset_snapshot", "hf_dataset_publish"):
        res = dg.materialize(
            [*ALL, leaderboard_site], selection=[asset], instance=instance, resources=measured, raise_on_error=False
        )
        assert not res.success, asset
        failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.step_failure_data.error.message
        assert "blocking checks did not pass" in message and "every_row_has_provenance" in message, asset
    # the same leaderboard with its checks: published
    assert dg.materialize(ALL, selection=["leaderboard"], instance=instance, resources=measured).success
    assert dg.materialize(
        [*ALL, leaderboard_site], selection=["leaderboard_site"], instance=instance, resources=measured
    ).success


def test_only_the_raw_folders_behind_published_rows_are_exported(good_gpu_result):
    """A raw partition stored after its statistics (or whose statistics were refused) is not published beside rows
    computed from another version of it."""
    from energy_assets.assets.publish import published_raw
    from gpu_ops.results import read_summary

    version = read_summary(good_gpu_result)["content_hash"]
    board = pd.DataFrame({"partition_key": ["a|h", "b|h"], "raw_data_version": [version, "0" * 16]})
    raw = {"a|h": good_gpu_result, "b|h": good_gpu_result, "c|h": good_gpu_result}
    assert published_raw(dg.build_asset_context(), raw, board) == {"a|h": good_gpu_result}


def test_the_sites_data_api_validates_and_every_source_reads_to_the_same_frame(measured, storage, instance, tmp_path):
    """The site's JSON against its generated schemas; read_leaderboard of the site (folder and URL), the dataset folder
    and the dataset on the Hub gives one frame: the leaderboard's, typed, unmeasured energy missing (never 0)."""
    import functools
    import http.server
    import json
    import os
    import subprocess
    import sys
    import threading

    import jsonschema

    from energy_assets.assets.site import leaderboard_site
    from gpu_ops import read_leaderboard
    from gpu_ops.schema import LEADERBOARD

    with HubStub() as stub:
        hub = HuggingFaceHub(repo_id=REPO, endpoint=stub.url, mode="on", token=TOKEN)
        assert dg.materialize(
            [*ALL, leaderboard_site],
            selection=["hf_dataset_snapshot", "hf_dataset_publish", "leaderboard_site"],
            instance=instance,
            resources={**measured, "hf_hub": hub},
        ).success
        env = dict(os.environ, HF_ENDPOINT=stub.url, HF_TOKEN=TOKEN, HF_HUB_CACHE=str(tmp_path / "hub-cache"))
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
        script = (
            f"from gpu_ops import read_leaderboard; read_leaderboard({REPO!r}).to_pickle({str(tmp_path / 'hub.pkl')!r})"
        )
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    from_hub = pd.read_pickle(tmp_path / "hub.pkl")

    site = storage.root / "site"
    api = site / "api"
    load = lambda p: json.loads(p.read_text())  # noqa: E731
    board_schema, row_schema = (
        load(api / "schema" / "leaderboard.schema.json"),
        load(api / "schema" / "row.schema.json"),
    )
    validator = jsonschema.Draft202012Validator
    validator.check_schema(board_schema)
    validator(board_schema).validate(load(api / "leaderboard.json"))
    rows = sorted((api / "rows").glob("*.json"))
    assert len(rows) == 2
    for path in rows:
        validator(row_schema).validate(load(path))
    spec = load(api / "openapi.json")
    assert spec["openapi"] == "3.1.0" and all(
        (site / p.lstrip("/").replace("{id}", rows[0].stem)).is_file() for p in spec["paths"]
    )
    for schema in spec["components"]["schemas"].values():
        validator.check_schema(schema)
    # a row's provenance: the run that stored its raw partition, linked in the UI, with its config
    detail = load(rows[0])
    raw_runs = {r.run_id for r in instance.get_runs()}
    assert detail["provenance"]["raw_run_id"] in raw_runs and detail["provenance"]["config"]["name"]
    assert (site / "detail" / f"{detail['id']}.html").is_file() and detail["row"] in load(api / "leaderboard.json")[
        "rows"
    ]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from_url = read_leaderboard(f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
    from_site, from_dataset = read_leaderboard(site), read_leaderboard(snapshot_folder(storage))
    assert list(from_site.columns) == list(LEADERBOARD.names) and len(from_site) == 2
    for other in (from_url, from_dataset, from_hub):
        pd.testing.assert_frame_equal(from_site, other)
    asset = pd.read_parquet(storage.io_base().path + "/leaderboard.parquet").sort_values(
        ["partition_key", "sweep_point"]
    )
    pd.testing.assert_frame_equal(from_site, LEADERBOARD.conform(asset))
    unmeasured = from_site[from_site.energy_status == "unmeasured"]
    assert len(unmeasured) == 1 and unmeasured.j_per_token_mean.isna().all()
    assert [
        r["j_per_token_mean"] for r in load(api / "leaderboard.json")["rows"] if r["energy_status"] == "unmeasured"
    ] == [None]
    assert (from_site[from_site.energy_status == "measured"].j_per_token_mean > 0).all()
    assert "read_leaderboard(" in (snapshot_folder(storage) / "README.md").read_text()  # the card shows the reader


def test_transient_errors_are_the_http_clients_transport_errors_and_5xx_not_a_refused_commit():
    import httpx2  # the client huggingface_hub uses here

    from energy_assets.assets.publish import transient

    class Answer(Exception):
        def __init__(self, status):
            self.response = type("R", (), {"status_code": status})()

    assert transient(httpx2.ReadTimeout("slow")) and transient(httpx2.RemoteProtocolError("dropped"))
    assert transient(ConnectionResetError()) and transient(Answer(503)) and transient(Answer(429))
    assert not transient(Answer(412)) and not transient(Answer(404)) and not transient(ValueError("bad"))
