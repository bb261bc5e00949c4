"""Decoder presets: named sampling settings; a config's explicit fields override its preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gpu_ops.config import Decoder


@dataclass(frozen=True)
class Sampling:
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float


PRESETS: dict[str, Sampling] = {
    "deterministic": Sampling(do_sample=False, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
    "standard": Sampling(do_sample=True, temperature=0.7, top_k=50, top_p=0.95, repetition_penalty=1.0),
    "creative": Sampling(do_sample=True, temperature=1.0, top_k=100, top_p=0.98, repetition_penalty=1.05),
    "factual": Sampling(do_sample=True, temperature=0.3, top_k=20, top_p=0.9, repetition_penalty=1.1),
}


def resolve_sampling(decoder: Decoder) -> Sampling:
    base = asdict(PRESETS[decoder.preset])
    for key in base:
        value = getattr(decoder, key)
        if value is not None:
            base[key] = value
    if base["temperature"] == 0.0:
        base["do_sample"] = False
    return Sampling(**base)
