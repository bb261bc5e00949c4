"""End-to-end engine runs on CPU: real tiny-model generation; GPU energy through the pynvml fake."""

import json

import pandas as pd
import pytest

from gpu_ops.cli import main
from gpu_ops.config import parse_config
from gpu_ops.errors import MeasurementError, UserError
from gpu_ops.results import read_tables
from gpu_ops.runner import run_experiment
from gpu_ops.validation import blocking_failures, validate
from tests.fake_nvml import FakeGpu, FakeNVML

BASE = {
    "name": "e2e",
    "model": "builtin:tiny-llama",
    "max_input_tokens": 32,
    "max_output_tokens": 8,
    "min_output_tokens": 8,
    "prompts": {"count": 8},
    "batching": {"strategy": "static", "batch_size": 4},
    "cycles": 3,
    "warmup_requests": 2,
    "cooldown_s": 0.0,
    "energy": {"idle_baseline_s": 0.5},
}


def test_cpu_run_records_unmeasured_energy_never_zero(tmp_path, tiny_model_path):
    out = run_experiment(parse_config(BASE), tmp_path)
    c = out.tables.cycles
    assert len(c) == 3 and (c.energy_status == "unmeasured").all()
    assert c.gross_energy_j.isna().all() and c.j_per_token.isna().all()
    assert c.unmeasured_reason.str.contains("no GPU energy").all()
    assert (c.output_tokens == 64).all() and (c.tokens_per_s > 0).all()
    assert not blocking_failures(validate(out.tables))


def test_fake_gpu_run_measures_energy_idle_and_net(tmp_path, tiny_model_path):
    nv = FakeNVML([FakeGpu(power=lambda t: 250.0)], instant_power=True)  # an H100 with the instantaneous field
    cfg = parse_config(dict(BASE, prompts={"count": 32}, sweep={"batching.batch_size": [4, 8]}))
    out = run_experiment(cfg, tmp_path, nvml=nv)
    t = out.tables
    assert set(t.cycles.sweep_point) == {"batch_size=4", "batch_size=8"}
    m = t.cycles
    assert (m.energy_status == "measured").all() and (m.gross_energy_j > 0).all()
    assert t.experiment.iloc[0].idle_power_w == pytest.approx(250.0, rel=0.25)
    assert (m.j_per_token == m.gross_energy_j / m.output_tokens).all()
    assert m.hardware.iloc[0] == "h100-80gb-hbm3" and m.power_limit_w.iloc[0] == 700.0
    assert set(t.windows.kind) == {"idle_before", "idle_after", "warmup", "cycle"}
    warm = t.windows[t.windows.kind == "warmup"]  # the second point reuses the model, warmed at its new batch size
    assert list(warm.sweep_point) == ["batch_size=4", "batch_size=8"]
    assert len(t.timeline) > 10 and {"t_s", "device", "power_w"} <= set(t.timeline.columns)
    fp = json.loads(t.experiment.iloc[0].fingerprint_json)
    assert (
        fp["driver"] == "580.159.04"
        and fp["gpus"][0]["uuid_hash"]
        and "GPU-" not in t.experiment.iloc[0].fingerprint_json
    )
    # prefill + decode + other add up to the counter energy
    parts = m.prefill_energy_j + m.decode_energy_j + m.other_energy_j
    assert (abs(parts - m.gross_energy_j) < 1e-6).all()
    st = pd.DataFrame(t.summary["sweep_points"])
    assert (st.n_cycles == 3).all() and st.j_per_token_ci95.notna().all()
    # the H100 field's sensed stretch is recorded, and the run's claims agree with themselves (on the H100 a tuple here
    # once failed partition_claim_consistent: meter_json read back a list, docs/benchmarks §23)
    meter = json.loads(t.experiment.iloc[0].meter_json)
    assert meter["power_source"] == "nvml_field_power_instant" and meter["sensed_stretch_s"] == [0.026, 0.011]
    claim = {f.check: f for f in validate(t)}["partition_claim_consistent"]
    assert claim.passed, claim.message


