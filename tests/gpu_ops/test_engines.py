"""Warm engines (gpu_ops.engines, gpu_ops.serve) on the CPU: identity, reuse and eviction of engine processes, their
provenance in the cycles, cache states, and the engine server's round trip and refusals."""

import json
import os
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from gpu_ops.caches import CACHE_ENV, cache_counts, cache_environment
from gpu_ops.config import parse_config
from gpu_ops.energy import sampler as smp
from gpu_ops.engines import EnginePool, cache_states, engine_identity
from gpu_ops.errors import UserError
from gpu_ops.runner import run_experiment
from tests.fake_nvml import FakeGpu, FakeNVML
from tests.gpu_ops.test_runner import BASE as RUNNER_BASE

BASE = {**RUNNER_BASE, "name": "warm", "cycles": 2, "energy": {"idle_baseline_s": 0}}


def cfg(**over):
    return parse_config({**BASE, **over})


def test_identity_follows_the_engine_not_the_run_settings():
    base = engine_identity(cfg())
    # run settings a loaded PyTorch model honours as they are: same engine
    for same in (
        cfg(batching={"strategy": "static", "batch_size": 8}),
        cfg(cycles=5, prompts={"count": 16}),
        cfg(pytorch={"token_timestamps": False}),
    ):
        assert engine_identity(same) == base
    # what builds another engine: model, precision, seed, the backend's own options
    for other in (cfg(precision="bf16"), cfg(seed=1), cfg(pytorch={"torch_compile": True})):
        assert engine_identity(other).key != base.key
    # vLLM: max_num_seqs follows the batch size unless set, max_model_len the token lengths unless set
    vl = {"backend": "vllm", "precision": "bf16"}
    assert engine_identity(cfg(**vl)) != engine_identity(cfg(**vl, batching={"batch_size": 8}))
    pinned = {**vl, "vllm": {"max_num_seqs": 16, "max_model_len": 64}}
    assert engine_identity(cfg(**pinned)) == engine_identity(
        cfg(**pinned, batching={"batch_size": 8}, max_output_tokens=16, min_output_tokens=16)
    )
    assert engine_identity(cfg(**vl)) == engine_identity(cfg(**vl, vllm={"cold_prefix_cache": False}))
    assert engine_identity(cfg(**vl)).load_format == "pretrained"


def test_pool_reuses_one_engine_process_and_evicts_it_when_the_identity_changes(tiny_model_path, tmp_path):
    with EnginePool(tmp_path / "cache") as pool:
        first = pool.acquire(cfg(), placement="process")
        pid = first.pid
        assert pid != os.getpid() and psutil.Process(pid).ppid() == os.getpid() and not first.reused
        assert first.start_s > 0 and first.backend.vocab_size > 0 and first.backend.tokenizer is not None
        again = pool.acquire(cfg(batching={"strategy": "static", "batch_size": 8}), placement="process")
        assert again is first and again.reused and again.pid == pid and first.backend.alive()
        other = pool.acquire(cfg(seed=7), placement="process")  # another identity on the same devices
        assert other is not first and other.pid != pid and not other.reused
        assert first.backend.proc.returncode is not None and not psutil.pid_exists(pid)  # the old child exited
        assert list(pool.engines.values()) == [other]
    assert other.backend.proc.returncode is not None  # closing the pool ends its engines


