"""The GPU session plan (benchmarks/plan.yaml): the open evidence, one stage per item, each run through the ledger
with its target, in priority order, within a device budget.

On the GPU machine (benchmarks/gpu_session.sh starts and polls it):
    python -m benchmarks.plan run --root /tmp/lem-session --budget-s 1500   # in the background (setsid)
    python -m benchmarks.plan pack --root /tmp/lem-session --out $OUT       # <= 8 files: what exists so far
Here, after the session:
    python -m benchmarks.plan unpack FILES_AT          # checks every file against the ledger, then merges
    python -m benchmarks.plan show                     # order, expected device seconds, done / open per GPU model

A stage is done on a GPU model when the ledger holds an `ok` run of its id on that model; `run` skips those, and
stages whose expected device time no longer fits the budget (each skip is a progress line, so the next session
starts there).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.ledger import LEDGER, REPO, Ledger, LedgerError, ledger_path, merge, raw_root

PLAN = REPO / "benchmarks" / "plan.yaml"
GPU_MODELS = ("H100", "H200")
PART_BYTES = 15 << 20  # the device returns files of at most 16 MiB
MAX_FILES = 8
KEYS = {"id", "item", "what", "command", "target", "device_s", "timeout_s", "where"}


@dataclass(frozen=True)
class Stage:
    id: str
    item: str
    what: str
    command: str | None
    target: str | None  # the first of `targets`
    device_s: int
    timeout_s: int
    where: str = "gpu"
    targets: tuple[str, ...] = ()  # `target:` in plan.yaml, one file or a list (a stage with several goals)

    def argv(self, python: str = sys.executable) -> list[str]:
        return shlex.split(self.command.replace("{python}", shlex.quote(python)))


def load(path: Path = PLAN) -> list[Stage]:
    data = yaml.safe_load(Path(path).read_text())
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, list) or not stages:
        raise LedgerError(f"{path}: expected `stages:`, a list of stages")
    out, seen = [], set()
    for i, s in enumerate(stages):
        where = f"{path}: stage {i}"
        if not isinstance(s, dict) or set(s) - KEYS or not {"id", "item", "what", "device_s", "timeout_s"} <= set(s):
            raise LedgerError(f"{where}: give id, item, what, command, target, device_s, timeout_s (and where)")
        if s["id"] in seen:
            raise LedgerError(f"{where}: id {s['id']!r} twice")
        seen.add(s["id"])
        targets = tuple(s["target"] if isinstance(s.get("target"), list) else [s["target"]] if s.get("target") else [])
        for t in targets:
            if not (REPO / t).is_file():
                raise LedgerError(f"{where}: target {t} does not exist; declare it before the stage runs")
        fields = {k: s.get(k) for k in KEYS if k in s or k in ("command", "target")}
        out.append(Stage(**{**fields, "target": targets[0] if targets else None, "targets": targets}))
    return out


def gpu_model(run) -> str | None:
    """H100 or H200 from a run's device record; None on the CPU."""
    names = [g["name"] for g in run.started.get("device", {}).get("gpus", [])]
    return next((m for m in GPU_MODELS for n in names if m in n), None)


def status(stages: list[Stage], book: Ledger) -> dict[str, dict[str, str]]:
    """stage id -> {GPU model (or 'cpu'): the latest run's status there}."""
    out: dict[str, dict[str, str]] = {s.id: {} for s in stages}
    for run in book.runs:
        if run.id in out:
            out[run.id][gpu_model(run) or "cpu"] = run.status
    return out


def known_runs() -> Ledger:
    """The committed ledger and, on a GPU machine, the session's own (LEM_LEDGER): what has been done anywhere."""
    book = Ledger.load(LEDGER)
    if ledger_path().resolve() != LEDGER.resolve():
        book.runs += Ledger.load(ledger_path()).runs
    return book