def test_result_folder_roundtrip_and_tamper_detection(tmp_path, tiny_model_path):
    out = run_experiment(parse_config(BASE), tmp_path, folder_name="r1")
    back = read_tables(out.folder)
    pd.testing.assert_frame_equal(back.cycles, out.tables.cycles.reset_index(drop=True), check_dtype=False)
    assert back.summary["content_hash"] == out.content_hash
    assert [p.name for p in tmp_path.iterdir()] == ["r1"]  # no temp folder left behind
    (out.folder / "cycles.parquet").write_bytes(b"garbage")
    with pytest.raises(UserError, match="checksum differs"):
        read_tables(out.folder)


def test_engine_crash_mid_cycle_discards_window_and_frees_engine(tmp_path, tiny_model_path, monkeypatch):
    from gpu_ops.backends.pytorch import PytorchBackend

    calls = {"run": 0, "close": 0}
    real_run, real_close = PytorchBackend.run, PytorchBackend.close

    def failing_run(self, requests, clock):
        calls["run"] += 1
        if calls["run"] == 2:
            raise RuntimeError("CUDA out of memory (injected)")
        return real_run(self, requests, clock)

    def counting_close(self):
        calls["close"] += 1
        real_close(self)

    monkeypatch.setattr(PytorchBackend, "run", failing_run)
    monkeypatch.setattr(PytorchBackend, "close", counting_close)
    with pytest.raises(
        MeasurementError, match=r"cycle 1 failed, its energy discarded: RuntimeError: CUDA out of memory"
    ):
        run_experiment(parse_config(BASE), tmp_path, nvml=FakeNVML([FakeGpu()]))
    assert calls["close"] == 1
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_validation_rejects_crafted_bad_data(tmp_path, tiny_model_path):
    out = run_experiment(
        parse_config(dict(BASE, energy={"idle_baseline_s": 0.5})), tmp_path, nvml=FakeNVML([FakeGpu()])
    )
    t = out.tables
    c = t.cycles
    c.loc[0, "net_energy_j"] = -5.0
    c.loc[1, "avg_power_w"] = 900.0
    c.loc[2, "cross_check_rel_diff"] = 0.4
    c.loc[0, "foreign_processes"] = "4242"
    c.loc[1, "too_short"] = True
    failed = {f.check for f in blocking_failures(validate(t))}
    physics = {
        "net_energy_non_negative",
        "power_within_limit",
        "counter_timeline_agree",
        "no_foreign_gpu_process",
        "window_long_enough",
    }
    # each edit is caught by its physics check; the edited cycles also no longer match their windows and raw readings
    assert physics <= failed and failed - physics == {"derived_values_match_raw", "windows_match_cycles"}
    c.loc[0, "energy_status"] = "unmeasured"
    c.loc[0, "unmeasured_reason"] = None
    assert "energy_present" in {f.check for f in blocking_failures(validate(t))}
    c.loc[2, "backend"] = "vllm"
    assert "one_model_backend_per_partition" in {f.check for f in blocking_failures(validate(t))}


def test_cli_run_and_validate(tmp_path, capsys, tiny_model_path):
    p = tmp_path / "tiny.yaml"
    import yaml

    p.write_text(yaml.safe_dump(dict(BASE, cycles=2)))
    assert main(["run", str(p), "--out", str(tmp_path / "res"), "-q"]) == 0
    folder = capsys.readouterr().out.strip()
    assert main(["validate", folder]) == 0
    assert "energy_present: ok" in capsys.readouterr().out
    assert main(["list-presets"]) == 0 and "deterministic" in capsys.readouterr().out
    assert main(["list-backends"]) == 0 and "pytorch    available" in capsys.readouterr().out
    assert main(["list-hardware"]) == 0 and "cpu: cpu-" in capsys.readouterr().out


