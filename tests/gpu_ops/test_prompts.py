"""Prompt files are untrusted: a binary or non-UTF-8 file is refused naming it, never a UnicodeDecodeError."""

import pytest

from gpu_ops.cli import main
from gpu_ops.config import parse_config
from gpu_ops.errors import ConfigError
from gpu_ops.prompts import load_prompt_texts


def test_binary_prompts_file_is_a_user_error_naming_the_file(tmp_path, capsys):
    blob = tmp_path / "prompts.jsonl"
    blob.write_bytes(b'{"prompt": "a"}\n' + bytes(range(256)))
    cfg = parse_config({"name": "p", "model": "builtin:tiny-llama", "prompts": {"source": "jsonl", "path": str(blob)}})
    with pytest.raises(
        ConfigError, match=rf"prompts.path '{blob}': not UTF-8 text \(byte 144 is '\\\\x80'\); give a JSONL"
    ):
        load_prompt_texts(cfg)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: p\nmodel: builtin:tiny-llama\nprompts: {{source: jsonl, path: {blob}}}\nenergy: {{idle_baseline_s: "
        "0}\n"
    )
    assert main(["run", str(exp), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: prompts.path '{blob}': not UTF-8 text") and "Traceback" not in err


def test_drawn_output_lengths_are_exact_seeded_and_the_same_every_cycle():
    from gpu_ops.config import parse_config
    from gpu_ops.prompts import output_limits

    base = {"name": "t", "model": "builtin:tiny-llama", "min_output_tokens": 4, "max_output_tokens": 64}
    fixed = parse_config(base)
    assert output_limits(fixed, 3) == [(64, 4)] * 3  # until_stop: the config's limits, stopping at EOS after 4
    uniform = parse_config({**base, "output_lengths": "uniform"})
    drawn = output_limits(uniform, 200)
    assert all(lo == hi and 4 <= hi <= 64 for hi, lo in drawn)  # exact lengths inside the limits
    assert len({hi for hi, _ in drawn}) > 30  # spread over the range, not one value
    assert output_limits(uniform, 200) == drawn  # a trace replays identically (every cycle, every backend)
    assert output_limits(parse_config({**base, "output_lengths": "uniform", "seed": 1}), 200) != drawn
    assert uniform.exact_output_lengths and not parse_config(base).exact_output_lengths
