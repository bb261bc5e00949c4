"""Standard hardware profiles: the packaged files load and validate, detection maps GPUs to their canonical slug
(the slugs stored partitions already use), unknown GPUs stay derived and flagged, mixed sets are refused."""

import json
from pathlib import Path

import pytest

from gpu_ops import hardware
from gpu_ops.cli import main
from gpu_ops.energy.nvml import GpuTarget
from gpu_ops.environment import fingerprint_profile, gpu_profile, gpu_profile_of, is_standard_profile, slugify
from gpu_ops.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parents[3]
CANONICAL = {  # the list: every one has a file
    "a100-sxm4-40gb",
    "a100-pcie-40gb",
    "a100-sxm4-80gb",
    "a100-80gb-pcie",
    "h100-80gb-hbm3",
    "h100-pcie",
    "h200",
    "l4",
    "l40s",
    "cpu",
}


def _target(name: str, index: int = 0) -> GpuTarget:
    return GpuTarget(index=index, uuid=f"GPU-{index}", name=name, handle=None, power_limit_w=700.0)


def test_every_canonical_profile_is_packaged_and_valid():
    specs = hardware.standard_profiles()
    assert set(specs) == CANONICAL
    for spec in specs.values():
        assert spec.tdp_w > 0 and spec.memory_bandwidth_gbs > 0 and spec.bf16_tflops > 0 and spec.source


def test_canonical_slug_is_the_slug_detection_gave_before_profiles():
    """A profile's first NVML name slugifies to its file name, so stored partitions keep their keys."""
    for spec in hardware.standard_profiles().values():
        if spec.gpu_names:
            assert slugify(spec.gpu_names[0].replace("NVIDIA", "")) == spec.slug
            assert gpu_profile_of(spec.gpu_names[0], None, 1) == spec.slug


def test_stored_partition_folders_resolve_to_standard_profiles():
    stored = {p.name.split("__")[1] for p in (REPO / "docs/benchmarks/raw/multigpu").rglob("*__*__*") if p.is_dir()}
    assert stored >= {"h200", "2x-h200", "h100-80gb-hbm3"}
    for slug in stored:
        assert is_standard_profile(slug), slug