def test_two_measurements_on_one_gpu_never_overlap(tmp_path, tiny_model_path, monkeypatch):
    """The engine's per-GPU lock is a second guard behind the run queue: two runs started at once on the same GPU
    (same UUID) run one after the other."""
    import threading

    import pandas as pd

    monkeypatch.setenv("LEM_LOCK_DIR", str(tmp_path / "locks"))
    outs, errors = [], []

    def one(name):
        try:
            outs.append(
                run_experiment(
                    parse_config(dict(BASE, name=name, energy={"idle_baseline_s": 0.5})),
                    tmp_path / name,
                    nvml=FakeNVML([FakeGpu(uuid="GPU-shared")]),
                )
            )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(outs) == 2
    spans = sorted(
        (pd.Timestamp(o.tables.experiment.started_at.iloc[0]), pd.Timestamp(o.tables.experiment.finished_at.iloc[0]))
        for o in outs
    )
    assert spans[0][1] <= spans[1][0], f"the two measurements overlapped: {spans}"


def test_cli_run_exits_non_zero_when_a_blocking_check_fails(tmp_path, capsys, monkeypatch, tiny_model_path):
    """A process that is not ours on the GPU (pid 1) fails no_foreign_gpu_process: the folder is written for
    inspection, and the exit code says the result is not one the platform would take."""
    import functools

    import yaml

    import gpu_ops.runner

    monkeypatch.setattr(
        gpu_ops.runner, "run_experiment", functools.partial(run_experiment, nvml=FakeNVML([FakeGpu(pids=[1])]))
    )
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(BASE))
    assert main(["run", str(p), "--out", str(tmp_path / "res"), "-q"]) == 1
    out = capsys.readouterr()
    assert out.err.startswith("error: blocking checks failed: ") and "no_foreign_gpu_process" in out.err
    assert (tmp_path / "res" / out.out.strip().rsplit("/", 1)[-1] / "summary.json").is_file()


def test_an_idle_window_without_a_counter_step_is_reported_not_a_crash(tmp_path, tiny_model_path):
    """A counter that does not step during the idle baseline gives no idle power: printed as unmeasured, net energy
    left empty, never a crash on formatting None."""
    said = []
    nv = FakeNVML([FakeGpu(power=lambda t: 100.0)], update_s=60.0)  # the counter never steps within this run
    out = run_experiment(parse_config(BASE), tmp_path, nvml=nv, progress=said.append)
    assert any(m.startswith("idle-before: unmeasured over") for m in said), said
    assert out.tables.experiment.idle_power_w.isna().all() and out.tables.cycles.net_energy_j.isna().all()


def test_warm_model_skips_warmup_only_at_the_batch_shape_it_was_warmed_at(tmp_path, tiny_model_path):
    """An eager model that stays loaded is warmed again when the batch shape changes (its first cycle at a new batch
    size ran 2.0-4.2x slower on the H200), not when only a run-time option does; a warm-up sends at least one batch."""
    sweep = {"batching.batch_size": [4, 8], "decoder.temperature": [0.0, 0.7]}
    cfg = parse_config(dict(BASE, prompts={"count": 16}, warmup_requests=1, sweep=sweep))
    out = run_experiment(cfg, tmp_path)
    warm = out.tables.windows[out.tables.windows.kind == "warmup"]
    points = list(out.tables.sweep_points.sweep_point)
    assert len(points) == 4
    assert [points.index(p) for p in warm.sweep_point] == [0, 2]  # one per batch size, in the order run
    assert cfg.warmup_count() == 4 and parse_config(dict(BASE, warmup_requests=0)).warmup_count() == 0
    assert parse_config(dict(BASE, backend="vllm", warmup_requests=1)).warmup_count() == 1  # no batch shape to warm


def test_run_options_refuse_an_unknown_option_before_measuring(tmp_path):
    """run_experiment hands its options to measure as one RunOptions: a misspelt one is refused, nothing written."""
    with pytest.raises(TypeError, match="folder_nam"):
        run_experiment(parse_config(BASE), tmp_path / "out", folder_nam="r1")
    assert not (tmp_path / "out").exists()
