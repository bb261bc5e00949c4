"""`submit_experiment`: start a benchmark from the Dagster UI. The Launchpad's form is the experiment file's schema,
generated from the config models (gpu_ops.config), and a launch takes exactly the path of a file dropped into the
experiment inbox: the CLI's validation (its one-line message is the run's failure), then the file lands in the inbox,
whose sensor registers its partitions and queues their measurement runs.
"""

import datetime
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from energy_assets.resources import GpuResource, StorageResource
from energy_assets.sensors.automation import InboxExperiment, check_experiment, inbox_names
from gpu_ops.config import NAME_PATTERN, ExperimentConfig, field_docs, submodel
from gpu_ops.errors import UserError
from gpu_ops.results import write_file_atomic
from gpu_ops.strict_yaml import read_config_bytes

LAUNCHER_TAGS = ("dagster/user", "user")
"""Run tags naming who launched a run, first found wins: Dagster+ sets dagster/user; on OSS Dagster add a `user` tag in
the Launchpad."""
CONSTRAINTS = (("ge", "≥ {}"), ("gt", "> {}"), ("le", "≤ {}"), ("lt", "< {}"), ("pattern", "matches {}"))


class _Form:
    """Builds the Dagster config schema of a pydantic model, one Dagster Enum object per Literal field (Dagster refuses
    two config types of one name)."""

    def __init__(self) -> None:
        self.enums: dict[str, dg.Enum] = {}

    def shape(self, model: type[BaseModel]) -> dg.Shape:
        docs = field_docs(model)
        return dg.Shape(
            {name: self.field(model, name, info, docs.get(name, "")) for name, info in model.model_fields.items()}
        )

    def field(self, model: type[BaseModel], name: str, info: FieldInfo, doc: str) -> dg.Field:
        """A model field as a Launchpad field. No default is given to Dagster: what the form submits is what was typed,
        as in a file, so a default that depends on other fields (vLLM's batching strategy) stays the model's to pick.
        The default is named in the description instead, with the field's range."""
        enum_name = model.__name__ + "".join(w.capitalize() for w in name.split("_"))
        config = self.type_of(info.annotation, enum_name)
        notes = [doc.rstrip(".") + "." if doc else ""]
        if not info.is_required() and submodel(info.annotation) is None:
            notes.append(f"Default: {json.dumps(info.get_default(call_default_factory=True))}.")
        bounds = [
            fmt.format(v)
            for m in _metadata(info)
            for key, fmt in CONSTRAINTS
            if (v := getattr(m, key, None)) is not None
        ]
        if bounds:
            notes.append(f"Must be {', '.join(dict.fromkeys(bounds))}.")
        return dg.Field(config, is_required=info.is_required(), description=" ".join(n for n in notes if n))

    def type_of(self, tp: Any, enum_name: str) -> Any:
        """The Dagster config type of an annotation; one without a counterpart is Any (the model still checks it)."""
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            return self.type_of(args[0], enum_name)
        if origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            inner = self.type_of(rest[0], enum_name) if len(rest) == 1 else dg.Any
            return dg.Noneable(inner) if len(rest) < len(args) else inner
        if origin is Literal and all(isinstance(a, str) for a in args):
            if enum_name not in self.enums:
                self.enums[enum_name] = dg.Enum(enum_name, [dg.EnumValue(a) for a in args])
            return self.enums[enum_name]
        if origin is list:
            return dg.Array(self.type_of(args[0], enum_name) if args else dg.Any)
        if origin is dict and args and args[0] is str:
            return dg.Map(str, self.type_of(args[1], enum_name))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return self.shape(tp)
        return {bool: dg.Bool, int: dg.Int, float: dg.Float, str: dg.String}.get(tp, dg.Any)


