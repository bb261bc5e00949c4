"""Backend registry. A backend is importable lazily so a worker needs only the libraries it uses."""

from __future__ import annotations

from gpu_ops.backends.base import (
    ENGINE_METRICS,
    Capabilities,
    CycleOutput,
    EngineStep,
    InferenceBackend,
    Request,
    RequestRecord,
    check_capabilities,
)

__all__ = [
    "ENGINE_METRICS",
    "Capabilities",
    "CycleOutput",
    "EngineStep",
    "InferenceBackend",
    "Request",
    "RequestRecord",
    "check_capabilities",
    "get_backend",
    "BACKENDS",
]

BACKENDS = {
    "pytorch": "transformers generate with per-step timestamps (this package)",
    "vllm": "vLLM: offline LLM.generate and streaming AsyncLLM, continuous batching",
    "tensorrt": "TensorRT-LLM LLM API: generate_async streaming (not verified on hardware)",
}


def get_backend(name: str) -> InferenceBackend:
    """The backend named `name`; BackendUnavailable (with the install hint) when its library is missing."""
    if name == "pytorch":
        from gpu_ops.backends.ranked import in_ranks

        if in_ranks():  # rank 0 of a multi-GPU run: mirror every call to the other ranks
            from gpu_ops.backends.ranked import RankedBackend

            return RankedBackend()
        from gpu_ops.backends.pytorch import PytorchBackend

        return PytorchBackend()
    if name == "vllm":
        from gpu_ops.backends.vllm import VllmBackend

        return VllmBackend()
    if name == "tensorrt":
        from gpu_ops.backends.tensorrt import TensorrtBackend

        return TensorrtBackend()
    from gpu_ops.errors import BackendUnavailable

    raise BackendUnavailable(f"unknown backend '{name}'; available: {', '.join(BACKENDS)}")
