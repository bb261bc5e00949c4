"""Multi-GPU plumbing on CPU: torchrun with the gloo backend for tensor parallel (transformers' TP plan) and
data-parallel replicas, gathered on rank 0; the parallelism mapping of every backend; MIG fakes in list-hardware."""

import time

import pytest

from gpu_ops.backends.ranked import _share, world_size
from gpu_ops.config import parse_config
from gpu_ops.errors import ConfigError
from gpu_ops.runner import run_experiment
from tests.fake_nvml import FakeGpu, FakeMig, FakeNVML

BASE = {
    "name": "dist",
    "model": "builtin:micro-llama",
    "device": "cpu",
    "max_input_tokens": 32,
    "max_output_tokens": 8,
    "min_output_tokens": 8,
    "prompts": {"count": 8},
    "batching": {"batch_size": 2},
    "cycles": 2,
    "warmup_requests": 2,
    "cooldown_s": 0,
    "energy": {"idle_baseline_s": 0},
}


@pytest.fixture(scope="module")
def two_gpu_run(tmp_path_factory, tiny_model_path):
    """One torchrun launch (gloo), two sweep points: tensor parallel over the 2 ranks, then 2 data-parallel replicas."""
    root = tmp_path_factory.mktemp("dist")
    cfg = parse_config(
        dict(BASE, gpus=[0, 1], parallelism={"tensor": 2}, sweep={"parallelism": [{"tensor": 2}, {"data": 2}]})
    )
    return root, run_experiment(cfg, root, file_sha="0123456789abcdef")


def test_data_parallel_replicas_gathered_on_rank0(two_gpu_run):
    root, out = two_gpu_run
    r, sp = out.tables.requests, out.tables.sweep_points.set_index("sweep_point").loc["parallelism=dp2"]
    r = r[r.sweep_point == "parallelism=dp2"]
    assert sorted(r[r.cycle == 0].request_id) == list(range(8))  # every request, from both replicas
    assert r.output_tokens.eq(8).all() and r.ttft_s.gt(0).all() and r.itl_s.map(len).eq(7).all()
    assert sp.backend_world_size == 2 and sp.backend_data_parallel == 2 and sp.backend_dist_backend == "gloo"
    assert sp.backend_parameters_on_this_device == sp.backend_parameters  # a full replica per rank
    assert out.folder.parent == root and (out.folder / "summary.json").is_file()
    assert out.tables.summary["file_sha"] == "0123456789abcdef"  # reached rank 0 through the launcher


def test_tensor_parallel_shards_the_model(two_gpu_run):
    _, out = two_gpu_run
    sp, r = out.tables.sweep_points.set_index("sweep_point").loc["parallelism=tp2"], out.tables.requests
    assert sp.backend_tensor_parallel == 2
    assert sp.backend_parameters_on_this_device < sp.backend_parameters  # rank 0 holds a shard only
    assert len(r[r.sweep_point == "parallelism=tp2"]) == 16 and r.output_tokens.eq(8).all()


def test_each_sweep_point_records_its_parallelism(two_gpu_run):
    _, out = two_gpu_run
    c = out.tables.cycles
    assert c.groupby("sweep_point").parallelism.unique().map(list).to_dict() == {
        "parallelism=tp2": ["tp2"],
        "parallelism=dp2": ["dp2"],
    }
    assert {p["sweep_point"]: p["parallelism"] for p in out.tables.summary["sweep_points"]} == {
        "parallelism=tp2": "tp2",
        "parallelism=dp2": "dp2",
    }
    from gpu_ops.validation import blocking_failures, validate

    assert not blocking_failures(validate(out.tables)), blocking_failures(validate(out.tables))  # the platform takes it


def test_parallelism_label():
    from gpu_ops.config import Parallelism

    assert [
        Parallelism(**p).label
        for p in ({}, {"tensor": 2}, {"data": 4}, {"tensor": 2, "pipeline": 2}, {"tensor": 2, "data": 2})
    ] == ["single", "tp2", "dp4", "tp2-pp2", "tp2-dp2"]


