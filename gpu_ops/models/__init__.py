"""Where a model comes from: `builtin:` (built here), `synthetic:` (real shapes, random weights), a local folder, or a
hub id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from gpu_ops.errors import ConfigError
from gpu_ops.models.builtin import BUILTIN_MODELS, builtin_path, cache_dir, ensure_builtin

__all__ = [
    "ModelSource",
    "cache_dir",
    "list_architectures",
    "list_models",
    "load_architecture",
    "model_slug",
    "resolve_model",
    "tokenizer_source",
    "weights_of",
]

ARCHITECTURES = resources.files("gpu_ops.models") / "architectures"


@dataclass(frozen=True)
class ModelSource:
    spec: str
    kind: Literal["builtin", "synthetic", "local", "hub"]
    weights: Literal["real", "synthetic"]
    path: Path | None  # an HF folder (builtin, local); None for synthetic (built on the device) and hub
    tokenizer_path: Path | None
    architecture: dict[str, Any] | None = None  # config.json of a synthetic architecture

    @property
    def slug(self) -> str:
        return model_slug(self.spec)


def tokenizer_source(source: ModelSource) -> str:
    """Where every backend loads the model's tokenizer from (a folder or a hub id). One place, so the backends tokenise
    alike: a `synthetic:` model uses the builtin tokenizer on every backend, whatever vocabulary its shapes have."""
    return str(source.tokenizer_path or source.path or source.spec)


def model_slug(spec: str) -> str:
    """`builtin:tiny-llama` -> `builtin-tiny-llama`; used in partition keys. Pure: no file is looked at."""
    from gpu_ops.environment import slugify

    return slugify(spec.replace(":", "-"))


def weights_of(spec: str) -> Literal["real", "synthetic"]:
    """`builtin:` and `synthetic:` models have random weights with real shapes; folders and hub ids have real ones."""
    return "synthetic" if spec.startswith(("builtin:", "synthetic:")) else "real"


def list_architectures() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in ARCHITECTURES.iterdir() if p.name.endswith(".json"))


def load_architecture(name: str) -> dict[str, Any]:
    names = list_architectures()
    if name not in names:
        raise ConfigError(f"model 'synthetic:{name}': unknown architecture; available: {', '.join(names)}")
    cfg = json.loads((ARCHITECTURES / f"{name}.json").read_text())
    cfg.pop("_source", None)
    return cfg


def list_models() -> list[tuple[str, str]]:
    rows = [(f"builtin:{n}", d) for n, d in BUILTIN_MODELS.items()]
    rows += [(f"synthetic:{n}", "real architecture, random weights built on the device") for n in list_architectures()]
    return rows


def resolve_model(spec: str, build: bool = True) -> ModelSource:
    """Resolve a config's `model:`; builds `builtin:` models on first use when `build` is true."""
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        if name not in BUILTIN_MODELS:
            raise ConfigError(
                f"model '{spec}': unknown builtin model; available: {', '.join('builtin:' + n for n in BUILTIN_MODELS)}"
            )
        path = ensure_builtin(name) if build else builtin_path(name)
        return ModelSource(spec, "builtin", weights_of(spec), path, path)
    if spec.startswith("synthetic:"):
        arch = load_architecture(spec.removeprefix("synthetic:"))
        tok = ensure_builtin("tiny-llama") if build else builtin_path("tiny-llama")
        return ModelSource(spec, "synthetic", weights_of(spec), None, tok, arch)
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"model '{spec}': the folder has no config.json; point model at a Hugging Face model folder"
            )
        return ModelSource(spec, "local", weights_of(spec), local.resolve(), local.resolve())
    if spec.startswith((".", "/", "~")):
        raise ConfigError(f"model '{spec}': no such folder; check the path")
    return ModelSource(spec, "hub", weights_of(spec), None, None)
