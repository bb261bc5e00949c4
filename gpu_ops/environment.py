"""Environment fingerprint and hardware profile slug: what produced a number, recorded with it."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import socket

from gpu_ops import __version__
from gpu_ops.energy.nvml import GpuTarget, uuid_hash

SLUG_MAX = 64
# Partition keys become folder names and Dagster keys: an allow-list, starting with a letter or digit, so `.`, `..`
# and hidden names never pass, and none of Dagster's separators `| , [ ]` can appear.
SLUG_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{2 * SLUG_MAX + 1}}}")


def slugify(text: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return re.sub(r"-{2,}", "-", s)[:SLUG_MAX].strip("-.")


def validate_slug(slug: object, what: str) -> str:
    """A partition key part (or any name that becomes a path): refused unless it matches SLUG_PATTERN."""
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        from gpu_ops.errors import UserError, excerpt

        raise UserError(
            f"{what} {excerpt(slug)}: not a valid partition slug; use 1-{2 * SLUG_MAX + 2} characters from "
            "A-Z a-z 0-9 . _ -, starting with a letter or digit (so never '.' or '..')"
        )
    return slug


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_profile(model: str | None = None, count: int | None = None) -> str:
    """e.g. 'AMD EPYC 9554 64-Core Processor' on 2 cores -> 'cpu-amd-epyc-9554-2c'; this machine's by default."""
    name = re.sub(r"\(r\)|\(tm\)|processor|cpu @.*|\d+-core", "", (cpu_model() if model is None else model).lower())
    words = [w for w in re.split(r"[^a-z0-9]+", name) if w][:3]
    return slugify("-".join(["cpu", *words, f"{os.cpu_count() if count is None else count}c"]))


def gpu_profile_of(name: str, mig_profile: str | None, count: int) -> str:
    """e.g. 'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3'; two of them -> '2x-h100-80gb-hbm3'; a slice ->
    'mig-1g.10gb-h100-80gb-hbm3'. A GPU with a standard profile (gpu_ops/hardware) takes its slug; any other keeps the
    slug derived from its name."""
    from gpu_ops.hardware import spec_for_gpu

    spec = spec_for_gpu(name)
    base = spec.slug if spec is not None else slugify(name.split(" MIG ")[0].replace("NVIDIA", ""))
    if mig_profile is not None:
        base = f"mig-{slugify(mig_profile)}-{base}"
    return base if count == 1 else f"{count}x-{base}"


def _one_kind(devices: list[tuple[str, str | None]]) -> tuple[str, str | None]:
    """The (name, MIG profile) all devices share: a profile names one GPU model, so a mixed set is refused."""
    kinds = sorted(set(devices), key=str)
    if len(kinds) > 1:
        from gpu_ops.errors import UserError

        shown = ", ".join(n + (f" MIG {m}" if m else "") for n, m in kinds)
        raise UserError(
            f"gpus are of {len(kinds)} kinds ({shown}): a hardware profile names one GPU model, so results would be "
            "filed under the wrong one; list GPUs of one model in the config's `gpus` (or CUDA_VISIBLE_DEVICES)"
        )
    return kinds[0]


def gpu_profile(targets: list[GpuTarget]) -> str:
    name, mig = _one_kind([(t.name, t.mig.profile if t.mig is not None else None) for t in targets])
    return gpu_profile_of(name, mig, len(targets))


def hardware_profile(targets: list[GpuTarget] | None) -> str:
    return gpu_profile(targets) if targets else cpu_profile()


def is_standard_profile(slug: str) -> bool:
    """Whether a hardware slug has a standard profile in gpu_ops/hardware (CPU slugs fall back to `cpu`)."""
    from gpu_ops.hardware import resolve

    return resolve(slug).standard


def fingerprint_profile(fp: dict) -> str:
    """The hardware profile a stored fingerprint describes: how an uploaded result's hardware claim is checked."""
    gpus = fp.get("gpus") or []
    if gpus:
        name, mig = _one_kind([(str(g["name"]), g.get("mig_profile")) for g in gpus])
        return gpu_profile_of(name, mig, len(gpus))
    return cpu_profile(str(fp["cpu_model"]), int(fp["cpu_count"]))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _hashed_devices(cvd: str | None) -> str | None:
    """CUDA_VISIBLE_DEVICES with GPU/MIG UUIDs hashed like everywhere else in the fingerprint (indices kept)."""
    if cvd is None:
        return None
    return ",".join(
        uuid_hash(d.strip()) if d.strip().startswith(("GPU-", "MIG-")) else d.strip() for d in cvd.split(",")
    )


def fingerprint(
    targets: list[GpuTarget],
    nvml,
    backend_version: str,
    config_hash: str,
    hardware: str,
    counter_step_s: float | None = None,
    engines: list[dict] | None = None,
) -> dict:
    """What produced a result: versions, host and devices (UUIDs hashed), the run's hardware profile (`hardware`, as
    the run derived it from `targets`), the config hash, and the engines the run used with the state of their caches
    (`caches`: hit / miss / unused per cache over those engines); `fingerprint_hash` identifies the environment
    alone."""
    import torch

    fp: dict = {
        "package_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host_hash": _short_hash(socket.gethostname()),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "backend_version": backend_version,
        "config_hash": config_hash,
        "hardware_profile": hardware,
        "hardware_standard": is_standard_profile(hardware),  # false: a GPU without a gpu_ops/hardware profile
        "counter_step_s": counter_step_s,  # the energy counter's update period, measured on this GPU by the meter
        "cuda_visible_devices": _hashed_devices(os.environ.get("CUDA_VISIBLE_DEVICES")),
    }
    try:
        import transformers

        fp["transformers"] = transformers.__version__
    except ImportError:
        fp["transformers"] = None
    if nvml is not None and targets:

        def s(x):
            return x.decode() if isinstance(x, bytes) else str(x)

        fp["driver"] = s(nvml.nvmlSystemGetDriverVersion())
        fp["nvml"] = s(nvml.nvmlSystemGetNVMLVersion())
        cuda = nvml.nvmlSystemGetCudaDriverVersion()
        fp["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        fp["gpus"] = [
            {
                "name": t.name,
                "uuid_hash": uuid_hash(t.uuid),
                "power_limit_w": t.power_limit_w,
                "mig_profile": t.mig.profile if t.mig else None,
                "parent_uuid_hash": uuid_hash(t.parent_uuid) if t.parent_uuid else None,
            }
            for t in targets
        ]
    else:
        fp.update(driver=None, nvml=None, cuda_driver=None, gpus=[])
    # what identifies the environment: not the config, nor a period that varies by a few ms from run to run, nor the
    # standard flag, which follows from the GPU names (so environments measured before profiles keep their hash)
    fp["fingerprint_hash"] = _short_hash(
        repr(
            sorted(
                (k, repr(v)) for k, v in fp.items() if k not in ("config_hash", "counter_step_s", "hardware_standard")
            )
        )
    )
    if engines is not None:  # how this run's engines started, not what the environment is: outside the hash
        fp["engines"] = engines
        fp["caches"] = cache_summary(engines)
    return fp


def cache_summary(engines: list[dict]) -> dict[str, str]:
    """Per cache over a run's engines: "miss" if any engine's start missed it, else "hit" if any hit it, else
    "unused"."""
    from gpu_ops.caches import CACHES

    states = {}
    for name in CACHES:
        seen = {str(e.get(name, "unused")) for e in engines}
        states[name] = "miss" if "miss" in seen else "hit" if "hit" in seen else "unused"
    return states