def test_a_spare_process_takes_the_next_engine_and_a_run_waits_for_its_imports(tiny_model_path, tmp_path, monkeypatch):
    """A warm worker's engine change skips the imports: refill() starts a spare engine process per backend that ran
    here in a process, and the next engine of that backend starts in it. A spare still importing is waited for once
    the run's first engine is loaded and before its first window (recorded as engine start), so no import runs beside
    a measured window."""
    monkeypatch.setenv("LEM_ENGINE_PLACEMENT", "process")
    nvml = FakeNVML([FakeGpu(power=lambda t: 250.0)])
    with EnginePool(tmp_path / "cache") as pool:
        pool.refill()
        assert pool.spares == {}  # nothing has run in a process yet
        first = pool.acquire(cfg(), placement="process")
        assert not first.prestarted and first.describe()["engine_prestarted"] is False
        pool.refill()
        (spare,) = pool.spares.values()
        assert spare.pid != first.pid and psutil.Process(spare.pid).ppid() == os.getpid()
        one = run_experiment(cfg(seed=7), tmp_path / "a", nvml=nvml, pool=pool)
        (engine,) = pool.engines.values()  # the new identity started in the spare, not in a new process
        assert engine.prestarted and engine.pid == spare.pid and pool.spares == {} and not psutil.pid_exists(first.pid)
        fp = json.loads(one.tables.experiment.iloc[0].fingerprint_json)
        assert [e["engine_prestarted"] for e in fp["engines"]] == [True]
        # a spare this run cannot use (another CUDA_VISIBLE_DEVICES), held at its imports (a sitecustomize that waits
        # for a file) until the run has loaded its engine and asks to wait: it then waits, before the idle baseline
        # opens the first window
        slow, go = tmp_path / "slow-import", tmp_path / "go"
        slow.mkdir()
        (slow / "sitecustomize.py").write_text(
            f"import os, time\nt = time.time()\nwhile not os.path.exists({str(go)!r}) and time.time() < t + 120:\n"
            "    time.sleep(0.05)\n"
        )
        with monkeypatch.context() as m:
            m.setenv("CUDA_VISIBLE_DEVICES", "7")
            m.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(slow), os.environ.get("PYTHONPATH")])))
            pool.refill()
        (other,) = pool.spares.values()
        asked, quiesce = [], pool.quiesce

        def release_then_wait():  # the run asks once its engine is loaded: the spare is still importing then
            asked.append(other.importing())
            go.touch()
            return quiesce()

        monkeypatch.setattr(pool, "quiesce", release_then_wait)
        two = run_experiment(cfg(seed=8), tmp_path / "b", nvml=nvml, pool=pool)
        assert asked == [True]
        assert not other.importing() and other.import_s > 0 and list(pool.spares.values()) == [other]
        spans = two.tables.summary["wall_time"]["spans"]
        (wait,) = [s for s in spans if s["label"] == "spare"]
        windows = [s for s in spans if s["kind"] in ("idle_baseline", "warmup", "cycle")]
        started = [s for s in spans if s["kind"] == "engine_start" and s["label"] != "spare"]
        assert wait["kind"] == "engine_start" and windows and started
        assert min(s["start"] for s in started) <= wait["start"] and wait["end"] <= min(s["start"] for s in windows)
    assert other.proc.returncode is not None and not psutil.pid_exists(other.pid)  # closing the pool ends its spares


def test_a_run_whose_next_sweep_point_changes_engine_starts_it_in_a_spare_that_imported_beside_the_first_load(
    tiny_model_path, tmp_path, monkeypatch
):
    """Within one run, the next engine's process is started while the first engine loads, so the engine change skips
    its imports; the run waits for that spare after each engine it starts and before that engine's first window."""
    monkeypatch.setenv("LEM_ENGINE_PLACEMENT", "process")
    sweep = cfg(sweep={"seed": [0, 7]}, cycles=1)
    with EnginePool(tmp_path / "cache") as pool:
        waits, quiesce = [], pool.quiesce

        def recorded():  # when the run waited, and whether a spare was importing then
            waits.append((time.time(), any(s.importing() for s in pool.spares.values())))
            return quiesce()

        monkeypatch.setattr(pool, "quiesce", recorded)
        out = run_experiment(sweep, tmp_path / "a", nvml=FakeNVML([FakeGpu(power=lambda t: 250.0)]), pool=pool)
        assert pool.spares == {}  # the one spare was taken by the second engine; none is left to close
    fp = json.loads(out.tables.experiment.iloc[0].fingerprint_json)
    assert [e["engine_prestarted"] for e in fp["engines"]] == [False, True]
    c = out.tables.cycles
    assert c.groupby("sweep_point").engine_id.first().nunique() == 2 and not c.engine_reused.any()
    spans = out.tables.summary["wall_time"]["spans"]
    starts = [s for s in spans if s["kind"] == "engine_start" and s["label"] in c.sweep_point.values]
    assert len(starts) == 2 and len(waits) == 2  # a wait after each engine start
    for start, (waited_at, _) in zip(sorted(starts, key=lambda s: s["start"]), waits):
        later = [s["start"] for s in spans if s["kind"] in ("idle_baseline", "warmup", "cycle")]
        first_window = min(t for t in later if t >= start["end"])
        assert start["end"] <= waited_at <= first_window


