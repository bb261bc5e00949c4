"""The run ledger records every run by itself: success, failure, a timeout, a signal, and a run killed with the
ledger (its `started` line stays); raw output is kept byte for byte; a session's runs come home only when every file
matches its recorded sha256."""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import ledger as L
from tests.fake_nvml import FakeGpu, FakeNVML

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_successful_run_is_recorded_with_its_raw_files_byte_for_byte(tmp_path):
    ledger, raw = tmp_path / "ledger.jsonl", tmp_path / "runs"
    script = (
        "import sys, pathlib; sys.stdout.buffer.write(b'progress 50%\\rprogress 100%\\n\\xff'); "
        "sys.stderr.write('warn\\n'); pathlib.Path(sys.argv[1], 'result.json').write_text('{}')"
    )
    code, ended = L.run("demo-ok", [PY, "-c", script, "{run_dir}"], ledger=ledger, raw_root=raw, echo=False)
    started, end = lines(ledger)
    assert code == 0 and started["event"] == "started" and end == ended
    assert (end["status"], end["exit_code"], end["signal"]) == ("ok", 0, None)
    assert started["command"][-1] == "{run_dir}"  # recorded as given, portable between machines
    assert started["git"]["source"] == "git" and len(started["git"]["commit"]) == 40
    assert started["versions"]["python"] and started["versions"]["llm-energy-measure"]
    assert started["device"]["kind"] in ("cpu", "gpu") and started["start"].endswith("Z")
    run_dir = raw / started["raw_dir"]
    assert (run_dir / "stdout.log").read_bytes() == b"progress 50%\rprogress 100%\n\xff"
    assert (run_dir / "stderr.log").read_bytes() == b"warn\n"
    files = {f["path"]: f["sha256"] for f in end["files"]}
    assert set(files) == {f"{started['raw_dir']}/{n}" for n in ("stdout.log", "stderr.log", "result.json")}
    for path, sha in files.items():
        assert hashlib.sha256((raw / path).read_bytes()).hexdigest() == sha


