"""Estimates before a run: from history on the same hardware, on other hardware scaled by the profiles, or from the
roofline; `estimate` and `run --dry-run` on the command line, and their refusals."""

import json
import shutil
from pathlib import Path

import pytest

from gpu_ops import estimate as est
from gpu_ops.cli import main
from gpu_ops.config import parse_config
from gpu_ops.errors import UserError
from gpu_ops.hardware import standard_profiles
from gpu_ops.models import load_architecture
from gpu_ops.results import load_json, read_tables

REPO = Path(__file__).resolve().parents[2]
MULTIGPU = REPO / "docs/benchmarks/raw/multigpu"
TP1 = MULTIGPU / "llama8b-tp1__h200__20261127T092532Z-fb348794"
H100 = MULTIGPU / "h100-tp1"


def _config_of(folder: Path, **changes):
    data = load_json(read_tables(folder).sweep_points.iloc[0].config_json, "config")
    return parse_config({**data, **changes})


@pytest.fixture(scope="module")
def history():
    points, skipped = est.read_history([MULTIGPU])
    assert all("physics checks failed" in note for note in skipped)  # e.g. a foreign process on the GPU
    return points


def test_parameter_count_of_a_known_architecture():
    """Llama-3.1-8B has 8.03 B weights (its model card)."""
    assert est.parameter_count(load_architecture("llama-3.1-8b")) == pytest.approx(8.03e9, rel=0.005)
    with pytest.raises(UserError, match="hidden_size"):
        est.parameter_count({"num_hidden_layers": 2})


def test_history_reads_measured_points_and_skips_a_tampered_folder(tmp_path, history):
    assert {m.hardware for m in history} == {"h200", "2x-h200", "h100-80gb-hbm3"}
    assert all(m.cycles and all(e > 0 for _, e in m.cycles) for m in history)
    bad = tmp_path / "bad"
    shutil.copytree(TP1, bad)
    summary = json.loads((bad / "summary.json").read_text())
    summary["hardware"] = "l4"
    (bad / "summary.json").write_text(json.dumps(summary))
    shutil.copytree(TP1, tmp_path / "good")
    points, skipped = est.read_history([tmp_path])
    assert len(points) == 1 and len(skipped) == 1 and skipped[0].startswith(str(bad))


def test_history_estimate_reproduces_the_measured_point(history):
    """Estimating a measured configuration from its own result gives back its mean cycle."""
    own = [m for m in history if m.folder == str(TP1)]
    cfg = _config_of(TP1)
    (point,) = est.estimate(cfg, "h200", own)
    mean_t = sum(d for d, _ in own[0].cycles) / len(own[0].cycles)
    mean_e = sum(e for _, e in own[0].cycles) / len(own[0].cycles)
    runs = cfg.cycles + cfg.warmup_count() / cfg.prompts.count
    idle = 2 * cfg.energy.idle_baseline_s  # the run's idle baselines, before and after
    assert point.wall_s.mid == pytest.approx(mean_t * runs + cfg.cycles * cfg.cooldown_s + idle)
    assert point.energy_j.mid == pytest.approx(mean_e * runs)
    assert point.energy_j.low <= point.energy_j.mid <= point.energy_j.high
    assert point.energy_kwh.mid == pytest.approx(point.energy_j.mid / est.J_PER_KWH)
    assert point.method.startswith("history: 1 nearest result on h200")
    assert point.requests == cfg.prompts.count * cfg.cycles + cfg.warmup_count()


def test_history_scales_with_tokens_and_parameters(history):
    base = _config_of(TP1, cycles=3, warmup_requests=0, cooldown_s=0)
    longer = _config_of(TP1, cycles=3, warmup_requests=0, cooldown_s=0, max_output_tokens=256, min_output_tokens=256)
    smaller = _config_of(TP1, cycles=3, warmup_requests=0, cooldown_s=0, model="synthetic:llama-3.2-1b")
    (b,), (long_,), (small,) = (est.estimate(c, "h200", history) for c in (base, longer, smaller))
    assert long_.energy_j.mid == pytest.approx(2 * b.energy_j.mid * base.max_output_tokens / 128)
    ratio = est.parameter_count(load_architecture("llama-3.2-1b")) / est.parameter_count(
        load_architecture("llama-3.1-8b")
    )
    idle = 2 * base.energy.idle_baseline_s  # the run's idle baselines do not scale with the model
    assert small.wall_s.mid - idle == pytest.approx((b.wall_s.mid - idle) * ratio)