def progress(root: Path, text: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {text}"
    print(line, flush=True)
    with open(root / "progress", "a") as fh:
        fh.write(line + "\n")


def this_gpu_model() -> str | None:
    from benchmarks.ledger import device

    names = [g["name"] for g in device()["gpus"]]
    return next((m for m in GPU_MODELS for n in names if m in n), None)


def select(stages: list, only: list[str] | None, start_at: str | None, plan: Path = PLAN) -> list:
    """The stages a session runs: all from `start_at`, or `only` those, in the order given (a session that lists its
    stages means that order: §21 lost one to plan order)."""
    ids = [s.id for s in stages]
    if start_at and only:
        raise LedgerError("--from and --only together: give one (--only lists the stages in the order to run them)")
    if start_at:
        if start_at not in ids:
            raise LedgerError(f"--from {start_at}: not a stage of {plan} ({', '.join(ids)})")
        return stages[ids.index(start_at) :]
    if only:
        unknown = [i for i in only if i not in ids]
        if unknown:
            raise LedgerError(f"--only {','.join(unknown)}: not a stage of {plan} ({', '.join(ids)})")
        by_id = {s.id: s for s in stages}
        return [by_id[i] for i in dict.fromkeys(only)]
    return stages


def run(root: Path, budget_s: float, only: list[str] | None, start_at: str | None, plan: Path = PLAN) -> int:
    """Every open stage in order, each `python -m benchmarks.ledger run` in its own process (a crash or timeout of
    one leaves its record and the next goes on)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        stages = select(load(plan), only, start_at, plan)
    except LedgerError as exc:  # where gpu_session.sh's `wait` looks, and ended, so that it does not wait for nothing
        progress(root, f"refused: {exc}")
        (root / "all.done").touch()
        raise
    model = this_gpu_model()
    done = status(stages, known_runs())
    t0 = time.monotonic()
    progress(root, f"plan on {model or 'cpu'}, budget {budget_s:.0f} s")
    for s in stages:
        left = budget_s - (time.monotonic() - t0)
        here = "a GPU" if model else "no GPU"
        reason = (
            "no command (a slot for the lead)" if not s.command
            else f"runs where={s.where}, this machine has {here}" if (s.where == "gpu") != bool(model)
            else f"done on {model or 'cpu'} already" if not only and done[s.id].get(model or "cpu") == "ok"
            else f"~{s.device_s} s expected, {left:.0f} s left" if s.device_s > left
            else None
        )  # fmt: skip
        if reason:
            progress(root, f"skip  {s.id}: {reason}")
            continue
        # a stage is stopped before the session's device time ends, so that its ledger record ends and its raw
        # folder is packed (a machine taken back mid-stage brings nothing home: docs/benchmarks §15)
        timeout = min(s.timeout_s, int(left))
        progress(root, f"start {s.id} (item {s.item}, ~{s.device_s} s expected, stopped after {timeout} s)")
        t = time.monotonic()
        cmd = [sys.executable, "-m", "benchmarks.ledger", "run", "--id", s.id, "--timeout", str(timeout)]
        cmd += [a for t in s.targets for a in ("--target", t)]
        cmd += ["--", *s.argv()]
        with open(root / f"{s.id}.console", "ab") as console:
            code = subprocess.run(cmd, cwd=REPO, stdout=console, stderr=subprocess.STDOUT).returncode
        progress(root, f"done  {s.id} exit {code} {time.monotonic() - t:.0f} s")
    progress(root, "plan done")
    (root / "all.done").touch()
    return 0


def pack(root: Path, out: Path) -> list[Path]:
    """The session so far as at most MAX_FILES files under `out`: its ledger (LEM_LEDGER, which gpu_session.sh points
    into the session folder) and progress as they are, and one tarball of the ledger and the raw folders
    (LEM_RAW_ROOT) in parts of PART_BYTES."""
    out.mkdir(parents=True, exist_ok=True)
    ledger, runs = ledger_path(), raw_root()
    written = []
    for src in (ledger, root / "progress"):
        if src.is_file():
            (out / src.name).write_bytes(src.read_bytes())
            written.append(out / src.name)
    with tempfile.TemporaryDirectory() as tmp:
        tgz = Path(tmp) / "session.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            if ledger.is_file():
                tar.add(ledger, "ledger.jsonl")
            if runs.is_dir():
                tar.add(runs, "runs")
        data = tgz.read_bytes()
    parts = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
    room = MAX_FILES - len(written)
    if len(parts) > room:
        note = out / "NOT-PACKED.txt"
        note.write_text(f"session.tgz is {len(data)} bytes, {len(parts)} parts; {room - 1} fit: rerun pack after "
                        "removing result folders from runs/ or raise the part size\n")  # fmt: skip
        return [*written, note]
    for i, part in enumerate(parts):
        path = out / f"session.tgz.{i:02d}"
        path.write_bytes(part)
        written.append(path)
    return written


def unpack(folder: Path) -> list[str]:
    """A returned session (its session.tgz.NN parts) merged into docs/benchmarks: ledger records appended and raw
    files copied, each checked against its sha256 (benchmarks.ledger.merge)."""
    parts = sorted(Path(folder).glob("session.tgz.[0-9][0-9]"))
    if not parts:
        raise LedgerError(f"{folder}: no session.tgz.NN parts; run `gpu_session.sh pack` on the device first")
    with tempfile.TemporaryDirectory() as tmp:
        tgz = Path(tmp) / "session.tgz"
        with open(tgz, "wb") as fh:
            for p in parts:
                fh.write(p.read_bytes())
        with tarfile.open(tgz) as tar:
            tar.extractall(Path(tmp) / "session", filter="data")
        return merge(Path(tmp) / "session" / "ledger.jsonl", Path(tmp) / "session" / "runs", ledger_path(), raw_root())


def show(plan: Path = PLAN) -> None:
    stages = load(plan)
    done = status(stages, known_runs())
    total = 0
    print(f"{'stage':<26} {'item':<4} {'device s':>8} {'cum s':>6}  " + "  ".join(f"{m:<11}" for m in GPU_MODELS))
    for s in stages:
        total += s.device_s
        states = "  ".join(f"{done[s.id].get(m, '-'):<11}" for m in GPU_MODELS)
        print(f"{s.id:<26} {s.item:<4} {s.device_s:>8} {total:>6}  {states}  {'' if s.command else '(slot)'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plan", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the open stages in order (on the GPU machine, in the background)")
    r.add_argument("--root", type=Path, required=True, help="the session folder (progress, consoles)")
    r.add_argument("--budget-s", type=float, default=1500, help="device seconds this session may spend on stages")
    r.add_argument("--only", help="comma-separated stage ids, run in this order (reruns them even if done)")
    r.add_argument("--from", dest="start_at", help="start at this stage")
    p = sub.add_parser("pack", help="the session so far into <= 8 files under --out")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/lem-out")))
    u = sub.add_parser("unpack", help="merge a returned session into docs/benchmarks")
    u.add_argument("folder", type=Path)
    sub.add_parser("show", help="the plan with each stage's state per GPU model")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            only = [i.strip() for i in args.only.split(",") if i.strip()] if args.only else None
            return run(args.root, args.budget_s, only, args.start_at)
        if args.cmd == "pack":
            for path in pack(args.root, args.out):
                print(f"{path} {path.stat().st_size} bytes")
        elif args.cmd == "unpack":
            merged = unpack(args.folder)
            print(f"merged {len(merged)} run(s); now: python -m benchmarks.report")
        else:
            show()
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
