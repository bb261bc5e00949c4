"""Runs an experiment: measured in this process (gpu_ops.measure), or, for a PyTorch run over several GPUs, in one
process per GPU under torchrun (gpu_ops.backends.ranked), with rank 0 measuring.

`python -m gpu_ops.runner` is the entry point of each rank; `launch` starts it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from gpu_ops.backends import check_capabilities
from gpu_ops.backends.ranked import FILE_SHA_ENV, dismiss, follow, launch, needs_launch
from gpu_ops.config import ExperimentConfig
from gpu_ops.measure import RunOptions, measure_experiment
from gpu_ops.results import ResultFolder, check_output_folder

log = logging.getLogger("gpu_ops")


def quiet_libraries() -> None:
    """Warnings off and transformers' logs and progress bars quiet: the CLI's default, and each compare backend's."""
    import warnings

    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def measuring_environment() -> None:
    """Set before a measuring process asks torch about CUDA or starts an engine process (which inherits it)."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # integer CUDA_VISIBLE_DEVICES == NVML order
    # the measuring process asks NVML whether CUDA is there, never cuInit: its engines do the GPU work elsewhere
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def run_experiment(cfg: ExperimentConfig, out_root: Path, **options) -> ResultFolder:
    """Measure `cfg` and write its result folder under `out_root`.

    Args:
        cfg: the experiment; its sweep points run in the order that reloads the model least.
        out_root: the folder that receives the result folder (checked writable, with room, before measuring).
        options: the fields of gpu_ops.measure.RunOptions (nvml, progress, folder_name, show_bar, show_tokens,
            file_sha, pool: warm engines to run on, the engine server's; None: engines for this run only).
    """
    opts = RunOptions(**options)
    measuring_environment()
    check_output_folder(out_root)  # before measuring, not after
    if not needs_launch(cfg):
        return measure_experiment(cfg, out_root, opts)
    # several GPUs with the PyTorch backend: one process per GPU under torchrun
    from gpu_ops.backends.pytorch import CAPABILITIES, resolve_device

    for p in cfg.expand():
        check_capabilities("pytorch", CAPABILITIES, p.config)
    uuids = None
    if resolve_device(cfg).startswith("cuda"):
        from gpu_ops.energy import load_nvml, select_targets

        nv, _ = (opts.nvml, None) if opts.nvml is not None else load_nvml()
        uuids = [t.uuid for t in select_targets(nv, cfg.gpus)] if nv is not None else None
    folder = launch(
        cfg, out_root, uuids=uuids, folder_name=opts.folder_name, say=opts.progress or log.info, file_sha=opts.file_sha
    )
    return ResultFolder.read(folder)


def rank_main(argv: list[str]) -> int:
    """Entry point of each rank (started by `launch` through torchrun): rank 0 measures, the others follow it."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    config_path, out_root, result_path, folder_name = argv
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        timeout=timedelta(hours=2),
        **({"device_id": torch.device("cuda", local_rank)} if cuda else {}),
    )
    try:
        pids: list = [None] * dist.get_world_size()
        dist.all_gather_object(pids, os.getpid())
        os.environ["LEM_RUN_PIDS"] = ",".join(map(str, pids))  # the other ranks on our GPUs are not foreign processes
        if dist.get_rank() == 0:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            cfg = ExperimentConfig.model_validate(json.loads(Path(config_path).read_text()))
            opts = RunOptions(
                folder_name=folder_name or None,
                progress=lambda m: print(f"[rank 0] {m}", file=sys.stderr, flush=True),
                file_sha=os.environ.get(FILE_SHA_ENV),
            )
            try:
                outcome = measure_experiment(cfg, Path(out_root), opts)
            finally:
                dismiss()
            Path(result_path).write_text(str(outcome.folder))
        else:
            follow()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(rank_main(sys.argv[1:]))