def test_other_hardware_is_scaled_by_the_profiles(history):
    on_h200 = [m for m in history if m.hardware == "h200"]
    cfg = _config_of(TP1, cooldown_s=0)
    (h100,) = est.estimate(cfg, "h100-80gb-hbm3", on_h200)
    (h200,) = est.estimate(cfg, "h200", on_h200)
    p = standard_profiles()
    bw = p["h200"].memory_bandwidth_gbs / p["h100-80gb-hbm3"].memory_bandwidth_gbs
    idle = 2 * cfg.energy.idle_baseline_s  # the run's idle baselines last as long on either
    assert h100.wall_s.mid - idle == pytest.approx((h200.wall_s.mid - idle) * bw)
    assert "bandwidth and TDP to h100-80gb-hbm3" in h100.method and "on h200" in h100.method


def test_roofline_without_history_orders_hardware_by_bandwidth():
    cfg = _config_of(TP1, cooldown_s=0)
    (l4,), (h200,) = (est.estimate(cfg, hw, []) for hw in ("l4", "h200"))
    assert l4.method.startswith("roofline: L4 profile") and h200.method.startswith("roofline: H200")
    assert l4.wall_s.mid > h200.wall_s.mid
    for e in (l4, h200):
        assert e.wall_s.low < e.wall_s.mid < e.wall_s.high and e.energy_j.low < e.energy_j.mid < e.energy_j.high
        assert e.cost is None


def test_roofline_is_the_profiles_fastest_cycle_slowed_by_the_measured_shares():
    from gpu_ops.hardware import resolve

    work = est.workload_of(_config_of(TP1), est.parameter_count(load_architecture("llama-3.1-8b")))
    spec = standard_profiles()["h200"]
    fastest = 2 * work.params * work.input_tokens / (
        spec.bf16_tflops * 1e12
    ) + work.decode_steps * work.weight_bytes / (spec.memory_bandwidth_gbs * 1e9)
    (low_share, high_share), (low_p, high_p) = est.roofline_shares()
    c = est.roofline(work, resolve("h200"))
    assert c.duration_s.low == pytest.approx(fastest / high_share)
    assert c.duration_s.high == pytest.approx(fastest / low_share)
    assert c.energy_j.high == pytest.approx(fastest / low_share * high_p * spec.tdp_w)


def test_cost_from_the_config_price_per_hour():
    cfg = _config_of(TP1, price_per_hour=4.0)
    (two,) = est.estimate(cfg, "2x-h200", [])
    assert two.cost.mid == pytest.approx(two.wall_s.mid * 4.0 * 2 / 3600)


def test_nonstandard_hardware_without_history_is_refused():
    with pytest.raises(UserError, match="geforce-rtx-4090.*no standard profile.*--history"):
        est.estimate(_config_of(TP1), "geforce-rtx-4090", [])


