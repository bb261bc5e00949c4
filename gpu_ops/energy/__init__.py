"""Energy meters: NVML counter with edges aligned to its updates, a power timeline sampled in its own process, idle
baseline, RAPL, optional Zeus; `unmeasured` with a reason, never 0."""

from gpu_ops.energy.meter import EnergyMeter, IdleBaseline, WindowMeasurement, integrate
from gpu_ops.energy.nvml import GpuTarget, NvmlSource, load_nvml, select_targets, topology
from gpu_ops.energy.rapl import RaplSource

__all__ = [
    "EnergyMeter",
    "IdleBaseline",
    "WindowMeasurement",
    "integrate",
    "GpuTarget",
    "NvmlSource",
    "load_nvml",
    "select_targets",
    "topology",
    "RaplSource",
    "build_meter",
]


def build_meter(cfg, use_cuda: bool, nvml_module=None, sync=None, nvml_spec: str | None = None) -> EnergyMeter:
    """The meter for a run: NVML on the config's GPUs when there is a GPU, RAPL where readable, Zeus if asked.
    `nvml_module` replaces pynvml (an object: sampled in-process); `nvml_spec` names a `module:factory` stand-in the
    sampler process can build too (tests of the real sampler process)."""
    from gpu_ops.errors import UserError

    gpu = gpu_reason = None
    if use_cuda:
        nvml, reason = (nvml_module, None) if nvml_module is not None else load_nvml()
        if nvml is None:
            gpu_reason = reason
        else:
            gpu = NvmlSource(nvml, select_targets(nvml, cfg.gpus))
    else:
        gpu_reason = "run on CPU: no GPU energy to measure"
    cpu, cpu_reason = RaplSource.detect() if cfg.energy.rapl else (None, "RAPL disabled in config (energy.rapl: false)")
    zeus = None
    if cfg.energy.zeus:
        if gpu is None:
            raise UserError("energy.zeus: Zeus needs an NVIDIA GPU; set energy.zeus: false on this machine")
        try:
            from zeus.monitor import ZeusMonitor
        except ImportError:
            raise UserError(
                "energy.zeus: the zeus package is not installed; pip install 'llm-energy-measure[zeus]'"
            ) from None
        zeus = ZeusMonitor(gpu_indices=list(cfg.gpus), approx_instant_energy=False)
    return EnergyMeter(
        gpu,
        gpu_reason=gpu_reason,
        cpu=cpu,
        cpu_reason=cpu_reason,
        sample_hz=cfg.energy.sample_hz,
        sync=sync,
        zeus=zeus,
        nvml_spec=nvml_spec,
        tolerance=cfg.energy.cross_check_tolerance,
    )
