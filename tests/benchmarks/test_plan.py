"""The GPU session plan: every stage declares its target, runs through the ledger in order within the budget, skips
what this machine cannot run or has done, and a session comes home in at most 8 files, checked file by file."""

import re
import sys
from pathlib import Path

import pytest

from benchmarks import plan as P
from benchmarks.ledger import Ledger, LedgerError, read

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_plan_covers_the_open_items_in_order_with_a_target_each():
    stages = P.load()
    assert [s.item for s in stages] == sorted(s.item for s in stages)  # the lead's priority order a..j
    assert {s.item for s in stages} == set("abcdefghij")  # i: per-request energy (#32); j: inbox load (#30, CPU)
    for s in stages:
        assert s.target and (REPO / s.target).is_file(), s.id
        assert s.command is None or "{python}" in s.command, s.id
        assert s.device_s >= 0 and s.timeout_s > s.device_s, s.id
    assert {s.id for s in stages} >= {"parity-256", "parity-64", "meter-overhead-compiled", "meter-overhead-vllm"}


def write_plan(tmp_path: Path, stages: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text("stages:\n" + stages)
    return path


STAGES = """
  - {id: t-gpu, item: a, what: needs a GPU, command: "{python} -c pass", target: benchmarks/targets/jpt-cv-5pct.yaml,
     device_s: 10, timeout_s: 60}
  - {id: t-slot, item: b, what: not wired, command: null, target: benchmarks/targets/jpt-cv-5pct.yaml, device_s: 10,
     timeout_s: 60, where: cpu}
  - {id: t-cpu, item: c, what: runs here, command: "{python} -c print(42)", target: benchmarks/targets/parity-64.yaml,
     device_s: 1, timeout_s: 60, where: cpu}
  - {id: t-big, item: d, what: too long, command: "{python} -c pass", target: benchmarks/targets/parity-64.yaml,
     device_s: 5000, timeout_s: 6000, where: cpu}
"""


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setenv("LEM_LEDGER", str(tmp_path / "session" / "ledger.jsonl"))
    monkeypatch.setenv("LEM_RAW_ROOT", str(tmp_path / "session" / "runs"))
    monkeypatch.setattr(P, "this_gpu_model", lambda: None)  # this machine: no GPU
    root = tmp_path / "session"
    P.run(root, budget_s=100, only=None, start_at=None, plan=write_plan(tmp_path, STAGES))
    return root


def test_run_takes_each_open_stage_through_the_ledger_and_says_why_it_skips_the_others(session):
    text = (session / "progress").read_text()
    assert "skip  t-gpu: runs where=gpu, this machine has no GPU" in text
    assert "skip  t-slot: no command (a slot for the lead)" in text
    assert "skip  t-big: ~5000 s expected, " in text
    assert "done  t-cpu exit 0" in text and (session / "all.done").exists()
    assert "start t-cpu (item c, ~1 s expected, stopped after 60 s)" in text
    runs = Ledger.load(session / "ledger.jsonl").runs
    assert [(r.id, r.status) for r in runs] == [("t-cpu", "ok")]
    assert runs[0].started["target"]["path"] == "benchmarks/targets/parity-64.yaml"
    assert (session / "runs" / runs[0].raw_dir / "stdout.log").read_text() == "42\n"


def test_a_stage_done_on_this_machine_is_not_run_again(session, tmp_path):
    P.run(session, budget_s=100, only=None, start_at=None, plan=tmp_path / "plan.yaml")
    assert "skip  t-cpu: done on cpu already" in (session / "progress").read_text()
    assert len(Ledger.load(session / "ledger.jsonl").runs) == 1


def test_pack_and_unpack_bring_the_session_home_checked(session, tmp_path, monkeypatch):
    out = tmp_path / "out"
    files = P.pack(session, out)
    assert 3 <= len(files) <= P.MAX_FILES and (out / "session.tgz.00").is_file()
    home = tmp_path / "home"
    monkeypatch.setenv("LEM_LEDGER", str(home / "ledger.jsonl"))
    monkeypatch.setenv("LEM_RAW_ROOT", str(home / "runs"))
    merged = P.unpack(out)
    assert len(merged) == 1 and read(home / "ledger.jsonl") == read(session / "ledger.jsonl")
    run = Ledger.load(home / "ledger.jsonl").runs[0]
    assert (home / "runs" / run.raw_dir / "stdout.log").read_text() == "42\n"


def test_a_stage_is_stopped_when_the_budget_ends_not_at_its_own_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("LEM_LEDGER", str(tmp_path / "session" / "ledger.jsonl"))
    monkeypatch.setenv("LEM_RAW_ROOT", str(tmp_path / "session" / "runs"))
    monkeypatch.setattr(P, "this_gpu_model", lambda: None)
    slow = """
  - {id: t-slow, item: a, what: outlives the budget, command: "{python} -c 'import time; time.sleep(30)'",
     target: benchmarks/targets/parity-64.yaml, device_s: 1, timeout_s: 600, where: cpu}
"""
    root = tmp_path / "session"
    P.run(root, budget_s=3, only=None, start_at=None, plan=write_plan(tmp_path, slow))
    assert re.search(r"start t-slow \(item a, ~1 s expected, stopped after [0-3] s\)", (root / "progress").read_text())
    (run,) = Ledger.load(root / "ledger.jsonl").runs
    assert run.status == "timeout"  # stopped by the budget (its own timeout is 600 s), and its record still ended


def test_a_plan_naming_a_missing_target_is_refused(tmp_path):
    bad = STAGES.replace("benchmarks/targets/parity-64.yaml", "benchmarks/targets/none.yaml", 1)
    with pytest.raises(LedgerError, match="target benchmarks/targets/none.yaml does not exist"):
        P.load(write_plan(tmp_path, bad))


def test_stage_commands_use_this_interpreter():
    stage = next(s for s in P.load() if s.id == "parity-256")
    argv = stage.argv()
    assert argv[0] == sys.executable and "{run_dir}" in argv and "--rounds" in argv


def test_a_stage_may_name_several_targets_and_the_ledger_records_each(tmp_path, monkeypatch):
    monkeypatch.setenv("LEM_LEDGER", str(tmp_path / "s" / "ledger.jsonl"))
    monkeypatch.setenv("LEM_RAW_ROOT", str(tmp_path / "s" / "runs"))
    monkeypatch.setattr(P, "this_gpu_model", lambda: None)
    plan = write_plan(
        tmp_path,
        """
  - {id: t-two, item: a, what: two goals, command: "{python} -c pass", device_s: 1, timeout_s: 60, where: cpu,
     target: [benchmarks/targets/parity-64.yaml, benchmarks/targets/jpt-cv-5pct.yaml]}
""",
    )
    (stage,) = P.load(plan)
    assert stage.targets == ("benchmarks/targets/parity-64.yaml", "benchmarks/targets/jpt-cv-5pct.yaml")
    P.run(tmp_path / "s", budget_s=100, only=None, start_at=None, plan=plan)
    (run,) = Ledger.load(tmp_path / "s" / "ledger.jsonl").runs
    assert [t["path"] for t in run.targets()] == list(stage.targets) and run.status == "ok"
    missing = write_plan(
        tmp_path,
        STAGES.replace(
            "target: benchmarks/targets/parity-64.yaml",
            "target: [benchmarks/targets/parity-64.yaml, benchmarks/targets/none.yaml]",
            1,
        ),
    )
    with pytest.raises(LedgerError, match="target benchmarks/targets/none.yaml does not exist"):
        P.load(missing)


def test_the_warm_campaign_stage_runs_its_script_under_its_four_targets():
    (stage,) = [s for s in P.load() if s.id == "warm-campaign"]
    assert "-m benchmarks.warm_campaign" in stage.command and "{run_dir}" in stage.command
    names = {Path(t).name for t in stage.targets}
    assert names == {
        "warm-campaign-pass1.yaml",
        "warm-campaign-pass2.yaml",
        "vllm-warm-start.yaml",
        "compare-runs.yaml",
    }


def test_only_runs_the_listed_stages_in_the_order_given_and_refuses_an_unknown_id(tmp_path, monkeypatch):
    monkeypatch.setenv("LEM_LEDGER", str(tmp_path / "s" / "ledger.jsonl"))
    monkeypatch.setenv("LEM_RAW_ROOT", str(tmp_path / "s" / "runs"))
    monkeypatch.setattr(P, "this_gpu_model", lambda: None)
    two = """
  - {id: t-first, item: a, what: first in the plan, command: "{python} -c pass",
     target: benchmarks/targets/parity-64.yaml, device_s: 1, timeout_s: 60, where: cpu}
  - {id: t-second, item: b, what: second in the plan, command: "{python} -c pass",
     target: benchmarks/targets/parity-64.yaml, device_s: 1, timeout_s: 60, where: cpu}
"""
    plan = write_plan(tmp_path, two)
    P.run(tmp_path / "s", budget_s=100, only=["t-second", "t-first"], start_at=None, plan=plan)
    assert [r.id for r in Ledger.load(tmp_path / "s" / "ledger.jsonl").runs] == ["t-second", "t-first"]
    with pytest.raises(LedgerError, match="--only t-nope: not a stage of"):
        P.run(tmp_path / "s2", budget_s=100, only=["t-first", "t-nope"], start_at=None, plan=plan)
    # said in the progress file and ended there, where gpu_session.sh's `wait` looks
    assert "refused: --only t-nope" in (tmp_path / "s2" / "progress").read_text()
    assert (tmp_path / "s2" / "all.done").exists()
    with pytest.raises(LedgerError, match="--from and --only together"):
        P.run(tmp_path / "s3", budget_s=100, only=["t-first"], start_at="t-second", plan=plan)
