"""`run --show-tokens`: sampled requests' text printed by the display process, outside the measured process."""

from gpu_ops.config import parse_config
from gpu_ops.runner import run_experiment

BASE = {
    "name": "show",
    "model": "builtin:tiny-llama",
    "max_input_tokens": 32,
    "max_output_tokens": 6,
    "min_output_tokens": 6,
    "prompts": {"count": 8},
    "batching": {"strategy": "static", "batch_size": 4},
    "cycles": 2,
    "warmup_requests": 0,
    "cooldown_s": 0,
    "energy": {"idle_baseline_s": 0},
}


def test_show_tokens_prints_one_sampled_request_per_batch(tmp_path, capfd, tiny_model_path):
    out = run_experiment(parse_config(BASE), tmp_path, show_tokens=True)
    err = capfd.readouterr().err
    # batches of 4: requests 0 and 4 are sampled in each of the two cycles; nothing else is shown
    for cycle in (1, 2):
        for rid in (0, 4):
            assert f"[cycle {cycle} request {rid}]" in err
    assert "request 1]" not in err and "request 5]" not in err
    assert out.tables.cycles.output_tokens.eq(8 * 6).all()  # the run itself is unchanged