def test_an_engine_that_hangs_at_start_is_ended_with_its_core_and_named(tiny_model_path, tmp_path, monkeypatch):
    """A vLLM core hung at start on the H100 (§19, §20) and held its run until an outer timeout: the engine process now
    gets LEM_ENGINE_START_TIMEOUT_S to load its engine; then it and the processes under it are ended, with a message
    naming the variable."""
    from gpu_ops.engines import START_TIMEOUT_ENV, EngineHost, start_timeout_s
    from gpu_ops.errors import MeasurementError

    hang, core_pid = tmp_path / "hang", tmp_path / "core.pid"
    hang.mkdir()  # a PyTorch engine whose load starts a "core" process and never returns, as a hung vLLM start does
    (hang / "sitecustomize.py").write_text(
        "import pathlib, subprocess, sys, time\nimport gpu_ops.backends.pytorch as p\n"
        "def load(self, config):\n"
        "    core = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"    pathlib.Path({str(core_pid)!r}).write_text(str(core.pid))\n"
        "    time.sleep(600)\n"
        "p.PytorchBackend.load = load\n"
    )
    host = EngineHost("pytorch", env={"PYTHONPATH": str(hang)})
    monkeypatch.setenv(START_TIMEOUT_ENV, "3")
    started = time.perf_counter()
    with pytest.raises(MeasurementError, match=r"did not finish its engine's load within 3 s .* LEM_ENGINE_START_TIME"):
        host.load(cfg())
    assert time.perf_counter() - started < 30 and host.proc.returncode is not None and not psutil.pid_exists(host.pid)
    core = int(core_pid.read_text())

    def ended() -> bool:  # gone, or a zombie where PID 1 does not reap orphans
        try:
            return psutil.Process(core).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 5  # a SIGKILL lands a moment after it is sent
    while not ended() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended()
    monkeypatch.setenv(START_TIMEOUT_ENV, "0")
    assert start_timeout_s() is None  # no limit
    monkeypatch.setenv(START_TIMEOUT_ENV, "soon")
    other = EngineHost("pytorch")
    try:
        with pytest.raises(UserError, match="LEM_ENGINE_START_TIMEOUT_S='soon' is not a number of seconds from 0"):
            other.load(cfg())
    finally:
        other.close()


