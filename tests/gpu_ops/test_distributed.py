"""Multi-GPU plumbing on CPU: torchrun with the gloo backend for tensor parallel (transformers' TP plan) and
data-parallel replicas, gathered on rank 0; the parallelism mapping of every backend; MIG fakes in list-hardware."""

import pytest

from gpu_ops.config import parse_config
from gpu_ops.distributed import _share, world_size
from gpu_ops.errors import ConfigError
from gpu_ops.runner import run_experiment
from tests.fake_nvml import FakeGpu, FakeMig, FakeNVML

BASE = {"name": "dist", "model": "builtin:micro-llama", "device": "cpu", "max_input_tokens": 32, "max_output_tokens": 8,
        "min_output_tokens": 8, "prompts": {"count": 8}, "batching": {"batch_size": 2}, "cycles": 2, "warmup_requests": 2,
        "cooldown_s": 0, "energy": {"idle_baseline_s": 0}}


def test_data_parallel_replicas_gathered_on_rank0(tmp_path, tiny_model_path):
    out = run_experiment(parse_config(dict(BASE, gpus=[0, 1], parallelism={"data": 2})), tmp_path)
    r, sp = out.tables.requests, out.tables.sweep_points
    assert sorted(r[r.cycle == 0].request_id) == list(range(8))  # every request, from both replicas
    assert r.output_tokens.eq(8).all() and r.ttft_s.gt(0).all() and r.itl_s.map(len).eq(7).all()
    assert sp.backend_world_size.iloc[0] == 2 and sp.backend_data_parallel.iloc[0] == 2 and sp.backend_dist_backend.iloc[0] == "gloo"
    assert sp.backend_parameters_on_this_device.iloc[0] == sp.backend_parameters.iloc[0]  # a full replica per rank
    assert out.folder.parent == tmp_path and (out.folder / "summary.json").is_file()


def test_tensor_parallel_shards_the_model(tmp_path, tiny_model_path):
    out = run_experiment(parse_config(dict(BASE, gpus=[0, 1], parallelism={"tensor": 2})), tmp_path)
    sp, r = out.tables.sweep_points, out.tables.requests
    assert sp.backend_tensor_parallel.iloc[0] == 2
    assert sp.backend_parameters_on_this_device.iloc[0] < sp.backend_parameters.iloc[0]  # rank 0 holds a shard only
    assert len(r) == 16 and r.output_tokens.eq(8).all()


def test_share_and_world_size():
    reqs = list(range(10))
    dp = parse_config(dict(BASE, gpus=[0, 1, 2], parallelism={"data": 3}))
    assert [_share(reqs, dp, k) for k in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    tp = parse_config(dict(BASE, gpus=[0, 1], parallelism={"tensor": 2}))
    assert _share(reqs, tp, 1) == reqs and world_size(tp) == 2 and world_size(dp) == 3


def test_gpu_count_must_match_parallelism():
    with pytest.raises(ConfigError, match=r"parallelism uses 2 GPU\(s\) .* but gpus lists 1; list 2 GPU indices, e.g. gpus: \[0, 1\]"):
        parse_config(dict(BASE, parallelism={"tensor": 2}))


def test_backends_map_parallelism_to_their_native_form(tiny_model_path, monkeypatch):
    from gpu_ops.backends import vllm as v
    from gpu_ops.models import resolve_model

    cfg = parse_config(dict(BASE, backend="vllm", gpus=[0, 1, 2, 3], parallelism={"tensor": 2, "data": 2}, device="auto"))
    kw = v.engine_kwargs(cfg, resolve_model(cfg.model))
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"], kw["data_parallel_size"]) == (2, 1, 2)
    pp = parse_config(dict(BASE, backend="vllm", gpus=[0, 1], parallelism={"pipeline": 2}, device="auto"))
    assert v.engine_kwargs(pp, resolve_model(pp.model))["pipeline_parallel_size"] == 2


def test_list_hardware_shows_mig_topology(monkeypatch, capsys):
    import gpu_ops.energy as energy
    from gpu_ops.cli import main
    from gpu_ops.energy.nvml import visible_targets
    from gpu_ops.environment import gpu_profile

    mig = [FakeMig("MIG-aaaa", "3g.40gb", 1, 40 << 30), FakeMig("MIG-cccc", "1g.10gb", 13, 10 << 30)]
    nv = FakeNVML([FakeGpu(uuid="GPU-parent", mig=mig), FakeGpu(uuid="GPU-plain")])
    monkeypatch.setattr(energy, "load_nvml", lambda: (nv, None))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-cccc,GPU-plain")
    assert main(["list-hardware"]) == 0
    out = capsys.readouterr().out
    assert "gpu0: NVIDIA H100 80GB HBM3 uuid=GPU-parent" in out and "mig=on" in out and "mig=off" in out
    assert "mig gi=13 1g.10gb uuid=MIG-cccc" in out and "mig gi=1 3g.40gb uuid=MIG-aaaa" in out
    slice_ = visible_targets(nv)[:1]
    assert gpu_profile(slice_) == "mig-1g.10gb-h100-80gb-hbm3" and f"profile of gpus [0]: {gpu_profile(slice_)}" in out


def test_no_collective_after_the_ranks_closed():
    """The idle window after the run syncs the backend at its edges; the other ranks have left by then, so a
    broadcast would hang (seen on two H200s before this guard)."""
    from gpu_ops.distributed import RankedBackend

    calls = []

    class Dist:
        def broadcast_object_list(self, obj, src):
            calls.append(obj[0][0])

        def barrier(self):
            calls.append("barrier")

    b = RankedBackend.__new__(RankedBackend)
    b.dist, b.followers_listening = Dist(), True
    b.local = type("Local", (), {"sync": lambda self: calls.append("local-sync"), "close": lambda self: calls.append("local-close")})()
    b.sync()
    b.close()
    b.sync()
    b.close()
    assert calls == ["sync", "local-sync", "barrier", "close", "local-close", "local-sync", "local-close"]


def test_other_ranks_are_not_foreign_processes(monkeypatch):
    """On two H200s the rank-1 process showed up as a foreign process on the run's GPUs (a false alarm):
    the ranks' pids are shared through LEM_RUN_PIDS and count as the run's own."""
    from gpu_ops.energy.meter import _own_pids, foreign_pids

    monkeypatch.setenv("LEM_RUN_PIDS", "4242,4243")
    own = _own_pids()
    assert {4242, 4243} <= own
    assert foreign_pids({4242, 4243, 999999}, own) == [999999]
