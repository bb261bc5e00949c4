"""Warm engines: one loaded engine per GPU set, reused while its identity is unchanged, evicted when it changes.

A cold engine start (weights, vLLM's engine init, torch.compile, CUDA graphs) costs tens of seconds of GPU time that
no measured window holds; a warm engine costs none. `EnginePool` keeps one engine per GPU set: a CLI run with several
sweep points reuses it from point to point, and the engine server (gpu_ops.serve) keeps its pool across runs.

Why a child process per engine (`EngineHost`): a CUDA context stays open for as long as the process that made it
lives (PyTorch never releases it), and an open context holds an H100 at ~125 W instead of ~75 W idle. With every
engine's GPU work in a child, evicting an engine ends the child and returns the GPU to its idle state in seconds,
and the measuring process (meter, NVML sampler, result tables) never holds a context. The child is a descendant of
the measuring process, so the foreign-process check counts it (and vLLM's engine core under it) as the run's own.

The child runs `main` from `python -c` (HOST_COMMAND), not `python -m gpu_ops.engines`: a process it spawns (vLLM's
engine core) then re-imports no main module, where `-m` would make each core import this module and its imports
again as `__mp_main__`, on every engine start (multiprocessing's spawn).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from gpu_ops.caches import CACHE_DIR_ENV, CACHE_ENV, cache_counts, cache_environment, engine_cache_dir
from gpu_ops.config import ExperimentConfig, VllmOptions
from gpu_ops.errors import MeasurementError, UserError

log = logging.getLogger("gpu_ops")

PLACEMENT_ENV = "LEM_ENGINE_PLACEMENT"
"""`process` (an engine per child process) or `inline` (in the measuring process); unset: a child process whenever
the run uses a CUDA GPU, inline on the CPU (no context to release, and no process start to pay)."""
START_TIMEOUT_ENV = "LEM_ENGINE_START_TIMEOUT_S"
START_TIMEOUT_S = 3600.0
"""Longest an engine process may take to load its engine, and again to warm it up (LEM_ENGINE_START_TIMEOUT_S
overrides; 0: no limit). A hub model's first download is part of its load. An engine core that hangs at start
(docs/benchmarks §19, §20) then fails the run instead of holding the worker's queue forever."""
MAX_TIMEOUT_S = 1e6  # what the poll under the wait accepts
RUN_TIME_OPTIONS = {"pytorch": {"token_timestamps"}, "vllm": {"cold_prefix_cache"}}
"""Backend options a loaded engine honours as they are (per generate call or per cycle): not part of its identity."""


def start_timeout_s() -> float | None:
    """START_TIMEOUT_S, or LEM_ENGINE_START_TIMEOUT_S when set: seconds, or None for no limit (0)."""
    raw = os.environ.get(START_TIMEOUT_ENV)
    if raw is None:
        return START_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= MAX_TIMEOUT_S:
        raise UserError(
            f"{START_TIMEOUT_ENV}={raw!r} is not a number of seconds from 0 (no limit) to {MAX_TIMEOUT_S:g}; "
            "set it to e.g. 7200"
        )
    return value or None


