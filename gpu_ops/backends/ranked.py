"""Multi-GPU runs of the PyTorch backend: one process per GPU under torchrun, results gathered on rank 0.

`launch` starts the ranks (each runs `python -m gpu_ops.runner`, the rank entry point); rank 0 measures with its
backend a `RankedBackend`, the others `follow` it.

- tensor parallel (`parallelism.tensor: N`): every rank holds a shard (transformers' TP plan) and runs the same
  requests in lockstep; the tokens are the same on every rank, so rank 0's timestamps are the run's.
- data parallel (`parallelism.data: N`): N independent replicas; request i goes to replica i mod N; the
  records of all replicas are gathered on rank 0 on one shared monotonic clock. Every replica runs the whole
  warm-up set, so each has seen the batch shapes of the cycles before the first measured window.

Rank 0 runs the ordinary single-process measurement (gpu_ops.measure: idle baseline, windows, result folder). Its
backend is a `RankedBackend`, which broadcasts each call to the other ranks before doing its own share, so every window
holds the work of all GPUs; a barrier inside `sync()` closes a window only when every rank finished. Energy is metered
on rank 0 over exactly the run's GPUs: the launcher narrows CUDA_VISIBLE_DEVICES to their UUIDs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_ops.backends.base import Capabilities, Clock, CycleOutput, Request, RequestRecord
from gpu_ops.config import ExperimentConfig
from gpu_ops.energy.sampler import ROOT_ENV
from gpu_ops.errors import MeasurementError

CHILD_ENV = "LEM_DISTRIBUTED_CHILD"


def world_size(cfg: ExperimentConfig) -> int:
    return cfg.parallelism.tensor * cfg.parallelism.pipeline * cfg.parallelism.data


def needs_launch(cfg: ExperimentConfig) -> bool:
    """A PyTorch run over several GPUs, not yet inside torchrun."""
    return cfg.backend == "pytorch" and world_size(cfg) > 1 and os.environ.get(CHILD_ENV) != "1"


def in_ranks() -> bool:
    return os.environ.get(CHILD_ENV) == "1" and int(os.environ.get("WORLD_SIZE", "1")) > 1


FILE_SHA_ENV = "LEM_FILE_SHA"  # how rank 0 learns the experiment file's file_sha


def launch(
    cfg: ExperimentConfig,
    out_root: Path,
    *,
    uuids: list[str] | None,
    folder_name: str | None = None,
    say=print,
    file_sha: str | None = None,
) -> Path:
    """Run `cfg` under torchrun (one process per GPU) and return the result folder rank 0 wrote (with `file_sha`, the
    experiment file's, in its summary.json)."""
    n = world_size(cfg)
    with tempfile.TemporaryDirectory(prefix="lem-ranks-") as tmp:
        data = cfg.model_dump(mode="json")
        data["gpus"] = list(range(n))  # inside the ranks, the run's GPUs are all there is (CUDA_VISIBLE_DEVICES below)
        (Path(tmp) / "config.json").write_text(json.dumps(data))
        env = dict(
            os.environ,
            **{
                CHILD_ENV: "1",
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                ROOT_ENV: str(os.getpid()),
            },
        )  # torchrun and every rank are this run's processes
        if uuids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(uuids)
        if file_sha:
            env[FILE_SHA_ENV] = file_sha
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={n}",
            "-m",
            "gpu_ops.runner",
            str(Path(tmp) / "config.json"),
            str(Path(out_root).resolve()),
            str(Path(tmp) / "result"),
            folder_name or "",
        ]
        say(
            f"launching {n} ranks (tensor={cfg.parallelism.tensor}, data={cfg.parallelism.data}) on "
            + (f"GPUs {','.join(u[:12] for u in uuids)}" if uuids else "CPU (gloo)")
        )
        rc = subprocess.call(cmd, env=env)
        result = Path(tmp) / "result"
        if rc != 0 or not result.is_file():
            raise MeasurementError(
                f"the {n}-rank run failed (torchrun exit code {rc}); each rank's error is printed above. "
                "No result folder was written."
            )
        return Path(result.read_text().strip())


def _share(requests: list[Request], cfg: ExperimentConfig, rank: int) -> list[Request]:
    """This rank's requests: all of them for tensor parallel, every N-th for data-parallel replicas."""
    n = cfg.parallelism.data
    return requests if n == 1 else requests[rank % n :: n]