def test_a_run_reuses_the_engine_across_sweep_points_and_runs(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("LEM_ENGINE_PLACEMENT", "process")
    gpu = FakeGpu(power=lambda t: 250.0)
    sweep = cfg(sweep={"batching.batch_size": [2, 4]}, energy={"idle_baseline_s": 0.5})
    with EnginePool(tmp_path / "cache") as pool:
        engine = pool.acquire(sweep.expand()[0].config, placement="process")
        gpu.pids = [engine.pid]  # the engine's process on the GPU: the run's own, never foreign
        one = run_experiment(sweep, tmp_path / "a", nvml=FakeNVML([gpu]), pool=pool)
        two = run_experiment(sweep, tmp_path / "b", nvml=FakeNVML([gpu]), pool=pool)
        assert engine.backend.alive() and list(pool.engines.values()) == [engine]
        assert engine.pid in smp.own_pids(os.getpid())
        stranger = os.getppid()  # not ours: the check still names it
        assert smp.foreign_pids({"gpu0": {engine.pid, stranger}}, smp.own_pids(os.getpid())) == [stranger]
    for out in (one, two):
        c = out.tables.cycles
        assert (c.engine_id == engine.id).all() and (c.engine_start_s == engine.start_s).all()
        assert (c.foreign_processes.fillna("") == "").all() and (c.energy_status == "measured").all()
        assert out.tables.experiment.idle_drift.notna().all()
        fp = json.loads(out.tables.experiment.iloc[0].fingerprint_json)
        assert [e["engine_id"] for e in fp["engines"]] == [engine.id] and set(fp["caches"]) >= set(CACHE_ENV)
    assert one.tables.cycles.engine_reused.all()  # acquired before the run: warm for both points
    assert two.tables.cycles.engine_reused.all()


def test_a_run_starts_with_the_sweep_point_whose_engine_the_pool_holds(tiny_model_path, tmp_path):
    """Points run grouped by engine identity; the held (warm) engine's points first, before another evicts it."""
    sweep = cfg(sweep={"seed": [0, 7]}, cycles=1)
    # the point that sorts last by identity: without the preference it would run last, on an engine started again
    last = max((p.config for p in sweep.expand()), key=lambda c: engine_identity(c).key)
    with EnginePool(tmp_path / "cache") as pool:
        held = pool.acquire(last)
        out = run_experiment(sweep, tmp_path / "a", pool=pool)
        (now,) = pool.engines.values()
    c = out.tables.cycles
    warm, other = c[c.sweep_point == f"seed={last.seed}"], c[c.sweep_point != f"seed={last.seed}"]
    assert (warm.engine_id == held.id).all() and warm.engine_reused.all()
    assert not other.engine_reused.any() and (other.engine_id == now.id).all() and now is not held


def test_a_cli_run_starts_its_engine_once_and_ends_it(tiny_model_path, tmp_path):
    out = run_experiment(cfg(sweep={"batching.batch_size": [2, 4]}), tmp_path)  # inline: a CPU run
    c = out.tables.cycles.sort_values(["sweep_point", "cycle"])
    assert c.engine_id.nunique() == 1
    first = c[c.sweep_point == "batch_size=2"]
    assert not first.engine_reused.any() and c[c.sweep_point == "batch_size=4"].engine_reused.all()
    assert out.tables.sweep_points.model_reused.tolist() == [False, True]
    # the run's own list of engines says this run started it (not what its last sweep point found)
    fp = json.loads(out.tables.experiment.iloc[0].fingerprint_json)
    assert [e["engine_reused"] for e in fp["engines"]] == [False]


def tiny_architecture(tmp_path: Path, monkeypatch) -> str:
    import gpu_ops.models as models

    arch = tmp_path / "arch"
    arch.mkdir()
    (arch / "tiny-test.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "vocab_size": 1024,
                "max_position_embeddings": 256,
            }
        )
    )
    monkeypatch.setattr(models, "ARCHITECTURES", arch)
    return "synthetic:tiny-test"