# -- identity ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineIdentity:
    """What makes an engine: equal identities mean one loaded engine serves both configs. Run settings that do not
    rebuild the engine (PyTorch's batch size, sampling, traffic, cycles) are not part of it; compiled graphs per batch
    shape live inside the engine and stay warm with it.

    Attributes:
        backend: the config's backend.
        model: the model spec.
        weights: "real" or "synthetic".
        load_format: how weights are made: "pretrained" (a folder or hub id), "dummy" (vLLM draws them),
            "seeded-random" (synthetic weights for PyTorch, cached once per architecture, dtype and seed).
        precision: the config's precision.
        engine_args: the engine's own constructor arguments, as sorted JSON.
        visible_gpus: CUDA_VISIBLE_DEVICES as this process sees it, and the config's GPU indices.
    """

    backend: str
    model: str
    weights: str
    load_format: str
    precision: str
    engine_args: str
    visible_gpus: str

    @property
    def key(self) -> str:
        text = json.dumps([getattr(self, f) for f in self.__dataclass_fields__], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def engine_identity(cfg: ExperimentConfig) -> EngineIdentity:
    """The identity of the engine that `cfg` runs on."""
    from gpu_ops.models import weights_of

    options = cfg.backend if cfg.backend in ("pytorch", "vllm", "tensorrt") else None
    fields = {"device", "seed", "parallelism", "lora", *([options] if options else [])}
    exclude = {k: v for k, v in RUN_TIME_OPTIONS.items() if k == options}
    args: dict[str, Any] = cfg.model_dump(mode="json", include=fields, exclude=exclude)
    if cfg.backend == "vllm":  # engine_kwargs derives these from run settings: they rebuild the engine
        from gpu_ops.backends.vllm import VllmBackend

        v = cfg.vllm or VllmOptions()  # no block and the default block build one engine
        args.update(
            vllm=v.model_dump(mode="json", exclude=RUN_TIME_OPTIONS["vllm"]),
            mode=VllmBackend._mode(cfg),
            max_model_len=v.max_model_len or cfg.max_input_tokens + cfg.max_output_tokens,
            max_num_seqs=v.max_num_seqs or cfg.batching.batch_size,
        )
    elif cfg.backend == "tensorrt":  # an engine is built for its largest batch and lengths
        args.update(
            batch_size=cfg.batching.batch_size,
            max_input_tokens=cfg.max_input_tokens,
            max_output_tokens=cfg.max_output_tokens,
        )
    synthetic = cfg.model.startswith("synthetic:")
    return EngineIdentity(
        backend=cfg.backend,
        model=cfg.model,
        weights=weights_of(cfg.model),
        load_format=("dummy" if cfg.backend == "vllm" else "seeded-random") if synthetic else "pretrained",
        precision=cfg.precision,
        engine_args=json.dumps(args, sort_keys=True),
        visible_gpus=f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')}:{','.join(map(str, cfg.gpus))}",
    )


def gpu_set(cfg: ExperimentConfig) -> tuple[str, frozenset[int]]:
    """The devices an engine for `cfg` occupies: (CUDA_VISIBLE_DEVICES, GPU indices); CPU engines share one set."""
    if cfg.device == "cpu":
        return ("cpu", frozenset())
    return (os.environ.get("CUDA_VISIBLE_DEVICES", ""), frozenset(cfg.gpus))


def _overlap(a: tuple[str, frozenset[int]], b: tuple[str, frozenset[int]]) -> bool:
    """Whether two GPU sets may share a device (different CUDA_VISIBLE_DEVICES: assumed so)."""
    if a == b:
        return True
    if "cpu" in (a[0], b[0]):
        return False
    return a[0] != b[0] or bool(a[1] & b[1])


# -- caches -----------------------------------------------------------------------------------------------------
def compiles(cfg: ExperimentConfig) -> bool:
    """Whether the engine for `cfg` compiles (and so reads the compile caches)."""
    if cfg.backend == "vllm":
        return not (cfg.vllm or VllmOptions()).enforce_eager
    if cfg.backend == "pytorch":
        return cfg.pytorch.torch_compile
    return False


def cache_states(cfg: ExperimentConfig, before: dict[str, int], after: dict[str, int], info: dict) -> dict[str, str]:
    """hit / miss / unused per cache for an engine's start and first warm-up. A compile cache that gained files
    missed (at least partly); one the engine compiles against that gained none hit; otherwise it was unused. The
    synthetic weights' state is the backend's own (it wrote them, or read them)."""
    states = {"synthetic_weights": str(info.get("synthetic_weights") or "unused")}
    uses = {"vllm_compile": cfg.backend == "vllm", "inductor": True, "triton": True}
    for name in CACHE_ENV:
        if after.get(name, 0) > before.get(name, 0):
            states[name] = "miss"
        elif compiles(cfg) and uses[name] and after.get(name, 0) > 0:
            states[name] = "hit"
        else:
            states[name] = "unused"
    return states


# -- the engine in a child process --------------------------------------------------------------------------------
HOST_COMMAND = "import sys; from gpu_ops.engines import main; sys.exit(main())"


class EngineHost:
    """The measuring process's handle on a backend in a child process: load, warmup, before_cycle, run, after_cycle,
    sync, peak_memory_bytes and close are forwarded; the request records come back after the window closes (what
    `run` delivered stays in the child). The tokenizer is loaded here, from the same files the engine uses, for
    building prompts before any window."""

    def __init__(self, backend: str, env: dict[str, str] | None = None, *, wait: bool = True) -> None:
        """Start the child; with `wait`, return once it has imported its backend (else `ready()` waits for that)."""
        self.name = backend
        self.import_s: float | None = None
        self._started = time.perf_counter()
        self.info: dict[str, Any] = {}
        self.vocab_size: int | None = None
        self.token_display = None
        self._tokenizer = None
        self._tokenizer_path: str | None = None
        self._staged = None
        self._busy: str | None = None  # the op the child is working on (sent, not yet answered)
        ours, theirs = socket.socketpair()
        child_env = dict(os.environ, **(env or {}))
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), child_env.get("PYTHONPATH")])
        )
        # integer CUDA_VISIBLE_DEVICES must name the GPU NVML meters, whoever started this engine (a spare included)
        child_env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOST_COMMAND, "--host-fd", str(theirs.fileno()), "--backend", backend],
            pass_fds=(theirs.fileno(),),
            env=child_env,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        if wait:
            self.ready()

    def ready(self) -> float:
        """Wait until the child has imported its backend (or raise why it cannot); the seconds waited."""
        if self.import_s is not None:
            return 0.0
        t0 = time.perf_counter()
        try:
            self._reply()
        except BaseException:
            self.close(timeout_s=10)
            raise
        self.import_s = time.perf_counter() - self._started
        return time.perf_counter() - t0

    def importing(self) -> bool:
        """Whether the child is still importing its backend (its first message has not been read)."""
        return self.import_s is None and not self.conn.poll()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _reply(self, timeout_s: float | None = None):
        if timeout_s is not None and not self.conn.poll(timeout_s):
            op = self._busy
            self.close(timeout_s=10)  # still busy: ended, not asked
            raise MeasurementError(
                f"the {self.name} engine process (pid {self.proc.pid}) did not finish its engine's {op} within "
                f"{timeout_s:g} s and was ended; its log is above. For a model that needs longer, set "
                f"{START_TIMEOUT_ENV} (seconds; 0: no limit)"
            )
        try:
            ok, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.proc.poll()
            raise MeasurementError(
                f"the {self.name} engine process (pid {self.proc.pid}) ended unexpectedly (exit code "
                f"{self.proc.returncode}); its error is printed above ({type(exc).__name__})"
            ) from None
        self._busy = None
        if not ok:
            raise value
        return value

    def _call(self, op: str, *args, timeout_s: float | None = None):
        self.ready()
        try:
            self.conn.send((op, args))
            self._busy = op
        except OSError:
            self.proc.poll()
            raise MeasurementError(
                f"the {self.name} engine process (pid {self.proc.pid}) is gone (exit code {self.proc.returncode})"
            ) from None
        return self._reply(timeout_s)

    def load(self, config: ExperimentConfig) -> bool:
        reloaded, self.info, self.vocab_size, path = self._call("load", config, timeout_s=start_timeout_s())
        if path != self._tokenizer_path:
            self._tokenizer, self._tokenizer_path = None, path
        return reloaded

    @property
    def tokenizer(self):
        if self._tokenizer is None and self._tokenizer_path:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_path)
        return self._tokenizer

    def warmup(self, requests) -> None:
        self.info = self._call("warmup", requests, timeout_s=start_timeout_s())

    def before_cycle(self) -> None:
        self._call("before_cycle")

    def stage(self, requests) -> None:
        """Hand the cycle's trace to the child before the window opens: `run` then sends only the clock's origin."""
        self._call("stage", requests)
        self._staged = requests

    def run(self, requests, clock) -> None:
        """The measured work, in the child, on the same cycle clock (perf_counter is one clock for the machine)."""
        staged, self._staged = self._staged, None
        self._call("run", None if requests is staged else requests, clock.origin)

    def after_cycle(self, delivered=None):
        return self._call("after_cycle")

    def peak_memory_bytes(self) -> int | None:
        return self._call("peak_memory_bytes")

    def sync(self) -> None:
        self._call("sync")

    def close(self, timeout_s: float = 60.0) -> None:
        """Free the engine and end the child (its CUDA context goes with it) and every process under it (vLLM's engine
        core, multiprocessing helpers); one that does not exit in time is killed."""
        import psutil

        try:
            under = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            under = []
        if self.alive() and (self.import_s is None or self._busy):  # importing, or busy in an op: end it, not ask
            for p in [self.proc, *under]:  # a hung engine's core does not end with its host by itself
                try:
                    p.terminate()
                except (OSError, psutil.Error):  # gone meanwhile
                    pass
        elif self.alive():
            try:
                self._call("close", timeout_s=timeout_s)
            except Exception as exc:  # a broken engine must still go
                log.warning(f"engine process {self.pid}: close failed ({type(exc).__name__}: {exc}); ending it")
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for straggler in psutil.wait_procs(under, timeout=10)[1]:
            try:
                straggler.kill()
            except psutil.Error:  # gone meanwhile
                pass
        self.conn.close()


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _tokenizer_path(cfg: ExperimentConfig) -> str:
    from gpu_ops.models import resolve_model

    source = resolve_model(cfg.model)
    return str(source.tokenizer_path or source.path or source.spec)


