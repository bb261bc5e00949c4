"""The strict YAML reader of the files a person writes (experiment files, the instance's notify.yaml): size-limited
regular files, plain values only (no tags that build objects, no aliases), bounded nesting and no duplicate keys.
Every error is a ConfigError naming the file, the line and the fix."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from gpu_ops.errors import ConfigError, excerpt

MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_DEPTH = 20  # a config nests 4 levels; deeper input only serves to exhaust the parser's recursion


class _Refused(yaml.YAMLError):
    """Input the strict loader refuses; `line` is 1-based."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


class _StrictLoader(yaml.SafeLoader):
    """`safe_load` (no tags that build objects) that also refuses aliases (a few hundred bytes of nested aliases
    expand to gigabytes), nesting deeper than MAX_YAML_DEPTH (the composer recurses) and duplicate keys (YAML
    keeps the last one silently)."""

    depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                event.start_mark.line + 1,
                f"YAML alias *{excerpt(event.anchor, bare=True)} is not allowed; "
                "write the value out instead of referring to an anchor",
            )
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise _Refused(
                event.start_mark.line + 1,
                f"nested deeper than {MAX_YAML_DEPTH} levels; an experiment file nests a few levels at most",
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node)
                if key in first:
                    raise _Refused(
                        key_node.start_mark.line + 1,
                        f"duplicate key {excerpt(key)} (first on line {first[key]}); keep one of them",
                    )
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_config_bytes(path: str | Path) -> bytes:
    """An experiment file's bytes: a regular file (not a pipe or device, which would never end), size-limited."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError:
        raise ConfigError(f"{p}: no such file; check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{p}: not a regular file; give the path of a YAML file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {st.st_size} bytes exceeds the {MAX_CONFIG_BYTES}-byte limit for an experiment file")
    with open(p, "rb") as fh:
        data = fh.read(MAX_CONFIG_BYTES + 1)  # the file may grow after the stat
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: exceeds the {MAX_CONFIG_BYTES}-byte limit for an experiment file")
    return data


def parse_yaml(data: bytes, source: str) -> Any:
    """Untrusted YAML text -> plain values (see _StrictLoader); errors name the line and the fix."""
    try:
        return yaml.load(data.decode("utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except _Refused as exc:
        raise ConfigError(f"{source}: line {exc.line}: {exc.message}") from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(
            f"{source}: line {exc.problem_mark.line + 1 if exc.problem_mark else '?'}: "
            f"YAML tag not allowed ({excerpt(exc.problem, bare=True)}); use plain values"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: {where}invalid YAML ({excerpt(problem, bare=True)}); fix the syntax") from None


def read_yaml(path: str | Path) -> Any:
    """An experiment file's values (size-limited, strict YAML)."""
    return parse_yaml(read_config_bytes(path), str(path))