def test_synthetic_weights_are_written_once_and_a_second_start_hits_them(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("LEM_ENGINE_CACHE_DIR", str(tmp_path / "elsewhere"))  # the pool's own root wins
    c = cfg(model=tiny_architecture(tmp_path, monkeypatch), prompts={"source": "random", "count": 4})
    with EnginePool(tmp_path / "cache") as pool:
        cold = pool.acquire(c)
        cold.warmed_up(c)
        weights = {k: v.clone() for k, v in cold.backend.model.state_dict().items()}
        pool.evict(cold)
        warm = pool.acquire(c)
        warm.warmed_up(c)
        assert warm is not cold and not warm.reused
        assert cold.caches["synthetic_weights"] == "miss" and warm.caches["synthetic_weights"] == "hit"
        again = warm.backend.model.state_dict()
        assert all(torch.equal(weights[k], again[k]) for k in weights)  # the same tensors from the cache
    assert len(list((tmp_path / "cache" / "synthetic-weights").iterdir())) == 1  # no temporary folder left


def test_cache_states_from_the_files_a_start_added(tmp_path, monkeypatch):
    import gpu_ops.caches

    # as if no variable was set when gpu_ops loaded (a compile earlier in this process sets torch's own default)
    monkeypatch.setattr(gpu_ops.caches, "_USER_CACHE_ENV", dict.fromkeys(gpu_ops.caches.CACHE_ENV.values()))
    env = cache_environment(tmp_path)
    compiled = cfg(pytorch={"torch_compile": True})
    empty = cache_counts(env)
    inductor = Path(env["TORCHINDUCTOR_CACHE_DIR"])
    inductor.mkdir(parents=True)
    (inductor / "graph").write_text("x")
    after = cache_counts(env)
    assert cache_states(compiled, empty, after, {})["inductor"] == "miss"  # it wrote: a cold start
    assert cache_states(compiled, after, after, {})["inductor"] == "hit"  # it compiled and wrote nothing new
    assert cache_states(cfg(), after, after, {})["inductor"] == "unused"  # eager: never read
    assert cache_states(compiled, after, after, {})["vllm_compile"] == "unused"  # a PyTorch engine
    assert cache_states(cfg(), empty, empty, {"synthetic_weights": "hit"})["synthetic_weights"] == "hit"


def test_a_bad_placement_is_named(monkeypatch):
    monkeypatch.setenv("LEM_ENGINE_PLACEMENT", "gpu")
    with pytest.raises(UserError, match="LEM_ENGINE_PLACEMENT='gpu': use 'process' or 'inline'"):
        EnginePool().placement(cfg(), True)


@pytest.fixture
def server(tmp_path):
    from gpu_ops.serve import EngineServer

    srv = EngineServer(Path(f"/tmp/lem-test-{os.getpid()}-{tmp_path.name[-12:]}.sock"), tmp_path / "cache")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.close()


def _send(path: Path, raw: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(raw)
        return json.loads(s.makefile("rb").readline())


def test_server_round_trip_keeps_the_engine_warm_across_runs(server, tiny_model_path, tmp_path):
    from gpu_ops.serve import ping, run_on_server, status

    assert ping(server.path) and server.path.stat().st_mode & 0o077 == 0  # this user's alone
    lines: list[str] = []
    one = run_on_server(server.path, cfg(), tmp_path / "out", progress=lines.append, folder_name="one")
    two = run_on_server(server.path, cfg(), tmp_path / "out", folder_name="two")
    assert one.folder == tmp_path / "out" / "one" and any("cycle 1" in line for line in lines)
    assert not one.tables.cycles.engine_reused.any() and two.tables.cycles.engine_reused.all()
    assert set(one.tables.cycles.engine_id) == set(two.tables.cycles.engine_id)
    engines = status(server.path)["engines"]
    assert [e["engine_id"] for e in engines] == list(set(two.tables.cycles.engine_id))


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "a JSON object"),
        (b'{"op": "exec"}\n', "op 'exec' is unknown"),
        (b'{"op": "run", "shell": "x"}\n', "unknown field(s) 'shell'"),
        (b'{"op": "run", "config": {"name": "x"}, "out_root": "relative"}\n', "'out_root' must be the absolute"),
        (b'{"op": "run", "config": {"name": "x"}, "out_root": "/tmp"}\n', "model: required field is missing"),
        (b'{"op": "run", "config": {}, "out_root": "/tmp", "folder_name": "../up"}\n', "not a valid partition slug"),
        (b'{"op": "run", "config": {}, "out_root": "/tmp", "visible_devices": "0;rm"}\n', "visible_devices"),
        (b"{" + b" " * (1 << 20) + b"}\n", "at most 1048576 bytes"),
    ],
)
def test_server_refuses_bad_requests_and_goes_on(server, raw, message):
    from gpu_ops.serve import ping

    reply = _send(server.path, raw)
    assert reply["ok"] is False and message in reply["message"]
    assert ping(server.path)  # still serving


def test_a_client_that_says_nothing_is_dropped_and_the_server_goes_on(server, monkeypatch):
    import gpu_ops.serve as serve

    monkeypatch.setattr(serve, "REQUEST_TIMEOUT_S", 0.5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(server.path))
        reply = json.loads(s.makefile("rb").readline())  # no request sent
    assert reply["ok"] is False and "no request line within" in reply["message"]
    assert serve.ping(server.path)


def test_run_without_a_server_names_how_to_start_one(tmp_path):
    from gpu_ops.serve import run_on_server

    with pytest.raises(UserError, match="no engine server answers on .*llm-energy-measure serve --socket"):
        run_on_server(tmp_path / "none.sock", cfg(), tmp_path / "out")