def test_cli_estimate_json_and_table(capsys):
    config = REPO / "examples/llama-1b-gpu.yaml"
    assert main(["estimate", str(config), "--hardware", "h200", "--history", str(MULTIGPU), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["sweep_points"]) == 2
    assert all("physics checks failed" in note for note in out["history_skipped"])
    assert all(p["method"].startswith("history:") and p["energy_j"]["mid"] > 0 for p in out["sweep_points"])
    assert main(["estimate", str(config), "--hardware", "l4"]) == 0
    assert "roofline: L4 profile" in capsys.readouterr().out


def test_cli_dry_run_prints_the_sweep_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "results"
    assert (
        main(["run", str(REPO / "examples/llama-1b-gpu.yaml"), "--dry-run", "--hardware", "h200", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr()
    assert "batch_size=16" in printed.out and "batch_size=64" in printed.out
    assert "requests in all: 512" in printed.out and "roofline" in printed.out
    assert "nothing written" in printed.err and not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["estimate", "no-such.yaml"], "no-such.yaml: no such file"),
        (["estimate", "examples/tiny.yaml", "--hardware", "rtx-9999"], "hardware 'rtx-9999'"),
        (["estimate", "examples/tiny.yaml", "--hardware", "../x"], "--hardware '../x'"),
        (["estimate", "examples/tiny.yaml", "--history", "no-such-dir"], "--history 'no-such-dir': not a folder"),
    ],
)
def test_cli_estimate_refuses_bad_input(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_range_widens_by_the_run_to_run_spread_of_repeated_runs(history):
    """The two runs of the 1-GPU config on h200 differ; a range from one of them widens by that difference."""
    repeated = [m for m in history if m.hardware == "h200"]
    assert len(repeated) == 2 and repeated[0].workload == repeated[1].workload
    spread_t, spread_e = est.run_to_run(repeated)
    means = [sum(e for _, e in m.cycles) / len(m.cycles) for m in repeated]
    assert spread_e == pytest.approx(max(means) / min(means) - 1)
    alone = est.estimate_cycle(repeated[0].workload, "h200", repeated[:1])
    assert est.run_to_run(repeated[:1]) == (0.0, 0.0)
    assert alone.energy_j.high == pytest.approx(max(e for _, e in repeated[0].cycles))
    both = est.estimate_cycle(repeated[0].workload, "h200", repeated)
    assert both.energy_j.high >= max(e for m in repeated for _, e in m.cycles) * (1 + spread_e) * (1 - 1e-9)


def test_a_hub_model_outside_the_cache_is_refused_with_the_fix():
    """Nothing is downloaded (local_files_only): a model the cache lacks is refused, naming how to get it."""
    with pytest.raises(UserError, match="not in the local Hugging Face cache.*`hf download"):
        est.model_config_of("someone/not-cached-model")


def test_open_loop_arrivals_bound_the_cycle_time():
    offline = _config_of(TP1, cooldown_s=0, warmup_requests=0)
    slow = _config_of(TP1, cooldown_s=0, warmup_requests=0, traffic={"mode": "constant", "rate": 0.5})
    (fast,), (paced,) = (est.estimate(c, "h200", []) for c in (offline, slow))
    floor = slow.prompts.count / 0.5
    assert fast.wall_s.high < floor * slow.cycles  # the roofline alone would finish sooner
    idle = 2 * slow.energy.idle_baseline_s
    assert paced.wall_s.low == pytest.approx(floor * slow.cycles + idle) and "arrivals at 0.5/s" in paced.method


def test_dry_run_defaults_to_this_machines_profile(tmp_path, capsys, monkeypatch):
    import gpu_ops.energy as energy
    from gpu_ops.environment import cpu_profile

    monkeypatch.setattr(energy, "load_nvml", lambda: (None, "no NVIDIA driver"))
    assert main(["run", str(REPO / "examples/tiny.yaml"), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "roofline: CPU (fallback) profile" in out and not (tmp_path / "out").exists()
    (point,) = est.estimate(parse_config({"name": "t", "model": "builtin:tiny-llama"}), cpu_profile(), [])
    assert point.hardware == cpu_profile()


def test_dry_run_counts_the_warm_up_the_run_sends_and_on_a_cpu_estimates_no_energy(tmp_path, capsys, monkeypatch):
    """examples/tiny.yaml asks for 4 warm-up requests, but PyTorch warms up one full batch (8): the sweep lines, the
    total and the estimate's table agree on what the run sends. On a CPU no energy is estimated (none is measured)."""
    import gpu_ops.energy as energy

    monkeypatch.setattr(energy, "load_nvml", lambda: (None, "no NVIDIA driver"))
    assert main(["run", str(REPO / "examples/tiny.yaml"), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "16 requests x 3 cycles + 8 warm-up = 56 requests" in out  # batch 8: one full batch
    assert "16 requests x 3 cycles + 4 warm-up = 52 requests" in out  # batch 4: the 4 asked for
    assert "requests in all: 108" in out
    assert "unmeasured (CPU)" in out and " J " not in out and "e+" not in out and "e-0" not in out
    assert "loading the model comes on top" in out


def test_dry_run_of_a_hub_model_outside_the_cache_still_prints_the_sweep(tmp_path, capsys):
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("name: hub\nmodel: someone/not-cached-model\nhardware: [h200]\nsweep: {batching.batch_size: [1, 2]}")
    assert main(["run", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 sweep point(s)" in out and out.count(" requests x ") == 2
    assert "estimate: none" in out and "hf download someone/not-cached-model" in out and "huggingface-cli" not in out


def test_estimate_table_reads_in_human_units():
    from gpu_ops.estimate import PointEstimate, Span, render

    e = PointEstimate("p", "h100", 56, 100, 200, True, Span(1.1, 1.9, 3.0), Span(1090, 4600, 19400), None, None, "m")
    e = PointEstimate(**{**e.__dict__, "energy_kwh": Span(*(x / est.J_PER_KWH for x in (1090, 4600, 19400)))})
    table = render([e])
    assert "4.6 kJ (1.09-19.4 kJ)" in table and "1.28 Wh" in table and "e+" not in table and "e-" not in table
