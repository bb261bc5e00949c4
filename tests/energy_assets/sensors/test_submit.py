"""The Launchpad's experiment form (submit_experiment): its schema is the config models', and a launch takes the path
of an inbox file: the CLI's validation and message, then the inbox's registration and queueing."""

import typing
from typing import Literal

import dagster as dg
import pytest
import yaml

from energy_assets.resources import GpuResource
from energy_assets.sensors.automation import LAUNCHED_BY_TAG, build_schedules, experiment_inbox
from energy_assets.sensors.submit import experiment_form, scaffold, submit_experiment
from gpu_ops import cli
from gpu_ops.config import ExperimentConfig, field_docs, parse_config
from tests.energy_assets.conftest import HW, experiment_yaml
from tests.energy_assets.sensors.test_automation import evaluate
from tests.gpu_ops.test_runner import BASE


def launch(storage, instance, config: dict | None, tags: dict | None = None):
    """submit_experiment as the Launchpad launches it: the editor's config, the run's tags."""
    run_config = {"ops": {"experiment": {"config": config}}} if config is not None else {}
    return submit_experiment.execute_in_process(
        run_config=run_config,
        resources={"storage": storage, "gpu": GpuResource()},
        instance=instance,
        raise_on_error=False,
        tags=tags or {},
    )


def walk(model, shape: dg.Shape, path=""):
    """(dotted field, its docstring line, pydantic field, Dagster field) of every field, nested blocks included."""
    docs = field_docs(model)
    for name, info in model.model_fields.items():
        field = shape.fields[name]
        yield f"{path}{name}", docs[name], info, field
        inner = field.config_type.inner_type if isinstance(field.config_type, dg.Noneable) else None
        sub = next(
            (a for a in [info.annotation, *typing.get_args(info.annotation)] if hasattr(a, "model_fields")), None
        )
        if sub is not None:
            yield from walk(sub, inner or field.config_type, f"{path}{name}.")


def test_the_form_is_the_config_models():
    form = experiment_form().config_type
    fields = list(walk(ExperimentConfig, form))
    assert len(fields) > 80  # every field of every block
    for path, doc, info, field in fields:
        assert doc and field.description.startswith(doc.rstrip(".")), f"{path}: not the model's description"
        assert field.is_required == info.is_required(), path
        assert not field.default_provided, f"{path}: a Dagster default would be submitted as if typed"
    by_path = {p: f for p, _, _, f in fields}
    assert [v.config_value for v in by_path["backend"].config_type.enum_values] == ["pytorch", "vllm", "tensorrt"]
    assert [v.config_value for v in by_path["decoder.preset"].config_type.enum_values] == [
        "deterministic",
        "standard",
        "creative",
        "factual",
    ]
    assert by_path["precision"].description.startswith(field_docs(ExperimentConfig)["precision"])
    assert 'Default: "fp32".' in by_path["precision"].description
    assert "Must be ≥ 1, ≤ 4096." in by_path["batching.batch_size"].description
    assert isinstance(by_path["vllm"].config_type, dg.Noneable)
    assert isinstance(by_path["sweep"].config_type, dg.Map)
    assert [v.config_value for v in by_path["schedule.days"].config_type.inner_type.enum_values][:2] == ["mon", "tue"]


def test_a_field_added_to_the_models_appears_in_the_form():
    class Extended(ExperimentConfig):
        """An experiment with one more key.

        Attributes:
            grid_region: where the electricity comes from, for the carbon figure.
        """

        grid_region: Literal["eu-north", "us-east"] = "eu-north"

    before, after = experiment_form().config_type.fields, experiment_form(Extended).config_type.fields
    assert "grid_region" not in before and set(after) - set(before) == {"grid_region"}
    field = after["grid_region"]
    assert [v.config_value for v in field.config_type.enum_values] == ["eu-north", "us-east"]
    assert field.description == 'where the electricity comes from, for the carbon figure. Default: "eu-north".'
    assert not field.is_required


def test_the_scaffold_is_a_valid_minimal_experiment(storage, instance):
    default = experiment_form().default_value
    assert default == scaffold() == {"name": "my-experiment", "model": "builtin:tiny-llama"}
    parse_config(default)
    result = launch(storage, instance, None)  # the Launchpad as it opens: nothing changed
    assert result.success and (storage.inbox_dir / "my-experiment.yaml").is_file()


BAD = dict(BASE, name="bad", batching={"batch_size": 0}, traffic={"mode": "poisson"})