VLLM = {
    **BASE,
    "backend": "vllm",
    "precision": "bf16",
    "max_input_tokens": 300,
    "batching": {"batch_size": 4},
    "prompts": {"source": "random", "count": 6, "random": {"input_len": 280}},  # > two 128-token CPU KV blocks
    "warmup_requests": 1,
    "vllm": {"enforce_eager": True, "enable_prefix_caching": True, "gpu_memory_utilization": 0.05},  # as test_vllm
}


@pytest.mark.xdist_group("vllm-engines")  # one vLLM CPU engine at a time (see backends/test_vllm.py)
def test_a_reused_vllm_engine_starts_every_cycle_with_an_empty_prefix_cache(tiny_model_path, tmp_path, monkeypatch):
    if os.environ.get("LEM_REQUIRE_SERVICES") != "1":
        pytest.importorskip("vllm")
    monkeypatch.setenv("LEM_ENGINE_PLACEMENT", "process")
    monkeypatch.setenv("LEM_VLLM_CORE_START", "spawn")  # the opt-out from the engine host's forkserver core
    nvml = FakeNVML([FakeGpu(power=lambda t: 200.0)])
    cold = parse_config(VLLM)
    # on the suite's engine caches: on an empty one vLLM first inspects the model's class in a process of its own,
    # which imports vLLM once more
    with EnginePool() as pool:
        one = run_experiment(cold, tmp_path / "a", nvml=nvml, pool=pool)
        (engine,) = pool.engines.values()
        core = {p.pid for p in psutil.Process(engine.pid).children(recursive=True)}
        assert core and core <= smp.own_pids(os.getpid())  # vLLM's engine core under our engine process: ours
        assert engine.backend.info["engine_core_start"] == "spawn"  # as asked
        assert engine.backend.info["engine_init_s"] > 0  # the spawned core's own log line, through our log config
        two = run_experiment(cold, tmp_path / "b", nvml=nvml, pool=pool)  # the same prompts again, same engine
        # the control: keeping the cache (a run setting, same engine) hits what the last run computed
        warm = run_experiment(
            parse_config({**VLLM, "vllm": {**VLLM["vllm"], "cold_prefix_cache": False}}), tmp_path / "c", pool=pool
        )
        assert list(pool.engines.values()) == [engine]
    assert not psutil.pid_exists(engine.pid) and not any(psutil.pid_exists(p) for p in core)
    assert not one.tables.cycles.engine_reused.any() and two.tables.cycles.engine_reused.all()
    assert set(two.tables.cycles.engine_id) == {engine.id} == set(warm.tables.cycles.engine_id)
    for out in (one, two):
        assert out.tables.cycles.prefix_cache_hit_rate.eq(0).all()  # emptied before every cycle, reused or not
    assert warm.tables.cycles.prefix_cache_hit_rate.iloc[0] > 0.6


def test_a_process_the_engine_host_spawns_re_imports_no_main_module(tmp_path):
    """vLLM spawns its engine core from the engine process: with `python -m gpu_ops.engines` the core imported that
    module and its imports again as `__mp_main__` (~0.5 s of each engine start here); started from `-c`, it does not."""
    from gpu_ops.engines import EngineHost

    spy, seen = tmp_path / "spy", tmp_path / "seen.json"
    spy.mkdir()  # a PyTorch engine whose load spawns a child, as vLLM's engine start spawns its core
    (spy / "sitecustomize.py").write_text(
        "import json, multiprocessing, sys\n"
        "def record():\n"
        "    main = sys.modules['__main__']  # gpu_ops.engines re-run as __mp_main__, or the bare `-c` main\n"
        f"    open({str(seen)!r}, 'w').write(json.dumps([n for n in ('EngineHost', 'main') if hasattr(main, n)]))\n"
        "def load(self, config):\n"
        "    child = multiprocessing.get_context('spawn').Process(target=record)\n"
        "    child.start(); child.join()\n"
        "    raise RuntimeError('spied')\n"
        "import gpu_ops.backends.pytorch as p\n"
        "p.PytorchBackend.load = load\n"
    )
    host = EngineHost("pytorch", env={"PYTHONPATH": str(spy)})
    try:
        with pytest.raises(RuntimeError, match="spied"):
            host.load(cfg())
    finally:
        host.close()
    assert json.loads(seen.read_text()) == []  # the child's main module is not gpu_ops.engines run again


