import pytest

from gpu_ops.cli import main
from gpu_ops.config import ExperimentConfig, Schedule, load_config, parse_config
from gpu_ops.errors import ConfigError

GOOD = """
name: ok
model: builtin:tiny-llama
"""

# (yaml text, fragment the message must contain)
MALFORMED = [
    ("name: a\nmodel: builtin:tiny-llama\nbatchsize: 4\n", "batchsize: unknown key; did you mean 'batching'?"),
    (
        "name: a\nmodel: m\nbatching: {strategy: static, batch_sise: 4}\n",
        "batching.batch_sise: unknown key; did you mean 'batch_size'?",
    ),
    (
        "name: a\nmodel: m\nvllm: {gpu_memory_utilisation: 0.5}\nbackend: vllm\n",
        "vllm.gpu_memory_utilisation: unknown key; did you mean 'gpu_memory_utilization'?",
    ),
    (
        "name: a\nmodel: m\nbatching: {batch_size: -1}\n",
        "batching.batch_size: Input should be greater than or equal to 1",
    ),
    ("name: a\nmodel: m\nbatching: {batch_size: 0}\n", "batching.batch_size"),
    ("name: a\nmodel: m\nbatching: {batch_size: four}\n", "batching.batch_size: Input should be a valid integer"),
    ("name: a\nmodel: m\ncycles: 100000000000000000000\n", "cycles: Input should be less than or equal to 1000"),
    ("name: a\nmodel: m\nmax_output_tokens: 99999999999\n", "max_output_tokens: Input should be less than or equal to"),
    ("name: a\nmodel: m\nprecision: fp8\n", "precision: Input should be 'fp32', 'fp16', 'bf16', 'int8' or 'int4'"),
    ("name: a\nmodel: m\nbackend: onnx\n", "backend: Input should be 'pytorch', 'vllm' or 'tensorrt'"),
    ("model: m\n", "name: required field is missing"),
    ("name: a\n", "model: required field is missing"),
    ("name: 'bad name|x'\nmodel: m\n", "name: String should match pattern"),
    (
        "name: a\nmodel: m\nmin_output_tokens: 64\nmax_output_tokens: 32\n",
        "min_output_tokens (64) exceeds max_output_tokens (32)",
    ),
    (
        "name: a\nmodel: m\noutput_lengths: uniform\nmin_output_tokens: 32\nmax_output_tokens: 32\n",
        "output_lengths: uniform draws each request's length from [min_output_tokens, max_output_tokens], but they "
        "are 32 and 32; set 1 <= min_output_tokens < max_output_tokens",
    ),
    ("name: a\nmodel: m\noutput_lengths: zipf\n", "output_lengths: Input should be 'until_stop' or 'uniform'"),
    ("name: a\nmodel: m\ntraffic: {mode: poisson}\n", "traffic.mode 'poisson' needs traffic.rate"),
    ("name: a\nmodel: m\ntraffic: {mode: constant, rate: -3}\n", "traffic.rate: Input should be greater than 0"),
    ("name: a\nmodel: m\nprompts: {source: jsonl}\n", "prompts.source 'jsonl' needs prompts.path"),
    ("name: a\nmodel: m\nvllm: {max_num_seqs: 8}\n", "a 'vllm:' block is set but backend is 'pytorch'"),
    ("name: a\nmodel: m\ngpus: [0, 0]\n", "gpus lists a GPU twice"),
    ("name: a\nmodel: m\ncooldown_s: -1\n", "cooldown_s: Input should be greater than or equal to 0"),
    ("name: a\nmodel: m\nsweep: {batching.batch_size: [1, -2]}\n", "sweep point {'batching.batch_size': -2}"),
    ("name: a\nmodel: m\nsweep: {batching.bogus: [1]}\n", "sweep.batching.bogus: unknown field"),
    ("name: a\nmodel: m\nsweep: {precision: []}\n", "sweep.precision: empty list"),
    ("name: a\nmodel: m\nsweep: {gpus: [[0], [0, 1]]}\n", "sweep.gpus: fixed for the whole run"),
    ("name: a\nmodel: m\nsweep: {energy.sample_hz: [20, 50]}\n", "write one experiment file per value"),
    ("name: a\nmodel: m\nschedule: {at: '25:00'}\n", "schedule.at must be a time of day HH:MM"),
    ("name: a\nmodel: m\nenergy: {sample_hz: 2}\n", "energy.sample_hz: Input should be greater than or equal to 10"),
    ("- just\n- a list\n", "must hold a mapping of fields"),
    ("name: a\nmodel: !!python/object/apply:os.system ['echo hi']\n", "YAML tag not allowed"),
    ("name: a\nmodel: [unclosed\n", "invalid YAML"),
    (
        "name: a\nmodel: m\ndecoder: {preset: wild}\n",
        "decoder.preset: Input should be 'deterministic', 'standard', 'creative' or 'factual'",
    ),
    ("name: a\nmodel: m\ndecoder: {top_p: 1.5}\n", "decoder.top_p: Input should be less than or equal to 1"),
]