def test_result_folders_before_the_parallelism_column_take_it_from_their_config():
    """The first GPU run (docs/benchmarks/raw/multigpu/earlier-run) predates the column; reading it must not guess."""
    from pathlib import Path

    from gpu_ops.leaderboard import PROVENANCE, build_leaderboard
    from gpu_ops.results import read_tables
    from gpu_ops.stats import sweep_point_statistics

    raw = Path(__file__).resolve().parents[3] / "docs" / "benchmarks" / "raw" / "multigpu" / "earlier-run"
    tp2, tp1 = read_tables(next(raw.glob("llama8b-tp2__*"))), read_tables(next(raw.glob("llama8b-tp1__*")))
    assert tp2.cycles.parallelism.eq("tp2").all() and tp1.cycles.parallelism.eq("single").all()
    unknown_origin = dict.fromkeys(PROVENANCE)
    board = build_leaderboard(sweep_point_statistics(tp2.cycles).assign(**unknown_origin))
    assert board.parallelism.tolist() == ["tp2"] and board.gpu_count.tolist() == [2]
    legacy = sweep_point_statistics(tp2.cycles).drop(columns="parallelism").assign(**unknown_origin)  # stored before it
    assert build_leaderboard(legacy).parallelism.tolist() == ["unknown"]  # 2 GPUs, split not recorded: not guessed
    assert build_leaderboard(legacy.assign(gpu_count=1)).parallelism.tolist() == ["single"]


def test_share_and_world_size():
    reqs = list(range(10))
    dp = parse_config(dict(BASE, gpus=[0, 1, 2], parallelism={"data": 3}))
    assert [_share(reqs, dp, k) for k in range(3)] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    tp = parse_config(dict(BASE, gpus=[0, 1], parallelism={"tensor": 2}))
    assert _share(reqs, tp, 1) == reqs and world_size(tp) == 2 and world_size(dp) == 3


def test_gpu_count_must_match_parallelism():
    with pytest.raises(
        ConfigError, match=r"parallelism uses 2 GPU\(s\) .* but gpus lists 1; list 2 GPU indices, e.g. gpus: \[0, 1\]"
    ):
        parse_config(dict(BASE, parallelism={"tensor": 2}))


def test_backends_map_parallelism_to_their_native_form(tiny_model_path, monkeypatch):
    from gpu_ops.backends import vllm as v
    from gpu_ops.models import resolve_model

    cfg = parse_config(
        dict(BASE, backend="vllm", gpus=[0, 1, 2, 3], parallelism={"tensor": 2, "data": 2}, device="auto")
    )
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
    from gpu_ops.backends.ranked import RankedBackend

    calls = []

    class Dist:
        def broadcast_object_list(self, obj, src):
            calls.append(obj[0][0])

        def barrier(self):
            calls.append("barrier")

    b = RankedBackend.__new__(RankedBackend)
    b.dist, b.followers_listening = Dist(), True
    b.local = type(
        "Local",
        (),
        {"sync": lambda self: calls.append("local-sync"), "close": lambda self: calls.append("local-close")},
    )()
    b.sync()
    b.close()
    b.sync()
    b.close()
    assert calls == ["sync", "local-sync", "barrier", "close", "local-close", "local-sync", "local-close"]


def test_other_ranks_are_not_foreign_processes(monkeypatch):
    """On two H200s the rank-1 process showed up as a foreign process on the run's GPUs (a false alarm): every
    process under the launcher (LEM_RUN_ROOT_PID: torchrun and its ranks) and the pids in LEM_RUN_PIDS are the
    run's own; a process outside that tree is not."""
    import subprocess
    import sys

    from gpu_ops.energy.sampler import foreign_pids, own_pids, run_root_pid

    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)",
        ]
    )
    try:
        time.sleep(1.0)
        import psutil

        rank = psutil.Process(launcher.pid).children()[0].pid  # a grandchild of ours, as a torchrun rank is
        monkeypatch.setenv("LEM_RUN_ROOT_PID", str(launcher.pid))
        monkeypatch.setenv("LEM_RUN_PIDS", "4242")
        assert run_root_pid() == launcher.pid
        own = own_pids(run_root_pid())
        assert {launcher.pid, rank, 4242} <= own
        assert foreign_pids({"gpu0": {rank, 1}, "gpu1": {4242}}, own) == [1]
    finally:
        for p in psutil.Process(launcher.pid).children(recursive=True):
            p.kill()
        launcher.kill()
