"""Prompt sources -> token-id lists, truncated to `max_input_tokens`. Untrusted files are size-limited."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from gpu_ops.config import ExperimentConfig
from gpu_ops.errors import ConfigError, excerpt

MAX_PROMPT_FILE_BYTES = 512 << 20


def _read_limited(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"prompts.path '{path}': no such file; check the path")
    if p.stat().st_size > MAX_PROMPT_FILE_BYTES:
        raise ConfigError(f"prompts.path '{path}': larger than {MAX_PROMPT_FILE_BYTES >> 20} MiB; use a smaller file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        byte = excerpt(exc.object[exc.start : exc.start + 1])
        raise ConfigError(
            f"prompts.path '{path}': not UTF-8 text (byte {exc.start} is {byte}); give a JSONL or "
            "ShareGPT text file saved as UTF-8"
        ) from None


def _jsonl_texts(text: str, where: str) -> list[str]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: line {n}: not JSON ({exc.msg}); one JSON object per line") from None
        prompt = row.get("prompt", row.get("text")) if isinstance(row, dict) else None
        if not isinstance(prompt, str):
            raise ConfigError(f"{where}: line {n}: needs a string field 'prompt' (or 'text')")
        out.append(prompt)
    return out


def _sharegpt_texts(text: str, where: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg}); ShareGPT files are a JSON list of conversations") from None
    out = []
    for conv in data if isinstance(data, list) else []:
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if turns and isinstance(turns[0], dict) and isinstance(turns[0].get("value"), str):
            out.append(turns[0]["value"])  # first human turn, as vLLM's ShareGPT loader does
    if not out:
        raise ConfigError(f"{where}: no conversations with a first turn 'value'; expected ShareGPT format")
    return out


def load_prompt_texts(cfg: ExperimentConfig) -> list[str]:
    src = cfg.prompts
    if src.source == "builtin":
        return _jsonl_texts((resources.files("gpu_ops") / "data" / "prompts.jsonl").read_text(), "builtin prompts")
    if src.source == "jsonl":
        return _jsonl_texts(_read_limited(src.path), f"prompts.path '{src.path}'")
    if src.source == "sharegpt":
        return _sharegpt_texts(_read_limited(src.path), f"prompts.path '{src.path}'")
    if src.source == "hf":
        try:
            import datasets  # optional
        except ImportError:
            raise ConfigError(
                "prompts.source 'hf' needs the `datasets` package: pip install 'llm-energy-measure[prompts]'"
            ) from None
        try:
            ds = datasets.load_dataset(src.dataset, split=src.split)
        except Exception as exc:  # hub unreachable, dataset missing
            raise ConfigError(
                f"prompts.dataset '{src.dataset}': could not load ({type(exc).__name__}: {exc}); "
                "use a local jsonl file when no hub is reachable"
            ) from None
        if src.column not in ds.column_names:
            raise ConfigError(f"prompts.column '{src.column}': not in dataset columns {ds.column_names}")
        return [str(x) for x in ds[src.column][: src.count]]
    raise ConfigError(f"prompts.source '{src.source}' cannot be read as text")


def load_tokenizer(model: str):
    """The tokenizer every backend uses for `model` (gpu_ops.models.tokenizer_source), loaded alone: no engine, no
    device. `compare` computes each backend's request trace with it before measuring anything."""
    from transformers import AutoTokenizer

    from gpu_ops.models import resolve_model, tokenizer_source

    return AutoTokenizer.from_pretrained(tokenizer_source(resolve_model(model)))


def build_prompts(cfg: ExperimentConfig, tokenizer, vocab_size: int) -> list[list[int]]:
    """`prompts.count` token-id lists; text sources cycle when they hold fewer prompts than asked. Random prompts draw
    ids from [4, vocab_size): the backends pass their tokenizer's size, so one model gives one trace on all of them."""
    n = cfg.prompts.count
    if cfg.prompts.source == "random":
        rng = np.random.default_rng(cfg.seed)
        r = cfg.prompts.random
        lo = max(1, int(r.input_len * (1 - r.range_ratio)))
        hi = max(lo, int(r.input_len * (1 + r.range_ratio)))
        lengths = np.minimum(rng.integers(lo, hi + 1, size=n), cfg.max_input_tokens)
        # skip the special tokens at the bottom of the vocabulary
        return [rng.integers(4, vocab_size, size=int(length)).tolist() for length in lengths]
    return [tokenizer(text, add_special_tokens=True)["input_ids"][: cfg.max_input_tokens] for text in prompt_texts(cfg)]


def output_limits(cfg: ExperimentConfig, n: int) -> list[tuple[int, int]]:
    """Each request's (max, min) new tokens: the config's limits, or with `output_lengths: uniform` an exact length
    per request drawn from them (its own stream of the seed, so the prompts' draws do not move it)."""
    if cfg.output_lengths != "uniform":
        return [(cfg.max_output_tokens, cfg.min_output_tokens)] * n
    drawn = np.random.default_rng([cfg.seed, 1]).integers(cfg.min_output_tokens, cfg.max_output_tokens + 1, size=n)
    return [(int(k), int(k)) for k in drawn]


def prompt_texts(cfg: ExperimentConfig) -> list[str]:
    """The `prompts.count` texts of a text source, in request order (the source cycles when it holds fewer)."""
    texts = load_prompt_texts(cfg)
    if not texts:
        raise ConfigError("prompts: the source holds no prompts")
    return [texts[i % len(texts)] for i in range(cfg.prompts.count)]
