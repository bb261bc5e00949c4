import os
from pathlib import Path

import pytest

# The builtin model is built once per test session into a shared cache folder.
os.environ.setdefault("LEM_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".lem_cache"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REQUIRE_SERVICES = os.environ.get("LEM_REQUIRE_SERVICES") == "1"


def write_yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="session")
def tiny_model_path():
    from gpu_ops.models.builtin import ensure_builtin

    return ensure_builtin("tiny-llama")
