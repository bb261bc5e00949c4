"""The hostile-input corpus (tests/corpus.py) through the CLI: `validate` refuses every bad result folder and `run`
every bad experiment file, with one line naming the field, a non-zero exit code, no traceback and nothing written."""

from gpu_ops.cli import main
from tests.corpus import build_bad_configs, build_bad_uploads


def test_validate_refuses_every_bad_result_folder(good_gpu_result, tmp_path, capsys):
    cases = [c for c in build_bad_uploads(good_gpu_result, tmp_path) if not c.inbox_only]
    assert len(cases) >= 40
    for case in cases:
        rc = main(["validate", str(tmp_path / case.name)])
        out = capsys.readouterr()
        assert rc != 0, case.name
        assert "Traceback" not in out.err and case.expect in out.out + out.err, f"{case.name}: {out.out}{out.err}"
    assert main(["validate", str(good_gpu_result)]) == 0  # the folder they were made from passes


def test_run_refuses_every_bad_experiment_file_before_measuring(tmp_path, capsys):
    cases = [c for c in build_bad_configs(tmp_path / "configs") if not c.inbox_only]
    assert len(cases) >= 35
    for case in cases:
        rc = main(["run", str(tmp_path / "configs" / case.name), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2, case.name
        assert err.startswith("error: ") and "Traceback" not in err and case.expect in err, f"{case.name}: {err}"
        assert len(err) < 2000, f"{case.name}: the message quotes too much"
    assert not (tmp_path / "out").exists()  # nothing half-written