def test_detection_maps_aliases_counts_and_mig_slices():
    assert gpu_profile([_target("NVIDIA H200"), _target("NVIDIA H200", 1)]) == "2x-h200"
    assert gpu_profile_of("NVIDIA H100 SXM5 80GB", None, 1) == "h100-80gb-hbm3"  # an alias takes the canonical slug
    assert gpu_profile_of("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "1g.10gb", 1) == "mig-1g.10gb-h100-80gb-hbm3"
    slice_ = hardware.resolve("mig-1g.10gb-h100-80gb-hbm3")
    assert slice_.spec.slug == "h100-80gb-hbm3" and slice_.share == 1 / hardware.MIG_SLICES
    two = hardware.resolve("2x-h200")
    assert two.count == 2 and two.bandwidth_gbs == 2 * hardware.standard_profiles()["h200"].memory_bandwidth_gbs
    assert hardware.resolve("cpu-amd-epyc-9554-2c").spec.slug == hardware.CPU_SLUG


def test_unknown_gpu_keeps_a_derived_slug_flagged_nonstandard():
    slug = gpu_profile([_target("NVIDIA GeForce RTX 4090")])
    assert slug == "geforce-rtx-4090" and not is_standard_profile(slug)
    with pytest.raises(UserError, match="not a standard profile.*gpu_ops/hardware"):
        hardware.known(slug)


def test_mixed_gpu_set_is_refused_naming_every_model():
    with pytest.raises(UserError, match=r"2 kinds \(NVIDIA H200, NVIDIA L4\).*gpus"):
        gpu_profile([_target("NVIDIA H200"), _target("NVIDIA L4", 1)])
    fp = {"gpus": [{"name": "NVIDIA L4"}, {"name": "NVIDIA H200"}], "cpu_model": "x", "cpu_count": 2}
    with pytest.raises(UserError, match="one GPU model"):
        fingerprint_profile(fp)


def test_fingerprint_records_the_standard_flag_outside_its_hash(monkeypatch):
    """The flag is recorded; environments measured before profiles keep their fingerprint hash."""
    import gpu_ops.environment as env
    from gpu_ops.environment import fingerprint

    odd = fingerprint([], None, "torch", "c0ffee", hardware="geforce-rtx-4090")
    std = fingerprint([], None, "torch", "c0ffee", hardware="h200")
    assert odd["hardware_standard"] is False and std["hardware_standard"] is True
    assert odd["fingerprint_hash"] != std["fingerprint_hash"]  # the profile itself still counts
    monkeypatch.setattr(env, "is_standard_profile", lambda slug: True)
    flipped = fingerprint([], None, "torch", "c0ffee", hardware="geforce-rtx-4090")
    assert flipped["hardware_standard"] is True and flipped["fingerprint_hash"] == odd["fingerprint_hash"]
    summary = REPO / "docs/benchmarks/raw/multigpu/llama8b-tp1__h200__20261127T092532Z-fb348794/summary.json"
    assert fingerprint_profile(json.loads(summary.read_text())["fingerprint"]) == "h200"


def test_a_bad_profile_file_is_refused_naming_the_file(monkeypatch, tmp_path):
    (tmp_path / "h200.yaml").write_text("title: H200\ngpu_names: [NVIDIA H200]\ntdp_w: -5\n")
    monkeypatch.setattr(hardware, "PROFILES", tmp_path)
    hardware.standard_profiles.cache_clear()
    try:
        with pytest.raises(ConfigError, match="gpu_ops/hardware/h200.yaml"):
            hardware.standard_profiles()
        (tmp_path / "h200.yaml").write_text((REPO / "gpu_ops/hardware/h200.yaml").read_text())
        (tmp_path / "h200b.yaml").write_text((REPO / "gpu_ops/hardware/h200.yaml").read_text())
        with pytest.raises(ConfigError, match="listed by profiles h200 and h200b"):
            hardware.standard_profiles()
    finally:
        hardware.standard_profiles.cache_clear()


def test_list_hardware_shows_the_profiles(capsys):
    assert main(["list-hardware"]) == 0
    out = capsys.readouterr().out
    for spec in hardware.standard_profiles().values():
        assert any(line.startswith(spec.slug) and spec.title in line for line in out.splitlines())


def test_a_run_on_mixed_gpus_is_refused_before_it_measures():
    """The meter's targets are what a run files its hardware under (measure.py): a mixed set stops there."""
    from gpu_ops.config import parse_config
    from gpu_ops.energy import build_meter
    from gpu_ops.environment import hardware_profile
    from tests.fake_nvml import FakeGpu, FakeNVML

    nv = FakeNVML([FakeGpu(name="NVIDIA H200", uuid="GPU-a"), FakeGpu(name="NVIDIA L4", uuid="GPU-b")])
    cfg = parse_config({"name": "mixed", "model": "builtin:tiny-llama", "gpus": [0, 1], "parallelism": {"data": 2}})
    meter = build_meter(cfg, True, nvml_module=nv)
    with pytest.raises(UserError, match="NVIDIA H200, NVIDIA L4"):
        hardware_profile(meter.targets)
    same = FakeNVML([FakeGpu(name="NVIDIA L4", uuid="GPU-a"), FakeGpu(name="NVIDIA L4", uuid="GPU-b")])
    assert hardware_profile(build_meter(cfg, True, nvml_module=same).targets) == "2x-l4"


def test_list_hardware_flags_a_nonstandard_gpu_and_a_mixed_set(monkeypatch, capsys):
    import gpu_ops.energy as energy
    from tests.fake_nvml import FakeGpu, FakeNVML

    nv = FakeNVML([FakeGpu(name="NVIDIA GeForce RTX 4090", uuid="GPU-a"), FakeGpu(name="NVIDIA L4", uuid="GPU-b")])
    monkeypatch.setattr(energy, "load_nvml", lambda: (nv, None))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert main(["list-hardware"]) == 0
    out = capsys.readouterr().out
    assert "profile of gpus [0]: geforce-rtx-4090 (nonstandard" in out
    assert "of all visible: none (gpus are of 2 kinds" in out
