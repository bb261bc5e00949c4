"""Standard hardware profiles: one YAML file per GPU model (and the CPU fallback) in this folder, so partitions, the
leaderboard and estimates name and describe a machine the same way.

A profile's slug is its file name and is what detection produced before profiles existed (`NVIDIA H200` -> `h200`),
so stored partitions stay valid. A GPU no file names keeps its derived slug and is flagged nonstandard.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpu_ops.errors import ConfigError, UserError, excerpt

PROFILES = resources.files("gpu_ops.hardware")
CPU_SLUG = "cpu"  # the fallback profile of every `cpu-<model>-<cores>c` slug
MAX_PROFILE_BYTES = 16 << 10
MIG_SLICES = 7  # compute slices of a MIG-capable GPU (A100, H100, H200): a `<g>g` slice has g/7 of its SMs
_SLUG = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
_MULTI = re.compile(r"(\d{1,4})x-(.+)")
_MIG = re.compile(r"mig-(\d)g[.-]")


class HardwareSpec(BaseModel):
    """One profile file: the figures of one device (a GPU, or the CPU fallback).

    Attributes:
        title: the name shown to people, e.g. `H100 SXM`.
        gpu_names: names NVML reports for this GPU (compared case-insensitively); empty for the CPU fallback.
        tdp_w: board power limit at its default.
        memory_gb: device memory (None for the CPU fallback).
        memory_bandwidth_gbs: peak memory bandwidth, the decode roofline's denominator.
        bf16_tflops: dense bf16 tensor throughput (no sparsity).
        price_per_hour: on-demand price of one device in your currency; None: cost is not estimated unless a config's
            `price_per_hour` sets it.
        source: where the figures come from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    slug: str
    title: Annotated[str, Field(min_length=1, max_length=64)]
    gpu_names: tuple[Annotated[str, Field(min_length=1, max_length=96)], ...]
    tdp_w: Annotated[float, Field(gt=0, le=5000)]
    memory_gb: Annotated[float, Field(gt=0, le=10_000)] | None
    memory_bandwidth_gbs: Annotated[float, Field(gt=0, le=100_000)]
    bf16_tflops: Annotated[float, Field(gt=0, le=100_000)]
    price_per_hour: Annotated[float, Field(ge=0, le=10_000)] | None = None
    source: Annotated[str, Field(min_length=1, max_length=300)]


@dataclass(frozen=True)
class Hardware:
    """A hardware profile slug resolved: `count` devices of `spec` (a MIG slice has `share` < 1 of one)."""

    slug: str
    spec: HardwareSpec | None  # None: a nonstandard GPU, whose figures are unknown
    count: int = 1
    share: float = 1.0

    @property
    def standard(self) -> bool:
        return self.spec is not None

    @property
    def bandwidth_gbs(self) -> float | None:
        """Peak memory bandwidth of the whole set (all devices, the slice's share of one)."""
        return None if self.spec is None else self.spec.memory_bandwidth_gbs * self.count * self.share

    @property
    def tdp_w(self) -> float | None:
        return None if self.spec is None else self.spec.tdp_w * self.count * self.share


def _normal(name: str) -> str:
    return " ".join(name.split()).lower()


def _load(name: str) -> HardwareSpec:
    text = (PROFILES / name).read_bytes()
    slug = name.removesuffix(".yaml")
    if len(text) > MAX_PROFILE_BYTES or not _SLUG.fullmatch(slug):
        raise ConfigError(f"gpu_ops/hardware/{name}: larger than {MAX_PROFILE_BYTES} bytes or not a valid slug name")
    try:
        data = yaml.safe_load(text)
        return HardwareSpec.model_validate({**data, "slug": slug} if isinstance(data, dict) else data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"gpu_ops/hardware/{name}: {excerpt(str(exc), bare=True)}; fix the profile file") from None


@functools.cache
def standard_profiles() -> dict[str, HardwareSpec]:
    """The profiles shipped in gpu_ops/hardware, by slug; a GPU name claimed by two files is refused."""
    specs = {s.slug: s for s in map(_load, sorted(p.name for p in PROFILES.iterdir() if p.name.endswith(".yaml")))}
    owner: dict[str, str] = {}
    for spec in specs.values():
        for n in spec.gpu_names:
            if (other := owner.setdefault(_normal(n), spec.slug)) != spec.slug:
                raise ConfigError(f"GPU name {n!r} is listed by profiles {other} and {spec.slug}; keep it in one")
    if CPU_SLUG not in specs:
        raise ConfigError(f"gpu_ops/hardware/{CPU_SLUG}.yaml is missing: it is the fallback of CPU runs")
    return specs


def spec_for_gpu(name: str) -> HardwareSpec | None:
    """The standard profile of a GPU as NVML names it (a MIG slice by its parent's name), or None if nonstandard."""
    wanted = _normal(name.split(" MIG ")[0])
    return next((s for s in standard_profiles().values() if wanted in map(_normal, s.gpu_names)), None)


def resolve(slug: str) -> Hardware:
    """What a hardware profile slug (`h200`, `2x-h200`, `mig-1g.18gb-h200`, `cpu-intel-xeon-2c`, or a nonstandard
    GPU's derived slug) stands for."""
    count, base = 1, slug
    if m := _MULTI.fullmatch(slug):
        count, base = int(m.group(1)), m.group(2)
    if base.startswith("cpu-") or base == CPU_SLUG:
        return Hardware(slug, standard_profiles()[CPU_SLUG], count)
    share = 1.0
    if m := _MIG.match(base):
        share = int(m.group(1)) / MIG_SLICES
    specs = standard_profiles()
    found = next((s for s in specs if s != CPU_SLUG and (base == s or (share < 1 and base.endswith(f"-{s}")))), None)
    return Hardware(slug, specs.get(found) if found else None, count, share)


def known(slug: str) -> Hardware:
    """`resolve`, refusing a slug with no standard profile (an estimate needs its figures)."""
    hw = resolve(slug)
    if not hw.standard:
        raise UserError(
            f"hardware {excerpt(slug)}: not a standard profile ({', '.join(standard_profiles())}, or cpu-...); "
            "pick one of `llm-energy-measure list-hardware`, or add gpu_ops/hardware/<slug>.yaml for this GPU"
        )
    return hw