class RankedBackend:
    """Rank 0's backend: mirrors every call to the other ranks (see module docstring)."""

    name = "pytorch"

    def __init__(self) -> None:
        import torch.distributed as dist

        from gpu_ops.backends.pytorch import PytorchBackend

        self.dist = dist
        self.local = PytorchBackend()
        self.cfg: ExperimentConfig | None = None
        self.followers_listening = True  # until close(): the other ranks hold this engine's share

    def _tell(self, op: str, *args) -> None:
        self.dist.broadcast_object_list([(op, args)], src=0)

    def version(self) -> str:
        return self.local.version()

    def capabilities(self) -> Capabilities:
        return self.local.capabilities()

    def unavailable(self, config: ExperimentConfig) -> str | None:
        return self.local.unavailable(config)

    @property
    def tokenizer(self):
        return self.local.tokenizer

    @property
    def vocab_size(self) -> int:
        return self.local.vocab_size

    @property
    def info(self) -> dict:
        return {
            **self.local.info,
            "world_size": self.dist.get_world_size(),
            "tensor_parallel": self.cfg.parallelism.tensor,
            "data_parallel": self.cfg.parallelism.data,
            "dist_backend": self.dist.get_backend(),
        }

    def load(self, config: ExperimentConfig) -> bool:
        self.cfg = config
        self._tell("load", config.model_dump(mode="json"))
        return self.local.load(config)

    def warmup(self, requests: list[Request]) -> None:
        self._tell("warmup", requests)
        self.local.warmup(requests)  # all of it on every rank (module docstring)

    def before_cycle(self) -> None:
        self.local.before_cycle()

    def after_cycle(self, delivered: list[RequestRecord]) -> CycleOutput:
        return CycleOutput(delivered)

    def run(self, requests: list[Request], clock: Clock) -> list[RequestRecord]:
        t0 = (
            time.monotonic() - clock()
        )  # perf_counter and monotonic are the same clock on Linux: one clock for every rank
        self._tell("run", requests, t0)
        mine = self.local.run(_share(requests, self.cfg, 0), clock)
        gathered: list = [None] * self.dist.get_world_size()
        self.dist.gather_object(mine, gathered, dst=0)
        if self.cfg.parallelism.data == 1:
            return mine  # tensor parallel: every rank produced the same tokens in lockstep
        return sorted((r for part in gathered for r in part), key=lambda r: r.id)

    def sync(self) -> None:
        if not self.followers_listening:  # e.g. the idle window after the run: nothing runs on the other ranks
            self.local.sync()
            return
        self._tell("sync")
        self.local.sync()
        self.dist.barrier()  # the window closes only when every GPU finished its work

    def peak_memory_bytes(self) -> int | None:
        self._tell("peak")
        gathered: list = [None] * self.dist.get_world_size()
        self.dist.gather_object(self.local.peak_memory_bytes(), gathered, dst=0)
        return None if any(g is None for g in gathered) else int(sum(gathered))  # over all the run's GPUs

    def close(self) -> None:
        if self.followers_listening:
            self._tell("close")
            self.followers_listening = False
        self.local.close()


def dismiss() -> None:
    """Rank 0, when its run ends: the other ranks leave `follow`. (Closing one engine does not end them: the engine
    pool closes an engine whenever the next sweep point needs another, and the ranks load that one next.)"""
    import torch.distributed as dist

    dist.broadcast_object_list([("exit", ())], src=0)


def follow() -> None:
    """Ranks > 0: do what rank 0 says, in the same order, until it dismisses them."""
    import torch.distributed as dist

    from gpu_ops.backends.pytorch import PytorchBackend

    rank = dist.get_rank()
    backend = PytorchBackend()
    cfg = None
    while True:
        box = [None]
        dist.broadcast_object_list(box, src=0)
        op, args = box[0]
        if op == "load":
            cfg = ExperimentConfig.model_validate(args[0])
            backend.load(cfg)
        elif op == "warmup":
            backend.warmup(args[0])
        elif op == "run":
            requests, t0 = args
            dist.gather_object(
                backend.run(_share(requests, cfg, rank), lambda t0=t0: time.monotonic() - t0), None, dst=0
            )
        elif op == "sync":
            backend.sync()
            dist.barrier()
        elif op == "peak":
            dist.gather_object(backend.peak_memory_bytes(), None, dst=0)
        elif op == "close":
            backend.close()
            backend, cfg = PytorchBackend(), None  # the next sweep point's engine, if any, loads afresh
        elif op == "exit":
            return
