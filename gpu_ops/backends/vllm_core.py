"""How vLLM's engine core process starts: in an engine process of our own (gpu_ops.engines.EngineHost), forked from a
multiprocessing forkserver that imported vLLM's engine-core modules while the engine host waited for its first engine
(the default there since docs/benchmarks §23, where it met the warm-worker target on the H100); inline, and wherever
LEM_VLLM_CORE_START=spawn, spawned.

A spawned core imports vLLM again: 15-25 s of each H100 engine start, even in a warm spare process
(docs/benchmarks §20, §21). Forking the host is not an option (forked cores hung on the H100 and the H200, §10, §19,
§20); a forkserver child is forked from a separate, clean process that did nothing but import vLLM. vLLM itself only
knows fork and spawn (VLLM_WORKER_MULTIPROC_METHOD), so in the engine host the one name its core manager builds the
core's process with (`vllm.v1.engine.utils.get_mp_context`) is pointed at the forkserver.

The module imports no vLLM: the engine host imports it before vLLM, and the forkserver preloads it, so the core's
process class unpickles in the forked child at no cost.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import sys

from gpu_ops.errors import UserError

CORE_START_ENV = "LEM_VLLM_CORE_START"
CORE_STARTS = ("spawn", "forkserver")
HOST_DEFAULT = "forkserver"
"""An engine host's core start when LEM_VLLM_CORE_START is unset (inline engines: spawn, the only one they can use)."""

PRELOAD = (
    "vllm.v1.engine.core",  # the core's entry point (EngineCoreProc.run_engine_core) and nearly all it imports
    "vllm.v1.executor.uniproc_executor",  # a one-GPU core runs its worker in its own process
    "vllm.v1.executor.multiproc_executor",  # several GPUs (and the CPU build): the core starts its workers
    "vllm.v1.worker.gpu_worker",  # the worker and model runner a one-GPU core imports when it builds its executor
    __name__,  # the core's process class, unpickled in the child
)
"""What the forkserver imports before it forks any core (a module it cannot import is skipped by multiprocessing)."""

_forkserver_started = False


def core_start_setting() -> str:
    """LEM_VLLM_CORE_START: `spawn` (unset or empty, inline) or `forkserver` (an engine host sets it when unset)."""
    value = os.environ.get(CORE_START_ENV) or "spawn"
    if value not in CORE_STARTS:
        raise UserError(
            f"{CORE_START_ENV}={value!r} is not a way to start vLLM's engine core; use one of "
            f"{', '.join(CORE_STARTS)} (or leave it unset: {HOST_DEFAULT} in an engine process of its own, else spawn)"
        )
    return value


def start_forkserver() -> bool:
    """In an engine host, before it imports vLLM: unless LEM_VLLM_CORE_START=spawn, start the forkserver, which
    imports vLLM's engine-core modules in its own process while this one imports its backend (a spare process does
    both while the worker is idle). Whether it started."""
    global _forkserver_started
    if not os.environ.get(CORE_START_ENV):
        os.environ[CORE_START_ENV] = HOST_DEFAULT  # this process's engines (and the backend's info) see the choice
    if core_start_setting() != "forkserver":
        return False
    multiprocessing.set_forkserver_preload(list(PRELOAD))
    multiprocessing.forkserver.ensure_running()
    _forkserver_started = True
    return True


class _CoreProcess(multiprocessing.context.ForkServerProcess):
    """vLLM's engine core, forked by the forkserver, set up as a spawned core would be: the host's environment at
    `start` (the forkserver holds the one the host started with; vLLM and our backend set variables per engine),
    torch's thread count from OMP_NUM_THREADS (a spawned core's torch reads it on import), and vLLM's logging config
    read again (VLLM_LOGGING_CONFIG_PATH names the engine-start timings' log, gpu_ops.backends.vllm._EngineStartLog)."""

    def start(self) -> None:
        self._host_environ = dict(os.environ)
        super().start()

    def run(self) -> None:
        logging_config = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
        os.environ.clear()
        os.environ.update(self._host_environ)
        torch = sys.modules.get("torch")
        if torch is not None:
            if torch.cuda.is_initialized():  # a forked CUDA context cannot work: fail loudly, never hang
                raise RuntimeError(
                    f"{CORE_START_ENV}=forkserver: the forkserver initialised CUDA while importing {list(PRELOAD)}, so "
                    f"a core forked from it cannot use the GPU; set {CORE_START_ENV}=spawn (spawned cores)"
                )
            if os.environ.get("OMP_NUM_THREADS", "").isdigit():
                torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        if os.environ.get("VLLM_LOGGING_CONFIG_PATH") != logging_config:
            reconfigure = getattr(sys.modules.get("vllm.logger"), "_configure_vllm_root_logger", None)
            if reconfigure is not None:  # without it the core's engine-start timings are not reported (None)
                reconfigure()
        super().run()


class _CoreContext(multiprocessing.context.ForkServerContext):
    Process = _CoreProcess


def route_cores_through_forkserver() -> None:
    """Make vLLM's core manager start the engine core through the forkserver that `start_forkserver` started in this
    process. It replaces the `get_mp_context` name of `vllm.v1.engine.utils` (what CoreEngineProcManager calls; vLLM's
    own function still runs first, for its checks and environment fixes); a vLLM without that name fails here rather
    than spawning silently. Only the engine host does this: elsewhere the setting is refused."""
    if not _forkserver_started:
        raise UserError(
            f"{CORE_START_ENV}=forkserver works in an engine process of its own (LEM_ENGINE_PLACEMENT=process), which "
            "starts the forkserver before it imports vLLM; this engine runs inline. Set LEM_ENGINE_PLACEMENT=process "
            f"or set {CORE_START_ENV}=spawn"
        )
    import vllm
    import vllm.v1.engine.utils as core_utils

    for name in ("CoreEngineProcManager", "get_mp_context"):
        if not hasattr(core_utils, name):
            raise UserError(
                f"{CORE_START_ENV}=forkserver: vllm {getattr(vllm, '__version__', '?')} has no "
                f"vllm.v1.engine.utils.{name}, where the engine core's start is redirected; set {CORE_START_ENV}=spawn "
                "(spawned cores)"
            )
    vllm_context = core_utils.get_mp_context
    if getattr(vllm_context, "routes_to_forkserver", False):
        return
    context = _CoreContext()

    def get_mp_context():
        vllm_context()
        return context

    get_mp_context.routes_to_forkserver = True
    core_utils.get_mp_context = get_mp_context