@pytest.mark.parametrize(
    "config",
    [
        BAD,
        dict(BASE, name="bad", min_output_tokens=64),
        dict(BASE, name="bad", sweep={"batching.batch_size": [1, 99999]}),
        dict(BASE, name="bad-name!"),
    ],
    ids=["ranges", "cross-field", "sweep-point", "name"],
)
def test_a_bad_experiment_fails_with_the_clis_message_and_registers_nothing(
    config, storage, instance, tmp_path, monkeypatch, capsys
):
    result = launch(storage, instance, config)
    assert not result.success
    message = result.failure_data_for_node("experiment").user_failure_data.description
    # the same content as a file of the name the form gives it, through the CLI
    name = f"{config['name']}.yaml" if config["name"] != "bad-name!" else "experiment.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()  # Dagster's log of the run
    assert cli.main(["show-config", name]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert all(line.startswith(name) for line in message.splitlines())  # one line per error, naming the file
    assert list(storage.inbox_dir.iterdir()) == [] and list(storage.experiments_dir.iterdir()) == []
    assert list(storage.launches_dir.iterdir()) == [] and instance.get_dynamic_partitions("experiment") == []


def test_a_launch_that_would_take_another_files_partition_is_refused(storage, instance):
    (storage.inbox_dir / "other.yaml").write_text(experiment_yaml("other", "builtin:tiny-llama"))
    evaluate(experiment_inbox, instance, storage=storage, gpu=GpuResource())  # the inbox registers other.yaml
    result = launch(storage, instance, dict(BASE, name="mine"))
    message = result.failure_data_for_node("experiment").user_failure_data.description
    assert f"partition builtin-tiny-llama__pytorch|{HW} is defined by other.yaml" in message
    assert not (storage.inbox_dir / "mine.yaml").exists()
    # an inbox file of that name for other partitions (hardware h200) is not replaced
    (storage.inbox_dir / "mine.yaml").write_text(experiment_yaml("mine", "builtin:small-llama", hardware=["h200"]))
    result = launch(storage, instance, dict(BASE, name="mine", model="builtin:small-llama"))
    message = result.failure_data_for_node("experiment").user_failure_data.description
    assert message.startswith("mine.yaml: the experiment inbox holds another experiment of this name")
    assert "h200" in (storage.inbox_dir / "mine.yaml").read_text()


def test_a_launch_is_registered_and_queued_by_the_inbox_with_who_and_when(storage, instance):
    config = dict(
        BASE,
        name="from-the-form",
        sweep={"batching.batch_size": [1, 4]},
        schedule={"interval": "weekly", "at": "02:30", "days": ["sun"]},
    )
    result = launch(storage, instance, config, tags={"dagster/user": "alice@example.org"})
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    shown = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert shown["partitions"] == f"builtin-tiny-llama__pytorch|{HW}" and shown["sweep_points"] == 2
    assert shown["schedule"] == {"interval": "weekly", "at": "02:30", "days": ["sun"]}  # the model's own dump
    assert list(storage.experiments_dir.iterdir()) == []  # the inbox registers it, as any file
    r = evaluate(experiment_inbox, instance, storage=storage, gpu=GpuResource())
    [request] = r.run_requests
    key = f"builtin-tiny-llama__pytorch|{HW}"
    assert request.partition_key == key and request.tags["lem/experiment_file"] == "from-the-form.yaml"
    assert request.tags[LAUNCHED_BY_TAG] == "alice@example.org"
    stored = storage.load_experiment("builtin-tiny-llama__pytorch", HW)
    assert stored == parse_config(config) and len(stored.expand()) == 2
    origin = storage.experiment_origin("builtin-tiny-llama__pytorch", HW)
    assert origin["launched_by"] == "alice@example.org" and origin["launch_run_id"] == result.run_id
    assert origin["via"] == "launchpad" and origin["launched_at"] <= origin["registered_at"]
    assert [s.cron_schedule for s in build_schedules(storage)] == ["30 2 * * 0"]
    # a file dropped by hand has no launcher: its origin says so
    (storage.inbox_dir / "dropped.yaml").write_text(experiment_yaml("dropped", "builtin:small-llama"))
    evaluate(experiment_inbox, instance, cursor=r.cursor, storage=storage, gpu=GpuResource())
    origin = storage.experiment_origin("builtin-small-llama__pytorch", HW)
    assert origin["via"] == "inbox" and origin.get("launched_by") is None and origin["file"] == "dropped.yaml"