def host_main(fd: int, backend_name: str) -> int:
    """The child's loop: one backend, one request at a time from the measuring process, until `close` or EOF."""
    from gpu_ops.backends import get_backend
    from gpu_ops.backends.base import CycleClock

    conn = Connection(fd)
    try:
        if backend_name == "vllm":  # the core's forkserver (unless LEM_VLLM_CORE_START=spawn) imports vLLM's core now
            from gpu_ops.backends.vllm import import_vllm
            from gpu_ops.backends.vllm_core import start_forkserver

            start_forkserver()
            import_vllm()  # the engine's modules too: part of this process's imports, before it is asked for one
        backend = get_backend(backend_name)
    except BaseException as exc:
        conn.send((False, _picklable(exc)))
        return 1
    conn.send((True, os.getpid()))
    delivered = staged = None
    ops = {
        "load": lambda cfg: (backend.load(cfg), backend.info, backend.vocab_size, _tokenizer_path(cfg)),
        "warmup": lambda requests: (backend.warmup(requests), backend.info)[1],
        "before_cycle": lambda: backend.before_cycle(),
        "after_cycle": lambda: backend.after_cycle(delivered),
        "peak_memory_bytes": lambda: backend.peak_memory_bytes(),
        "sync": lambda: backend.sync(),
    }
    try:
        while True:
            try:
                op, args = conn.recv()
            except (EOFError, OSError):  # the measuring process is gone
                return 0
            try:
                if op == "stage":
                    staged, value = args[0], None
                elif op == "run":
                    requests, origin = args
                    delivered = backend.run(staged if requests is None else requests, CycleClock(origin))
                    staged = value = None
                elif op == "close":
                    backend.close()
                    conn.send((True, None))
                    return 0
                else:
                    value = ops[op](*args)
            except BaseException as exc:
                traceback.print_exc(file=sys.stderr)
                conn.send((False, _picklable(exc)))
                continue
            conn.send((True, value))
    finally:
        try:
            backend.close()
        except Exception:
            pass