def _fork_spy(tmp_path: Path) -> tuple[Path, Path]:
    """A sitecustomize that records every fork of a Python process it is loaded in: the child's pid, its parent, and
    whether vLLM's engine core module was in the child's sys.modules at the fork (then the child never imports it)."""
    spy, forks = tmp_path / "fork-spy", tmp_path / "forks.jsonl"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(
        "import json, os, sys\n"
        "def forked():\n"
        f"    with open({str(forks)!r}, 'a') as f:\n"
        "        f.write(json.dumps([os.getpid(), os.getppid(), 'vllm.v1.engine.core' in sys.modules]) + '\\n')\n"
        "os.register_at_fork(after_in_child=forked)\n"
    )
    return spy, forks


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie where PID 1 does not reap orphans."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.xdist_group("vllm-engines")
def test_a_vllm_core_forked_by_the_forkserver_imported_nothing_and_ends_with_its_host(
    tiny_model_path, tmp_path, monkeypatch
):
    """By default (LEM_VLLM_CORE_START unset) the engine process starts a forkserver that imports vLLM's core modules
    beside its own imports, and vLLM's core is forked from it, with those modules loaded (a spawned core imports vLLM
    again, 15-25 s of an H100 start; docs/benchmarks §23). Its provenance says so, its engine-start timings still
    arrive through our log config, and closing the pool ends the forkserver and the core (the engine process's whole
    tree, as a hung start is ended: test_an_engine_that_hangs_at_start_is_ended_with_its_core_and_named)."""
    if os.environ.get("LEM_REQUIRE_SERVICES") != "1":
        pytest.importorskip("vllm")
    spy, forks = _fork_spy(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(spy), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("LEM_ENGINE_PLACEMENT", "process")
    monkeypatch.delenv("LEM_VLLM_CORE_START", raising=False)
    with EnginePool() as pool:  # the suite's engine caches, as above
        out = run_experiment(parse_config(VLLM), tmp_path / "a", nvml=FakeNVML([FakeGpu()]), pool=pool)
        (engine,) = pool.engines.values()
        tree = psutil.Process(engine.pid).children(recursive=True)
        (server,) = [p for p in tree if p.ppid() == engine.pid and "forkserver" in " ".join(p.cmdline())]
        cores = [p for p in tree if p.ppid() == server.pid]
        assert engine.backend.info["engine_core_start"] == "forkserver"
        assert engine.backend.info["engine_init_s"] > 0  # the forked core's own log line, through our log config
    assert out.tables.cycles.output_tokens.gt(0).all()
    forked = {pid: (parent, imported) for pid, parent, imported in map(json.loads, forks.read_text().splitlines())}
    assert cores and all(forked[c.pid] == (server.pid, True) for c in cores)  # forked with vLLM's core loaded
    assert all(_gone(p.pid) for p in [engine, *tree])  # the engine process, the forkserver, the core


def test_a_bad_core_start_is_named_before_vllm_is_imported():
    from gpu_ops.engines import EngineHost

    host = EngineHost("vllm", env={"LEM_VLLM_CORE_START": "fork"}, wait=False)
    try:
        with pytest.raises(UserError, match="LEM_VLLM_CORE_START='fork' .* use one of spawn, forkserver"):
            host.ready()
    finally:
        host.close()


def test_an_engine_process_sees_the_gpus_in_nvml_order_whoever_started_it(monkeypatch):
    """A spare may start before any run set the measuring environment: an integer CUDA_VISIBLE_DEVICES must still
    name the GPU NVML meters, or the engine could run on another GPU than the one whose energy is read."""
    from gpu_ops.engines import EngineHost

    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    host = EngineHost("pytorch")  # imported: its environ is read after the exec (mid-exec it reads empty)
    try:
        environ = Path(f"/proc/{host.pid}/environ").read_bytes().split(b"\0")
    finally:
        host.close()
    assert b"CUDA_DEVICE_ORDER=PCI_BUS_ID" in environ
