"""Result folders and their writing: --out checked before a measurement, a failed write never loses one."""

import errno
import time

import pandas as pd
import pytest

from gpu_ops import results
from gpu_ops.config import parse_config
from gpu_ops.errors import UserError
from gpu_ops.results import TABLES, check_output_folder, read_tables, save_result
from gpu_ops.runner import run_experiment


def test_out_is_checked_for_a_folder_writability_and_space(tmp_path, monkeypatch):
    check_output_folder(tmp_path / "new" / "deeper")  # may not exist yet: its nearest existing parent is checked
    assert not (tmp_path / "new").exists()  # and nothing is created before a measurement
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"--out .*file/sub: .*file is not a folder"):
        check_output_folder(tmp_path / "file" / "sub")
    with pytest.raises(UserError, match=r"--out /proc/lem-results: cannot write into /proc"):
        check_output_folder("/proc/lem-results")
    monkeypatch.setenv("LEM_MIN_FREE_MB", str(1 << 40))
    with pytest.raises(UserError, match=r"MiB free on that disk, a result needs up to .* \(LEM_MIN_FREE_MB\)"):
        check_output_folder(tmp_path)


def test_a_full_disk_is_refused_before_measuring(tmp_path, monkeypatch):
    """The check runs before the model is even loaded: nothing is measured only to be lost."""
    from gpu_ops.backends.pytorch import PytorchBackend

    monkeypatch.setenv("LEM_MIN_FREE_MB", str(1 << 40))
    monkeypatch.setattr(PytorchBackend, "load", lambda *a: pytest.fail("the model was loaded before --out was checked"))
    t0 = time.monotonic()
    with pytest.raises(UserError, match="MiB free on that disk"):
        run_experiment(parse_config({"name": "x", "model": "builtin:tiny-llama"}), tmp_path / "out")
    assert time.monotonic() - t0 < 5


def test_a_failed_write_keeps_the_tables_in_a_recovery_folder_it_names(good_gpu_result, tmp_path, monkeypatch):
    tables = read_tables(good_gpu_result)
    target = tmp_path / "out" / "run-1"
    real = results.write_tables

    def disk_full_at_the_target(t, folder):
        if folder == target:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(t, folder)

    monkeypatch.setattr(results, "write_tables", disk_full_at_the_target)
    monkeypatch.setenv("LEM_RECOVERY_DIR", str(tmp_path / "rescue"))
    with pytest.raises(UserError) as err:
        save_result(tables, target)
    recovered = tmp_path / "rescue" / "llm-energy-measure-recovered" / "run-1"
    assert f"writing the result to {target} failed (No space left on device)" in str(err.value)
    assert f"the measured tables are safe in {recovered}" in str(err.value)
    back = read_tables(recovered)  # a complete result folder
    for name in TABLES:
        pd.testing.assert_frame_equal(back.table(name), tables.table(name))
    with pytest.raises(UserError, match=r"safe in .*run-1\.1 "):  # a second failure never overwrites the first rescue
        save_result(tables, target)


def test_a_parquet_bomb_is_refused_from_its_footer_before_anything_is_decoded(good_gpu_result, tmp_path, monkeypatch):
    """The issue's bomb: 725 KB, 60M rows x 3 columns (under a 200M-value bound), 1.2 GB once decoded."""
    import shutil

    import pyarrow.parquet as pq

    from tests.corpus import _timeline_bomb

    folder = tmp_path / "bomb"
    shutil.copytree(good_gpu_result, folder)
    _timeline_bomb(folder)
    assert (folder / "timeline.parquet").stat().st_size < 1 << 20
    decoded = []
    real_read = pq.ParquetFile.read

    def read(self, *args, **kwargs):
        if self.metadata.num_rows > 1_000_000:
            decoded.append(self.metadata.num_rows)
            raise MemoryError("decoded before it was refused")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", read)
    with pytest.raises(UserError, match=r"60000000 rows in 60 row groups, 1144 MiB once decoded; .* 512 MiB decoded"):
        read_tables(folder)
    assert decoded == []


def _old_folder(good, dest):
    """`good` as the first published version wrote it: no `steps` table, no optional column (parallelism included),
    summary.json naming the experiment's hash `config_hash`, and a meter that recorded neither its cross-check rule
    nor an edge term."""
    import json

    import pyarrow.parquet as pq

    from gpu_ops.results import content_hash_of, file_sha256
    from gpu_ops.schema import RESULT_TABLES

    dest.mkdir()
    summary = json.loads((good / "summary.json").read_text())
    meter = {k: v for k, v in summary["meter"].items() if k not in ("cross_check_rule", "cross_check_edges")}
    meter["cross_check_z"] = 3.0  # sigma-v2 recorded its z
    files = {}
    for name, table in RESULT_TABLES.items():
        if name == "steps":
            continue
        arrow = pq.read_table(good / f"{name}.parquet")
        arrow = arrow.drop_columns([c.name for c in table.columns if c.optional and c.name in arrow.column_names])
        if name == "experiment":
            arrow = arrow.set_column(arrow.column_names.index("meter_json"), "meter_json", [[json.dumps(meter)]])
        pq.write_table(arrow, dest / f"{name}.parquet")
        files[name] = {"rows": arrow.num_rows, "sha256": file_sha256(dest / f"{name}.parquet")}
    summary["config_hash"] = summary.pop("experiment_hash")
    unwritten = [
        c.name for t in (RESULT_TABLES["cycles"], RESULT_TABLES["sweep_points"]) for c in t.columns if c.optional
    ]
    for point in summary["sweep_points"]:  # nor the statistics of the figures it did not write
        for key in [k for k in point if any(k == c or k.startswith(f"{c}_") for c in unwritten)]:
            del point[key]
    summary.update(meter=meter, tables=files, content_hash=content_hash_of(files))
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def test_an_older_folder_reads_as_the_current_version(good_gpu_result, tmp_path):
    """Older result folders are upgraded in one place when read (results.upgrade): every table and column of this
    version is there (a column the folder never wrote is empty, and named in `added` so no check compares it), and
    what the folder implies is filled in: its parallelism, its experiment hash's current name, its cross-check rule."""
    import json

    from gpu_ops.schema import RESULT_TABLES
    from gpu_ops.validation import validate

    good = read_tables(good_gpu_result)
    old = read_tables(_old_folder(good_gpu_result, tmp_path / "old"))
    for name, table in RESULT_TABLES.items():
        assert list(old.table(name).columns)[: len(table.names)] == list(table.names), name
        dropped = [c.name for c in table.columns if c.optional and c.name != "parallelism"]
        assert old.added.get(name, ()) == tuple(dropped), name
        assert old.table(name)[dropped].isna().all().all(), name
    assert old.steps.empty and good.added == {}
    assert list(old.cycles.parallelism) == list(good.cycles.parallelism)  # the config's block
    assert old.summary["experiment_hash"] == good.summary["experiment_hash"]
    meter = json.loads(old.experiment.meter_json.iloc[0])
    assert meter["cross_check_rule"] == "sigma-v2" and meter["cross_check_edges"] is False
    assert meter == old.summary["meter"]
    findings = validate(old)  # every check reads the one (current) shape
    assert all(f.passed for f in findings if f.blocking), [f.message for f in findings if not f.passed]