def _metadata(info: FieldInfo) -> list:
    """A field's constraints, also those of an Annotated inside `X | None` or `list[X]`."""
    found, stack = list(info.metadata), [info.annotation]
    while stack:
        tp = stack.pop()
        if typing.get_origin(tp) is typing.Annotated:
            found += [m for a in typing.get_args(tp)[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        stack += typing.get_args(tp)
    return found


def scaffold(model: type[BaseModel] = ExperimentConfig) -> dict[str, Any]:
    """The smallest valid experiment: each required field's first example from the model."""
    return {name: info.examples[0] for name, info in model.model_fields.items() if info.is_required() and info.examples}


def experiment_form(model: type[BaseModel] = ExperimentConfig) -> dg.Field:
    """The Launchpad's config of the `experiment` op: the experiment file's fields, typed, with their enums, defaults,
    ranges and descriptions, prefilled with a minimal valid experiment."""
    return dg.Field(
        _Form().shape(model),
        default_value=scaffold(model),
        description="An experiment file's fields (the same keys and values as a YAML in the experiment inbox).",
    )


def launcher(tags: dict[str, str]) -> str | None:
    return next((tags[t] for t in LAUNCHER_TAGS if tags.get(t)), None)


def _defines_other_partitions(path: Path, item: InboxExperiment, storage: StorageResource, gpu: GpuResource) -> bool:
    """Whether the inbox file at `path` is a valid experiment of other partitions than `item`'s: replacing a file of the
    same partitions is an edit of that experiment, and replacing an invalid one is what the launch fixes."""
    try:
        other = check_experiment(read_config_bytes(path), path.name, storage, gpu, set())
    except Exception:  # an inbox file is untrusted: whatever is wrong with it, it defines nothing
        return False
    return (other.experiment, other.hardware) != (item.experiment, item.hardware)


@dg.op(
    name="experiment",
    config_schema=experiment_form(),
    description="Validate the experiment as the CLI does and drop it into the experiment inbox; the inbox sensor "
    "registers its partitions and queues their measurements on its next tick.",
)
def experiment(context: dg.OpExecutionContext, storage: StorageResource, gpu: GpuResource) -> dg.Output[None]:
    values = context.op_config
    name = f"{values['name']}.yaml" if re.fullmatch(NAME_PATTERN, str(values.get("name"))) else "experiment.yaml"
    who, when = launcher(context.run.tags), datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    header = f"# Launched from the Dagster Launchpad (run {context.run_id}) by {who or 'an unnamed user'} at {when}.\n"
    text = (header + yaml.safe_dump(values, sort_keys=False)).encode()
    inbox = storage.inbox_dir
    try:
        item = check_experiment(text, name, storage, gpu, inbox_names(inbox))
        if (inbox / name).is_file() and _defines_other_partitions(inbox / name, item, storage, gpu):
            raise UserError(
                f"{name}: the experiment inbox holds another experiment of this name (its partitions differ); choose "
                "another name, or remove that file first"
            )
    except UserError as exc:  # PartitionTaken included
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    digest = item.file_sha
    storage.write_launch(
        {
            "file": name,
            "file_sha": digest,
            "via": "launchpad",
            "launched_by": who,
            "launched_at": when,
            "launch_run_id": context.run_id,
        }
    )
    write_file_atomic(inbox / name, text)
    partitions = [f"{item.experiment}|{hw}" for hw in item.hardware]
    context.log.info(f"{name} is in the experiment inbox: {', '.join(partitions)} queued on the sensor's next tick")
    return dg.Output(
        None,
        metadata={
            "inbox_file": name,
            "file_sha": digest,
            "experiment_hash": item.cfg.config_hash(),
            "partitions": ", ".join(partitions),
            "sweep_points": len(item.cfg.expand()),
            "schedule": dg.MetadataValue.json(item.cfg.schedule.model_dump(mode="json"))
            if item.cfg.schedule
            else "none",
        },
    )


@dg.job(
    name="submit_experiment",
    description="Start a benchmark from the Launchpad: fill in the experiment (each field's type, choices, default "
    "and meaning are shown beside the editor) and launch. A refused experiment fails this run with the CLI's message "
    "and registers nothing.",
)
def submit_experiment():
    experiment()
