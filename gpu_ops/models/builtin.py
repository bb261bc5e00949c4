"""`builtin:tiny-llama`: a tiny Llama the package builds itself, so the tool runs with no model hub.

Tokenizer: byte-level BPE trained on the corpus shipped in the package. Weights: random from a fixed
seed. head_dim is 64 because vLLM's CPU attention refuses smaller heads. The build is deterministic
(same bytes every time, checked by `build_digest`) and lands in the cache folder atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from gpu_ops.caches import cache_dir

BUILD_VERSION = "1"
VOCAB_SIZE = 2048  # the BPE vocabulary trained on the bundled corpus (its special tokens included)
SHAPES = {
    "micro-llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2),
    "tiny-llama": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4),
    "small-llama": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8),
}
BUILTIN_MODELS = {
    "micro-llama": "Llama, 2 layers, hidden 128, head_dim 64, same tokenizer, random weights (seed 0): the fastest "
    "smoke model",
    "tiny-llama": "Llama, 4 layers, hidden 256, head_dim 64, BPE tokenizer trained on the bundled corpus, random "
    "weights (seed 0)",
    "small-llama": "Llama, 8 layers, hidden 512, head_dim 64, same tokenizer, random weights (seed 0)",
}
_SPECIAL = ["<s>", "</s>", "<unk>", "<pad>"]


def builtin_path(name: str) -> Path:
    return cache_dir() / "models" / f"{name}-v{BUILD_VERSION}"


def ensure_builtin(name: str) -> Path:
    target = builtin_path(name)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs build once
        if not (target / "config.json").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
            try:
                build_tiny_llama(tmp, name)
                os.rename(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_llama(out: Path, name: str = "tiny-llama") -> None:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = (resources.files("gpu_ops") / "data" / "corpus.txt").read_text()
    prompts = (resources.files("gpu_ops") / "data" / "prompts.jsonl").read_text()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [corpus, prompts], vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False, special_tokens=_SPECIAL
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tok.save_pretrained(out)

    shape = SHAPES[name]
    config = LlamaConfig(
        vocab_size=len(tok),
        **shape,
        num_key_value_heads=shape["num_attention_heads"],
        head_dim=64,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    gen = torch.Generator().manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.dim() == 1:  # norms
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)


def build_digest(folder: Path) -> str:
    """Hash of every file in a built model folder; equal digests mean byte-identical builds."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()
