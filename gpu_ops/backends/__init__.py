"""Backend registry. A backend is importable lazily so a worker needs only the libraries it uses."""

from __future__ import annotations

from gpu_ops.backends.base import Capabilities, InferenceBackend, Request, RequestRecord, check_capabilities
from gpu_ops.errors import BackendUnavailable

__all__ = ["Capabilities", "InferenceBackend", "Request", "RequestRecord", "check_capabilities", "get_backend", "BACKENDS"]

BACKENDS = {
    "pytorch": "transformers generate (this package)",
    "vllm": "not in this release: tracked by the backends issue",
    "tensorrt": "not in this release: tracked by the backends issue",
}


def get_backend(name: str) -> InferenceBackend:
    if name == "pytorch":
        from gpu_ops.backends.pytorch import PytorchBackend

        return PytorchBackend()
    raise BackendUnavailable(f"backend '{name}' is {BACKENDS.get(name, 'unknown')}; use backend: pytorch")