# -- the pool -----------------------------------------------------------------------------------------------------
@dataclass
class Engine:
    """A loaded engine and what its cycles' provenance says about it.

    Attributes:
        id: names the engine in every cycle it ran (`<identity key>-<n>`, n counting starts in this pool).
        identity: what it was built for.
        backend: the backend (inline) or its EngineHost (child process).
        start_s: seconds from asking for it to its first load done (process start, imports, weights, engine init).
        prestarted: whether its process was the pool's spare (imports begun before it was asked for: refill, prestart).
        uses: how many times it was handed out (1 = fresh).
        caches: hit / miss / unused per cache, as its start found them.
        pid: its child process, or None inline.
    """

    id: str
    identity: EngineIdentity
    backend: Any
    start_s: float
    prestarted: bool = False
    uses: int = 1
    caches: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    _counts_before: dict[str, int] = field(default_factory=dict, repr=False)
    _cache_env: dict[str, str] = field(default_factory=dict, repr=False)
    _warmed: bool = field(default=False, repr=False)

    @property
    def reused(self) -> bool:
        return self.uses > 1

    def warmed_up(self, cfg: ExperimentConfig) -> None:
        """After its first warm-up (where compilation lands): the caches' states."""
        if not self._warmed:
            self._warmed = True
            self.caches = cache_states(cfg, self._counts_before, cache_counts(self._cache_env), self.backend.info)

    def describe(self) -> dict:
        return {
            "engine_id": self.id,
            "engine_start_s": self.start_s,
            "engine_reused": self.reused,
            "engine_prestarted": self.prestarted,
            **self.caches,
        }


