"""The how-to pages quote commands and files: each quoted `llm-energy-measure` command parses with the CLI's own
parser, each extra named exists, each experiment file is valid, and the own-GPU file goes through show-config and a
dry run as the page says."""

import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from gpu_ops.cli import build_parser, main
from gpu_ops.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("docs/own-gpu.md", "docs/synthetic-models.md")


def blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / page).read_text(), flags=re.S)


def commands(page: str) -> list[str]:
    lines = [line.split("  #")[0].strip() for block in blocks(page, "bash") for line in block.splitlines()]
    return [line for line in lines if line]


@pytest.mark.parametrize("page", PAGES)
def test_quoted_cli_commands_parse(page):
    cli = [c for c in commands(page) if c.startswith("llm-energy-measure ")]
    assert cli
    for command in cli:
        args = shlex.split(command.replace("<folder>", "folder"))[1:]
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:  # argparse refuses an unknown command or option
            pytest.fail(f"{page}: `{command}` does not parse ({exc})")


@pytest.mark.parametrize("page", PAGES)
def test_quoted_tools_and_extras_exist(page):
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for command in commands(page):
        for named in re.findall(r"llm-energy-measure\[([\w,-]+)\]", command):
            assert set(named.split(",")) <= set(extras), command
        if command.startswith("hf "):
            assert (Path(sys.executable).parent / "hf").exists(), "the hub extra's `hf` command is missing"


@pytest.mark.parametrize("page", PAGES)
def test_quoted_experiment_files_are_valid(page):
    files = blocks(page, "yaml")
    assert files
    for text in files:
        parse_config(yaml.safe_load(text), page)


def test_the_own_gpu_file_goes_through_show_config_and_a_dry_run(tmp_path, capsys, monkeypatch):
    import gpu_ops.energy as energy

    monkeypatch.setattr(energy, "load_nvml", lambda: (None, "no NVIDIA driver"))
    (text,) = blocks("docs/own-gpu.md", "yaml")
    path = tmp_path / "llama-1b.yaml"
    path.write_text(text)
    assert main(["show-config", str(path)]) == 0
    assert main(["run", str(path), "--dry-run"]) == 0  # not downloaded here: the sweep still prints
    out = capsys.readouterr().out
    assert "3 sweep point(s)" in out


def test_every_synthetic_architecture_names_its_source_as_the_page_asks():
    from gpu_ops.models import ARCHITECTURES

    for path in Path(str(ARCHITECTURES)).glob("*.json"):
        assert '"_source"' in path.read_text(), path.name