@pytest.mark.parametrize("text,fragment", MALFORMED)
def test_malformed_config_message_names_field_and_fix(tmp_path, text, fragment):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert fragment in msg
    assert str(p) in msg  # the message names the file


def test_missing_file_and_size_limit(tmp_path):
    with pytest.raises(ConfigError, match="no such file; check the path"):
        load_config(tmp_path / "nope.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("name: a\nmodel: m\n#" + "x" * (1 << 20))
    with pytest.raises(ConfigError, match="exceeds the 1048576-byte limit"):
        load_config(big)


def test_not_utf8(tmp_path):
    p = tmp_path / "latin.yaml"
    p.write_bytes(b"name: caf\xe9\nmodel: m\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


def test_sweep_expands_to_grid():
    cfg = parse_config(
        {"name": "s", "model": "m", "sweep": {"batching.batch_size": [1, 8], "precision": ["fp16", "bf16"]}}
    )
    points = cfg.expand()
    assert [p.label for p in points] == [
        "batch_size=1,precision=fp16",
        "batch_size=1,precision=bf16",
        "batch_size=8,precision=fp16",
        "batch_size=8,precision=bf16",
    ]
    assert points[3].config.batching.batch_size == 8 and points[3].config.precision == "bf16"
    assert len({p.config.config_hash() for p in points}) == 4
    two_gpus = parse_config(
        {
            "name": "s",
            "model": "m",
            "gpus": [0, 1],
            "parallelism": {"tensor": 2},
            "sweep": {"parallelism": [{"tensor": 2}, {"data": 2}]},
        }
    )
    assert [(p.label, p.config.parallelism.data) for p in two_gpus.expand()] == [
        ("parallelism=tp2", 1),
        ("parallelism=dp2", 2),
    ]


def test_sweep_axis_varies_fields_together():
    cfg = parse_config(
        {
            "name": "z",
            "model": "m",
            "sweep": {"precision": ["bf16", "fp16"], "batching.batch_size+prompts.count": [[1, 4], [64, 64]]},
        }
    )
    points = cfg.expand()
    assert len(points) == 4  # 2 x 2, not 2 x 2 x 2
    assert {(p.config.batching.batch_size, p.config.prompts.count) for p in points} == {(1, 4), (64, 64)}
    assert "batch_size=1,count=4,precision=bf16" in {p.label for p in points}
    with pytest.raises(ConfigError, match=r"sweep.batching.batch_size\+prompts.count: .* is not a list of 2 values"):
        parse_config({"name": "z", "model": "m", "sweep": {"batching.batch_size+prompts.count": [[1, 4], [64]]}})
    with pytest.raises(ConfigError, match=r"unknown field prompts.cnt"):
        parse_config({"name": "z", "model": "m", "sweep": {"batching.batch_size+prompts.cnt": [[1, 4]]}})


def test_schedule_becomes_cron():
    assert Schedule(interval="daily", at="03:30").cron() == "30 3 * * *"
    assert Schedule(interval="weekly", at="01:00", days=["mon", "fri"]).cron() == "0 1 * * 1,5"
    assert Schedule(interval="hourly", at="00:15").cron() == "15 * * * *"


def test_show_config_prints_only_non_defaults(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: c\nmodel: builtin:tiny-llama\nbatching: {batch_size: 4}\ncycles: 3\n")
    assert main(["show-config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 4" in out and "name: c" in out
    assert "cycles" not in out  # 3 is the default
    assert "strategy" not in out


def test_cli_bad_config_exits_nonzero_without_traceback(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: c\nmodel: builtin:tiny-llama\nbatching: {batch_sise: 4}\n")
    assert main(["run", str(p), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "did you mean 'batch_size'" in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_defaults_are_valid():
    cfg = ExperimentConfig(name="x", model="builtin:tiny-llama")
    assert cfg.cycles == 3 and cfg.expand()[0].label == "default"


def test_every_example_experiment_is_valid():
    """The shipped examples are what people copy: each must load, expand its sweep and name its points."""
    from pathlib import Path

    from gpu_ops.compare import backend_data
    from gpu_ops.config import parse_config
    from gpu_ops.strict_yaml import read_yaml

    root = Path(__file__).resolve().parents[2] / "examples"
    files = sorted(p for p in root.rglob("*.yaml") if "instance" not in p.parts)
    assert len(files) >= 8
    for path in files:
        if "compare" in path.parts:  # a compare file: each backend block applies to its own backend's run
            configs = [parse_config(backend_data(read_yaml(path), b), str(path)) for b in ("pytorch", "vllm")]
        else:
            configs = [load_config(path)]
        for cfg in configs:
            points = cfg.expand()
            assert points and len({p.label for p in points}) == len(points), path


def test_the_experiment_key_is_the_model_slug_and_the_backend():
    """One definition of the partition's `experiment` part: the runner, the inbox and the upload check all use it."""
    assert parse_config({"name": "a", "model": "builtin:tiny-llama"}).experiment_key() == "builtin-tiny-llama__pytorch"
    hub = parse_config({"name": "a", "model": "meta-llama/Llama-3.1-8B", "backend": "vllm"})
    assert hub.experiment_key() == "meta-llama-llama-3.1-8b__vllm"  # a hub id: nothing fetched to name it