class EnginePool:
    """One warm engine per GPU set. `acquire(cfg)` hands out the held engine while its identity equals `cfg`'s,
    otherwise evicts (closes) the engines on those devices and starts one. `close()` ends them all.

    Spares: a long-lived pool (the engine server's) calls `refill()` after each run. It starts, per backend that has
    run here in a process, one engine process that imports its backend and waits (no engine, no CUDA context, no
    GPU work). The next engine of that backend starts in it, so an engine change skips the imports (~19 s for vLLM on
    an H100, §18). A caller that knows which engines come next asks for their spares up front: `acquire(..., then=)`
    starts them while the engine it asked for loads (a run whose sweep points change engine), `prestart()` at once
    (`compare`, before its first backend). `quiesce()` waits for spares still importing; a run calls it after each
    engine it starts and before that engine's first window, so an import overlaps an engine start but never a window."""

    def __init__(self, cache_root: Path | None = None, placement: str | None = None) -> None:
        """`placement`: where this pool's engines run, whatever LEM_ENGINE_PLACEMENT says ('process' for `compare`,
        whose backends must each end their engine, and its GPU context, before the next measures); None: the variable
        decides, else the device."""
        self.fixed_placement = placement
        self.engines: dict[tuple[str, frozenset[int]], Engine] = {}
        self.spares: dict[tuple[str, str | None], EngineHost] = {}
        self._spare_backends: set[str] = set()
        self.cache_root = Path(cache_root or engine_cache_dir())
        # the engine's process finds every cache under this root, the synthetic weights too
        self.cache_env = {CACHE_DIR_ENV: str(self.cache_root), **cache_environment(self.cache_root)}
        self._n = itertools.count(1)

    def placement(self, cfg: ExperimentConfig, uses_cuda: bool) -> str:
        chosen = os.environ.get(PLACEMENT_ENV, "")
        if chosen not in ("", "process", "inline"):
            from gpu_ops.errors import UserError

            raise UserError(f"{PLACEMENT_ENV}={chosen!r}: use 'process' or 'inline' (or leave it unset)")
        return self.fixed_placement or chosen or ("process" if uses_cuda else "inline")

    def acquire(self, cfg: ExperimentConfig, *, placement: str = "inline", then: Iterable[str] = ()) -> Engine:
        """The engine for `cfg`, loaded for it; `engine.reused` says whether it was warm. `then`: the backends whose
        next engine the caller will start after this one; a started engine's load overlaps their spares' imports."""
        identity, where = engine_identity(cfg), gpu_set(cfg)
        held = self.engines.get(where)
        if held is not None and held.identity == identity and (held.pid is None) == (placement == "inline"):
            if held.pid is None or held.backend.alive():
                held.uses += 1
                return held
        for key in [k for k in self.engines if _overlap(k, where)]:
            self.evict(self.engines[key])
        engine = self._start(cfg, identity, placement, then)
        self.engines[where] = engine
        return engine

    def _start(self, cfg: ExperimentConfig, identity: EngineIdentity, placement: str, then: Iterable[str]) -> Engine:
        before = cache_counts(self.cache_env)
        t0 = time.perf_counter()
        spare = None
        if placement == "process":
            self._spare_backends.add(cfg.backend)
            spare = self.spares.pop((cfg.backend, os.environ.get("CUDA_VISIBLE_DEVICES")), None)
            if spare is not None and not spare.alive():
                spare.close(timeout_s=5)
                spare = None
            backend = spare or EngineHost(cfg.backend, self.cache_env, wait=False)
            self.prestart(then)  # after taking this engine's spare: the next engine's imports run beside this load
        else:
            from gpu_ops.backends import get_backend

            os.environ.update(self.cache_env)  # read when torch/vLLM compile: set before that
            backend = get_backend(cfg.backend)
        try:
            backend.load(cfg)
        except BaseException:
            backend.close()
            raise
        engine = Engine(
            id=f"{identity.key[:8]}-{next(self._n)}",
            identity=identity,
            backend=backend,
            start_s=time.perf_counter() - t0,
            prestarted=spare is not None,
            pid=backend.pid if placement == "process" else None,
            _counts_before=before,
            _cache_env=self.cache_env,
        )
        return engine

    def evict(self, engine: Engine) -> None:
        """Close `engine` (a child process exits, releasing its GPU memory and context) and forget it."""
        for key, held in list(self.engines.items()):
            if held is engine:
                del self.engines[key]
        engine.backend.close()

    def refill(self) -> None:
        """Start a spare process for each backend that has run here in a process and has none (for this process's
        CUDA_VISIBLE_DEVICES, which the spare inherits). Returns at once: the spares import in the background."""
        self.prestart(self._spare_backends)

    def prestart(self, backends: Iterable[str]) -> None:
        """Start a spare process for each of `backends` that has none (engine processes only; returns at once)."""
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        for name in sorted(set(backends)):
            if (name, devices) not in self.spares:
                self.spares[(name, devices)] = EngineHost(name, self.cache_env, wait=False)

    def quiesce(self) -> float:
        """Wait for spares still importing (a spare that failed to start is dropped, with a warning); seconds waited."""
        t0 = time.perf_counter()
        for key, spare in list(self.spares.items()):
            try:
                spare.ready()
            except Exception as exc:
                log.warning(f"spare {key[0]} engine process: {exc}")
                del self.spares[key]
        return time.perf_counter() - t0

    def close(self) -> None:
        for spare in self.spares.values():
            spare.close(timeout_s=10)
        self.spares.clear()
        for engine in list(self.engines.values()):
            try:
                self.evict(engine)
            except Exception as exc:
                log.warning(f"engine {engine.id}: close failed ({type(exc).__name__}: {exc})")

    def describe(self) -> list[dict]:
        return [
            {**e.describe(), "identity_key": e.identity.key, "backend": e.identity.backend}
            for e in self.engines.values()
        ]

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="engine host process of llm-energy-measure (started by EngineHost)")
    ap.add_argument("--host-fd", type=int, required=True, help="socket to the measuring process")
    ap.add_argument("--backend", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return host_main(args.host_fd, args.backend)


if __name__ == "__main__":
    sys.exit(main())