def test_the_settings_that_change_a_run_are_recorded_and_secrets_never(tmp_path, monkeypatch):
    """Session 12 reran a stage with VLLM_WORKER_MULTIPROC_METHOD=spawn: the record must say so by itself."""
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    monkeypatch.setenv("LEM_ENGINE_START_TIMEOUT_S", "900")
    monkeypatch.setenv("LEM_SIGNING_KEY_FILE", "/keys/lem.pem")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("VLLM_API_KEY", "sk-secret")
    monkeypatch.setenv("LEM_CELERY_BROKER", "redis://:secretpw@127.0.0.1:6379/3")
    monkeypatch.setenv("LEM_HF_ENDPOINT", "https://user:secret@hub.example")
    ledger = tmp_path / "ledger.jsonl"
    L.run("demo-settings", [PY, "-c", "pass"], ledger=ledger, raw_root=tmp_path / "runs", echo=False)
    started = lines(ledger)[0]
    assert started["settings"]["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert started["settings"]["LEM_ENGINE_START_TIMEOUT_S"] == "900"
    assert started["settings"]["LEM_CELERY_BROKER"] == "redis://***@127.0.0.1:6379/3"
    assert started["settings"]["LEM_HF_ENDPOINT"] == "https://***@hub.example"
    text = ledger.read_text()
    assert "secret" not in text and "HF_TOKEN" not in text and "KEY" not in "".join(started["settings"])


def test_a_failing_command_is_recorded_with_its_exit_code(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    code, ended = L.run("demo-fail", [PY, "-c", "raise SystemExit(3)"], ledger=ledger, raw_root=tmp_path, echo=False)
    assert code == 3 and (ended["status"], ended["exit_code"]) == ("failed", 3)
    assert L.Ledger.load(ledger).runs[0].status == "failed"


def test_a_command_that_does_not_start_is_recorded_as_failed(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    code, ended = L.run(
        "demo-missing", [str(tmp_path / "no-such-binary")], ledger=ledger, raw_root=tmp_path, echo=False
    )
    assert code == 127 and ended["status"] == "failed"
    assert "did not start" in (tmp_path / L.Ledger.load(ledger).runs[0].raw_dir / "stderr.log").read_text()


def test_a_timeout_stops_the_command_and_is_recorded(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    code, ended = L.run(
        "demo-slow", [PY, "-c", "import time; time.sleep(60)"], ledger=ledger, raw_root=tmp_path, timeout_s=0.5,
        echo=False,
    )  # fmt: skip
    assert (ended["status"], ended["signal"], code) == ("timeout", "SIGTERM", 128 + signal.SIGTERM)
    assert ended["duration_s"] < 30


@pytest.mark.parametrize("inherited", ["ignored", "blocked"])
def test_a_command_is_stoppable_whatever_its_parent_ignores_or_blocks(tmp_path, inherited):
    """In CI a test worker passed on a SIGTERM its commands never obeyed: every stop ended in SIGKILL after 15 s."""
    if inherited == "ignored":
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        code, ended = L.run(
            "demo-deaf", [PY, "-c", "import time; time.sleep(60)"], ledger=tmp_path / "l.jsonl", raw_root=tmp_path,
            timeout_s=0.5, echo=False,
        )  # fmt: skip
    finally:
        if inherited == "ignored":
            signal.signal(signal.SIGTERM, previous)
        else:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    assert code == 128 + signal.SIGTERM and ended["duration_s"] < L.KILL_GRACE_S


def start_ledger(tmp_path: Path, child: str) -> subprocess.Popen:
    """The ledger CLI running `child`, echoing its output: the test reads 'ready' from it before signalling."""
    cmd = [PY, "-m", "benchmarks.ledger", "--ledger", str(tmp_path / "ledger.jsonl"), "--raw-root", str(tmp_path)]
    cmd += ["run", "--id", "demo-killed", "--", PY, "-c", child]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"ready\n"
    return proc


CHILD = (
    "import time, os, pathlib; pathlib.Path(os.environ['LEM_RUN_DIR'], 'pid').write_text(str(os.getpid())); "
    "print('ready', flush=True); time.sleep(120)"
)


def test_a_signal_to_the_ledger_stops_the_command_and_still_ends_its_record(tmp_path):
    proc = start_ledger(tmp_path, CHILD)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    run = L.Ledger.load(tmp_path / "ledger.jsonl").runs[0]
    assert (run.status, run.ended["signal"]) == ("killed", "SIGTERM")
    pid = int((tmp_path / run.raw_dir / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # the command went with it (its process group was signalled)
        os.kill(pid, 0)
    assert (tmp_path / run.raw_dir / "stdout.log").read_bytes() == b"ready\n"  # partial output kept


def test_a_run_killed_with_the_ledger_keeps_its_started_line(tmp_path):
    proc = start_ledger(tmp_path, CHILD)
    proc.kill()  # SIGKILL: no handler runs, as when a machine is taken back
    proc.wait(60)
    run = L.Ledger.load(tmp_path / "ledger.jsonl").runs[0]
    os.kill(int((tmp_path / run.raw_dir / "pid").read_text()), signal.SIGKILL)  # the orphan, ours to end
    assert (run.status, run.ended) == ("never-ended", None)
    assert run.started["command"][-1] == CHILD


def test_the_target_is_recorded_and_a_bad_one_refused_before_anything_runs(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    target = REPO / "benchmarks" / "targets" / "parity-256.yaml"
    L.run("demo-target", [PY, "-c", "pass"], target=target, ledger=ledger, raw_root=tmp_path, echo=False)
    recorded = lines(ledger)[0]["target"]
    assert recorded["path"] == "benchmarks/targets/parity-256.yaml" and recorded["committed"] is True
    assert recorded["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest() and recorded["text"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(target.read_text().replace("statistic: median", "statistic: mode"))
    with pytest.raises(ValueError, match="statistic 'mode' is not one of"):
        L.run("demo-bad", [PY, "-c", "pass"], target=bad, ledger=ledger, raw_root=tmp_path, echo=False)
    assert len(lines(ledger)) == 2 and not (tmp_path / "demo-bad").exists()


def test_without_git_the_commit_comes_from_the_session(tmp_path):
    env = {"LEM_GIT_COMMIT": "0123abcd", "LEM_GIT_DIRTY": "1"}
    assert L.git_state(tmp_path, env) == {"commit": "0123abcd", "dirty": True, "source": "env"}
    assert L.git_state(tmp_path, {}) == {"commit": None, "dirty": None, "source": "unknown"}


def test_the_sessions_commit_wins_over_a_stale_git_in_the_copy(tmp_path):
    """Session 10's GPU copy carried a .git naming an older commit: the ledger recorded that one, dirty."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.py"], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"], check=True
    )
    assert L.git_state(tmp_path, {})["source"] == "git"
    env = {"LEM_GIT_COMMIT": "5c510c07", "LEM_GIT_DIRTY": "0"}
    assert L.git_state(tmp_path, env) == {"commit": "5c510c07", "dirty": False, "source": "env"}


def test_the_device_is_named_with_its_uuid_hashed():
    uuid = "GPU-12345678-aaaa-bbbb-cccc-1234567890ab"
    dev = L.device(FakeNVML([FakeGpu(name="NVIDIA H200", uuid=uuid)]))
    assert dev["kind"] == "gpu" and dev["gpus"][0]["name"] == "NVIDIA H200"
    assert dev["gpus"][0]["uuid_hash"] == hashlib.sha256(uuid.encode()).hexdigest()[:12]
    assert uuid not in json.dumps(dev) and (dev["driver"], dev["cuda_driver"]) == ("580.159.04", "13.0")


def session(tmp_path: Path) -> tuple[Path, Path]:
    """A GPU session's returned folder: one finished run and one that never ended."""
    returned = tmp_path / "returned"
    L.run("s-ok", [PY, "-c", "print('hi')"], ledger=returned / "ledger.jsonl", raw_root=returned / "runs", echo=False)
    lost = {"event": "started", "run": "20261206T000000Z-abcdef", "id": "s-lost", "raw_dir": "s-lost/x"}
    L.append(returned / "ledger.jsonl", lost)
    (returned / "runs" / "s-lost" / "x").mkdir(parents=True)
    (returned / "runs" / "s-lost" / "x" / "stdout.log").write_text("partial\n")
    return returned, tmp_path / "home"


def test_merge_brings_a_sessions_runs_home_and_recovers_one_that_never_ended(tmp_path):
    returned, home = session(tmp_path)
    merged = L.merge(returned / "ledger.jsonl", returned / "runs", home / "ledger.jsonl", home / "runs")
    book = L.Ledger.load(home / "ledger.jsonl")
    assert len(merged) == 2 and [r.status for r in book.runs] == ["ok", "never-ended"]
    assert (home / "runs" / "s-lost" / "x" / "stdout.log").read_text() == "partial\n"
    assert book.runs[1].recovered["files"][0]["path"] == "s-lost/x/stdout.log"
    for path, sha in book.runs[0].files().items():
        assert L.file_sha256(home / "runs" / path) == sha
    assert L.merge(returned / "ledger.jsonl", returned / "runs", home / "ledger.jsonl", home / "runs") == []


def test_merge_refuses_a_changed_file_and_writes_nothing(tmp_path):
    returned, home = session(tmp_path)
    run = L.Ledger.load(returned / "ledger.jsonl").runs[0]
    (returned / "runs" / run.raw_dir / "stdout.log").write_text("edited\n")
    with pytest.raises(L.LedgerError, match="differs from its recorded sha256"):
        L.merge(returned / "ledger.jsonl", returned / "runs", home / "ledger.jsonl", home / "runs")
    assert not (home / "ledger.jsonl").exists() and not (home / "runs").exists()


def test_merge_refuses_a_path_outside_the_raw_folder(tmp_path):
    returned, home = session(tmp_path)
    L.append(returned / "ledger.jsonl", {"event": "ended", "run": "x", "files": [{"path": "../../etc", "sha256": "0"}]})
    with pytest.raises(L.LedgerError, match="points outside"):
        L.merge(returned / "ledger.jsonl", returned / "runs", home / "ledger.jsonl", home / "runs")


def test_amend_records_the_new_target_with_its_reason(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    target = tmp_path / "t.yaml"
    target.write_bytes((REPO / "benchmarks" / "targets" / "parity-256.yaml").read_bytes())
    L.run("demo-amend", [PY, "-c", "pass"], target=target, ledger=ledger, raw_root=tmp_path, echo=False)
    target.write_text(target.read_text().replace("0.97", "0.95"))
    with pytest.raises(L.LedgerError, match="--reason"):
        L.amend(target, "  ", ledger)
    a = L.amend(target, "0.97 cannot be resolved by 10 rounds on this host", ledger)
    assert a["previous_sha256"] == [lines(ledger)[0]["target"]["sha256"]] and "0.95" in a["text"]
    assert L.Ledger.load(ledger).amendments[0]["reason"].startswith("0.97 cannot")


def test_a_ledger_line_that_is_not_a_record_is_refused_with_its_line_number(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"event": "started", "run": "a", "id": "x"}\n[1, 2]\n')
    with pytest.raises(L.LedgerError, match=r"ledger.jsonl:2: expected an object"):
        L.read(ledger)


def test_processes_the_command_leaves_behind_are_stopped(tmp_path):
    """An engine's workers outliving the command would sit on the GPU during the next run."""
    leaver = (
        "import subprocess, sys, pathlib; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "pathlib.Path(sys.argv[1], 'pid').write_text(str(p.pid))"
    )
    ledger = tmp_path / "ledger.jsonl"
    code, ended = L.run("demo-leaver", [PY, "-c", leaver, "{run_dir}"], ledger=ledger, raw_root=tmp_path, echo=False)
    assert code == 0 and ended["stragglers_stopped"] is True
    pid = int((tmp_path / L.Ledger.load(ledger).runs[0].raw_dir / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert (
        L.run("demo-clean", [PY, "-c", "pass"], ledger=ledger, raw_root=tmp_path, echo=False)[1]["stragglers_stopped"]
        is False
    )
