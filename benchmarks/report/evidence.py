"""Blocks of the evidence pipeline itself: the runs the ledger holds with their verdicts, the targets, the GPU session
plan with what is done and what is left per GPU model, the parity runs, and the files assembled by hand."""

from __future__ import annotations

import json
import re
import statistics

from benchmarks.decision import Target, evaluate, parse_target, series_values
from benchmarks.ledger import REPO, Run
from benchmarks.plan import GPU_MODELS, load, status
from benchmarks.report.blocks import Blocks
from benchmarks.report.fmt import bullets, f, g, table
from benchmarks.report.raw import HAND_LINE, Raw, is_hand

blocks = Blocks()
SESSION_S = 1800  # device seconds a session holds
CARRY_S = 90  # carrying vLLM, Dagster and their wheels to a fresh machine (session 7: ~60 s)


def where(run: Run) -> str:
    gpus = run.started["device"].get("gpus") or []
    return f"{len(gpus)}× {gpus[0]['name']}" if gpus else f"CPU ({run.started['device'].get('cpu', '?')})"


def judged_by(raw: Raw, run: Run, recorded: dict) -> tuple[Target, str]:
    """The target a run is judged by: the text the ledger recorded at its start, or an amendment made after it with
    its reason; and a note when the file changed since without one."""
    later = [a for a in raw.ledger().amendments if a["target"] == recorded["path"] and a["at"] > run.started["start"]]
    if later:
        a = later[-1]
        return parse_target(a["text"], recorded["path"]), f"target amended {a['at'][:10]}: {a['reason']}"
    note = ""
    current = REPO / recorded["path"]
    if current.is_file():
        import hashlib

        if hashlib.sha256(current.read_bytes()).hexdigest() != recorded["sha256"]:
            note = "the target file changed after this run with no amendment recorded: judged by the recorded text"
    return parse_target(recorded["text"], recorded["path"]), note


def verdicts(raw: Raw, run: Run) -> list[str]:
    """'met' / 'not met' / 'not evaluable' per target and group, with the interval it rests on (a run with several
    targets: each verdict after its target's name)."""
    records = run.targets()
    if not records:
        return ["no target"]
    if run.status == "never-ended" and not run.recovered:
        return ["not evaluable: the run has no ended record (still running, or killed with the ledger)"]
    raw.note(f"runs/{run.raw_dir}")
    # a meter-overhead run that recorded only the CI half of its goal is shown with the median half beside it
    median = run.id in MEDIAN_STAGES and all(t["path"] != MEDIAN_TARGET for t in records)
    out = []
    for recorded in records:
        target, note = judged_by(raw, run, recorded)
        name = f"{short(recorded['path'])}: " if len(records) > 1 or median else ""
        groups = series_values(target, raw.run_dir(run))
        out += [f"{name}{'' if not k else f'`{k}`: '}{evaluate(target, v).text()}" for k, v in groups.items()]
        out += [note] if note else []
    return out + ([f"{MEDIAN_PREFIX}{median_verdict(raw, run)}"] if median else [])


def short(path: str) -> str:
    return path.removeprefix("benchmarks/targets/")


@blocks("ev-runs")
def ev_runs(raw: Raw) -> str:
    runs = raw.ledger().runs
    if not runs:
        return "_The ledger holds no run yet._"
    rows = []
    for r in runs:
        e = r.ended or {}
        target = ", ".join(short(t["path"]) for t in r.targets()) or "–"
        rows.append([
            r.started["start"][:16].replace("T", " "), f"`{r.id}`", r.started.get("label") or "", where(r),
            r.status, e.get("exit_code", "–"), f(e.get("duration_s"), 0) if e else "–",
            (r.started["git"].get("commit") or "unknown")[:10] + (" (dirty)" if r.started["git"].get("dirty") else ""),
            target, "; ".join(verdicts(raw, r)),
        ])  # fmt: skip
    return table(["start (UTC)", "id", "label", "device", "status", "exit", "s", "commit", "target", "verdict"], rows)


@blocks("ev-targets")
def ev_targets(raw: Raw) -> str:
    rows = []
    for path in sorted((REPO / "benchmarks" / "targets").glob("*.yaml")):
        t = parse_target(path.read_text(), path.name)
        interval = "none (every value)" if t.method == "none" else f"{round(100 * t.level)} % {t.method}"
        rows.append([f"`{path.name}`", t.metric, t.statistic, interval, t.rule_text(), t.min_values])
    return table(["target", "metric", "statistic", "interval", "met when", "values needed"], rows)


@blocks("ev-plan")
def ev_plan(raw: Raw) -> str:
    stages = load()
    done = status(stages, raw.ledger())
    rows, total = [], 0
    for i, s in enumerate(stages, 1):
        total += s.device_s
        states = [
            done[s.id].get(m, "open") if s.where == "gpu" else f"CPU: {done[s.id].get('cpu', 'open')}"
            for m in GPU_MODELS
        ]
        rows.append([i, f"({s.item})", f"`{s.id}`" + ("" if s.command else " (slot: not wired)"), s.what,
                     s.device_s, total, *states])  # fmt: skip
    return table(["order", "item", "stage", "what", "device s", "cumulative", *GPU_MODELS], rows)


@blocks("ev-left")
def ev_left(raw: Raw) -> str:
    stages = [s for s in load() if s.where == "gpu"]
    done = status(stages, raw.ledger())
    budget = SESSION_S - CARRY_S
    items = []
    for m in GPU_MODELS:
        left = [s for s in stages if done[s.id].get(m) != "ok"]
        seconds = sum(s.device_s for s in left)
        sessions, used = 1, 0
        for s in left:  # stages in order, a new session when the next does not fit
            if used + s.device_s > budget:
                sessions, used = sessions + 1, 0
            used += s.device_s
        items.append(
            f"{m}: {len(left)} of {len(stages)} stages open, ~{seconds} device s expected, "
            f"{sessions if left else 0} session(s) of {SESSION_S} s ({CARRY_S} s of each for carrying the wheels); "
            f"the next starts at `{left[0].id}`"
            if left
            else f"{m}: every stage done"
        )
    return bullets(items)


@blocks("ev-parity-cpu-smoke")
def ev_parity_cpu_smoke(raw: Raw) -> str:
    runs = [r for r in raw.ledger().of("parity-cpu-smoke") if r.ended]
    if not runs:
        return "_No run of `parity-cpu-smoke` in the ledger._"
    r = runs[-1]
    rel = f"runs/{r.raw_dir}/result.json"
    data = json.loads(raw.text(rel))
    w = data["workload"]
    rows = [[x["round"], x["first"], f(x["ours"]["tok_s"]), f(x["theirs"]["tok_s"]), g(x["ratio"], 4) if x["ratio"]
             else "–", f(x["ours"]["wall_s"], 0), f(x["theirs"]["wall_s"], 0)] for x in data["rounds"]]  # fmt: skip
    ratios = data["series"]["ratio"]
    head = (
        f"`{w['model']}` {w['dtype']}, {w['prompts']} prompts × {w['input_len']} in / {w['output_len']} out, "
        f"max_num_seqs {w['max_num_seqs']}, eager {w['enforce_eager']}, on {where(r)} (ledger run `{r.uid}`, "
        f"status {r.status}); median ratio {g(statistics.median(ratios), 4) if ratios else '–'}; verdict: "
        + "; ".join(verdicts(raw, r))
    )
    return (
        head
        + "\n\n"
        + table(["round", "first", "ours tok/s", "theirs tok/s", "ratio", "ours process s", "theirs process s"], rows)
    )


@blocks("ev-parity-gpu")
def ev_parity_gpu(raw: Raw) -> str:
    rows = []
    for stage in ("parity-256", "parity-64"):
        for r in raw.ledger().of(stage):
            rows.append([f"`{stage}`", where(r), r.started["start"][:10], r.status, "; ".join(verdicts(raw, r))])
    if not rows:
        return "_Not run yet: stages `parity-256` and `parity-64` of the plan (§0)._"
    return table(["stage", "device", "date", "status", "verdict"], rows)


@blocks("ev-engine-warm-start")
def ev_engine_warm_start(raw: Raw) -> str:
    """benchmarks/engine_reuse.py per round: ready seconds cold, reused and on warm caches, the engine-start part of
    each, and which caches hit."""
    rows = []
    for r in raw.ledger().of("engine-warm-start"):
        rel = f"runs/{r.raw_dir}/result.json"
        if not (raw.run_dir(r) / "result.json").is_file():
            continue
        data = json.loads(raw.text(rel))
        for backend in ("vllm", "pytorch"):
            for i, x in enumerate(data.get(backend, [])):
                hits = ", ".join(k for k, v in x["warm_caches"].items() if v == "hit") or "none"
                rows.append([f"`{r.uid}`", backend, i, f(x["cold_s"]), f"{f(x['reused_s'], 2)}", f(x["warm_cache_s"]),
                             g(x["ratio"], 3), f(x["cold_start_s"]), f(x["warm_cache_start_s"]), hits])  # fmt: skip
    if not rows:
        return "_Not run yet: stage `engine-warm-start` of the plan (§0)._"
    head = ["run", "backend", "round", "cold s", "reused s", "warm cache s", "warm cache / cold", "of which engine "
            "start, cold s", "of which engine start, warm cache s", "caches hit (warm)"]  # fmt: skip
    return table(head, rows)


# GPU sessions as spans of run uids (they start with the run's UTC start, so they sort in time): a block that
# describes one session reads that session's runs only, so that its prose stays true when later runs land
SESSIONS = {
    12: ("20261207T06", "20261207T10"),
    13: ("20261207T10", "20261207T12"),
    14: ("20261207T14", "20261207T15"),
    15: ("20261207T17", "20261207T18"),
    17: ("20261208T00", "20261208T01"),
}
UP_TO_13 = ("", SESSIONS[13][1])


def runs_of(raw: Raw, stage: str, span: tuple[str, str] = ("", "~")) -> list[Run]:
    """The ledger's runs of `stage` whose uid lies in [span[0], span[1]) (all of them by default)."""
    return [r for r in raw.ledger().of(stage) if span[0] <= r.uid < span[1]]


def result_folders(raw: Raw, stages: tuple[str, ...], span: tuple[str, str] = ("", "~")):
    """(stage, result folder) of every run of `stages` in `span`, in ledger order, each noted as a source."""
    for stage in stages:
        for r in runs_of(raw, stage, span):
            folders = [*(raw.run_dir(r) / "results").glob("*/cycles.parquet"),
                       *(raw.run_dir(r) / "compare" / "runs").glob("*/cycles.parquet")]  # fmt: skip
            for folder in sorted(folders):
                raw.note(f"runs/{r.raw_dir}/{folder.parent.relative_to(raw.run_dir(r)).as_posix()}")
                yield stage, folder.parent


def calibration_rows(
    raw: Raw, stages: tuple[str, ...], steady: bool = False, span: tuple[str, str] = ("", "~")
) -> list[list]:
    """Every cycle window of `stages`' result folders: its counter-vs-timeline difference beside its physics-v1
    tolerance (and, with `steady`, its steady state and batch fill)."""
    import pandas as pd

    rows = []
    for stage, folder in result_folders(raw, stages, span):
        c = pd.read_parquet(folder / "cycles.parquet")
        for _, x in c.iterrows():
            ratio = abs(x["cross_check_rel_diff"]) / x["cross_check_tolerance"]
            extra = []
            if steady:
                extra = steady_cells(x.get("steady_duration_s"), x.get("batch_fill"))
            rows.append([f"`{stage}`", folder.name.split("__")[0], x["sweep_point"], x["cycle"],
                         f(x["duration_s"], 2), *extra, f"{x['cross_check_rel_diff'] * 100:+.2f} %",
                         f"{x['cross_check_tolerance'] * 100:.2f} %", g(ratio, 3),
                         "inside" if ratio <= 1 else "**outside**"])  # fmt: skip
    return rows


CALIBRATION_HEAD = ["(timeline - counter) / counter", "tolerance", "\\|difference\\| / tolerance", "verdict"]


@blocks("ev-calibration")
def ev_calibration(raw: Raw) -> str:
    """calibration-windows: every cycle window's counter-vs-timeline difference beside its physics-v1 tolerance."""
    rows = calibration_rows(raw, ("calibration-windows", "calibration-windows-pytorch"))
    if not rows:
        return "_Not run yet: stage `calibration-windows` of the plan (§0)._"
    return table(["stage", "experiment", "sweep point", "cycle", "window s", *CALIBRATION_HEAD], rows)


@blocks("ev-calibration-since")
def ev_calibration_since(raw: Raw) -> str:
    """physics-v1 on the windows measured after calibration-windows: the long ones (calibration-windows-long) and the
    short ones of request-energy, with each window's steady state and batch fill where vLLM recorded steps."""
    rows = calibration_rows(raw, ("calibration-windows-long", "request-energy"), steady=True, span=UP_TO_13)
    if not rows:
        return "_Not run yet: stages `calibration-windows-long` and `request-energy` of the plan (§0)._"
    return steady_calibration_table(rows)


def session_calibration(raw: Raw, stages: tuple[str, ...], session: int) -> str:
    """physics-v1 on the windows `stages` measured in GPU session `session`, with steady state and batch fill."""
    rows = calibration_rows(raw, stages, steady=True, span=SESSIONS[session])
    if not rows:
        return f"_Not run yet: {', '.join(f'`{x}`' for x in stages)} in session {session}._"
    return steady_calibration_table(rows)


def steady_cells(steady_s, fill) -> list[str]:
    """A window's steady-state seconds and batch fill as table cells ('–' where none was recorded)."""
    import pandas as pd

    return ["–" if pd.isna(steady_s) else f(steady_s, 2), "–" if pd.isna(fill) else f(fill, 3)]


def steady_calibration_table(rows: list[list]) -> str:
    """calibration_rows(steady=True) as a table, and how many windows lie inside their tolerance."""
    inside = sum(r[-1] == "inside" for r in rows)
    head = ["stage", "experiment", "sweep point", "cycle", "window s", "steady state s", "batch fill"]
    return table(head + CALIBRATION_HEAD, rows) + f"\n\n{inside} of {len(rows)} windows inside their tolerance."


@blocks("ev-engine-warm-worker")
def ev_engine_warm_worker(raw: Raw) -> str:
    """benchmarks/engine_reuse.py's warm-worker rounds: ready seconds cold, reused, on warm caches and in the worker's
    spare process, the spare's own import, and how the engine core was started."""
    rows = []
    for r in raw.ledger().of("engine-warm-worker"):
        if not (raw.run_dir(r) / "result.json").is_file():
            rows.append([f"`{r.uid}`", "–", "–", "–", "–", "–", "–", "–", "–", f"{r.status}: no result.json"])
            continue
        data = json.loads(raw.text(f"runs/{r.raw_dir}/result.json"))
        log = raw.text(f"runs/{r.raw_dir}/stdout.log")
        cores = sorted(set(re.findall(r"engine core (\w+)\)", log))) or ["?"]
        for i, x in enumerate(data.get("vllm", [])):
            rows.append([f"`{r.uid}`", i, f(x["cold_s"]), f(x["reused_s"], 2), f(x["warm_cache_s"]),
                         f(x["warm_worker_s"]), f(x["spare_import_s"]), g(x["ratio"], 3), g(x["worker_ratio"], 3),
                         ", ".join(cores)])  # fmt: skip
    if not rows:
        return "_Not run yet: stage `engine-warm-worker` of the plan (§0)._"
    head = ["run", "round", "cold s", "reused s", "warm cache s", "warm worker s", "spare's import s",
            "warm cache / cold", "warm worker / cold", "engine core"]  # fmt: skip
    return table(head, rows)


STAMP = r"(\d\d-\d\d \d\d:\d\d:\d\d)"


def start_phases(log: str) -> list[dict]:
    """Per new vLLM engine in an engine_reuse.py log, from vLLM's own log stamps (1 s resolution): the previous
    engine's shutdown -> this engine's arguments (the host's work before vLLM), arguments -> the EngineCore's first
    line (the core's start: a spawned core imports vLLM), that line -> the core's "init engine" line; and its ready
    line's spare flag and core start."""
    from datetime import datetime

    def at(stamp: str) -> datetime:  # vLLM's stamps have no year: a leap year's, so that 02-29 parses
        return datetime.strptime(f"2024-{stamp}", "%Y-%m-%d %H:%M:%S")

    out, shutdown, cur = [], None, None
    for line in log.splitlines():
        m = re.search(STAMP, line)
        if m and "[shutdown] MPClient: complete" in line:
            shutdown = at(m[1])
        elif m and "non-default args" in line and not line.startswith("(EngineCore"):
            cur = {"args": at(m[1]), "shutdown": shutdown}
        elif m and cur and "core" not in cur and line.startswith("(EngineCore") and "Initializing" in line:
            cur["core"] = at(m[1])
        elif m and cur and "init engine" in line:
            cur["init"] = at(m[1])
        elif cur and (r := re.search(r"ready in .*spare (\w+); engine core (\w+)\)", line)):
            cur.update(spare=r[1] == "True", method=r[2])
            out.append(cur)
            cur = shutdown = None
    return out


@blocks("s20-start-phases")
def s20_start_phases(raw: Raw) -> str:
    """Where a new vLLM engine's start goes, per engine-warm-worker start with a result (spawned cores), sessions
    12-13."""
    return start_phases_table(raw, UP_TO_13)


def start_phases_table(raw: Raw, span: tuple[str, str], stage: str = "engine-warm-worker") -> str:
    def gap(a, b) -> str:
        return "–" if a is None or b is None else f"{(b - a).total_seconds():.0f}"

    rows = []
    for r in runs_of(raw, stage, span):
        if not (raw.run_dir(r) / "result.json").is_file():
            continue
        first = True  # engine_reuse.py: per round a cold start, a warm-cache one, then the spare's
        for p in start_phases(raw.text(f"runs/{r.raw_dir}/stdout.log")):
            kind = "warm worker (spare)" if p["spare"] else "cold" if first else "warm cache (new process)"
            first = p["spare"]
            rows.append([f"`{r.uid}`", kind, gap(p["shutdown"], p["args"]) if p["spare"] else "–",
                         gap(p["args"], p.get("core")), gap(p.get("core"), p.get("init")), p["method"]])  # fmt: skip
    if not rows:
        return "_Not run yet: stage `engine-warm-worker` with a result._"
    head = ["run", "start", "previous engine's shutdown -> arguments s", "arguments -> EngineCore's first line s",
            "EngineCore's first line -> init done s", "engine core"]  # fmt: skip
    return table(head, rows)


@blocks("s21-warm-worker-gap")
def s21_warm_worker_gap(raw: Raw) -> str:
    """Per engine-warm-worker round with a result, sessions up to 13: how far the warm worker's start lies above the
    target (0.25 x the round's cold start), beside the part of it the spawned core spent before its first line (its
    vLLM import)."""
    return warm_worker_gap_table(raw, UP_TO_13)


def warm_worker_gap_table(raw: Raw, span: tuple[str, str], stage: str = "engine-warm-worker") -> str:
    rows = []
    for r in runs_of(raw, stage, span):
        if not (raw.run_dir(r) / "result.json").is_file():
            continue
        rounds = json.loads(raw.text(f"runs/{r.raw_dir}/result.json")).get("vllm", [])
        spares = [p for p in start_phases(raw.text(f"runs/{r.raw_dir}/stdout.log")) if p["spare"]]
        if len(spares) != len(rounds):  # a start whose log lines are missing: no pairing is safe
            spares = [{}] * len(rounds)
        for i, (got, p) in enumerate(zip(rounds, spares)):
            core = (p["core"] - p["args"]).total_seconds() if p.get("core") and p.get("args") else None
            over = got["warm_worker_s"] - 0.25 * got["cold_s"]
            rows.append([f"`{r.uid}`", i, f(got["warm_worker_s"], 1), f(0.25 * got["cold_s"], 1), f(over, 2),
                         "–" if core is None else f"{core:.0f}"])  # fmt: skip
    if not rows:
        return "_Not run yet: stage `engine-warm-worker` with a result._"
    head = ["run", "round", "warm worker s", "target: 0.25 x cold s", "above the target s",
            "arguments -> EngineCore's first line s"]  # fmt: skip
    return table(head, rows)


@blocks("s20-physics-by-length")
def s20_physics_by_length(raw: Raw) -> str:
    """physics-v1 on every vLLM cycle window measured since it was fixed, up to session 13, split at 3 s."""
    return physics_by_length(raw, UP_TO_13)


@blocks("s22-physics-by-length")
def s22_physics_by_length(raw: Raw) -> str:
    """The same over every vLLM cycle window measured since physics-v1 was fixed, session 14 included."""
    return physics_by_length(raw, ("", SESSIONS[14][1]))


PHYSICS_STAGES = ("calibration-windows", "calibration-windows-long", "request-energy")
"""The stages whose vLLM windows physics-v1 judged up to session 14."""


def physics_by_length(raw: Raw, span: tuple[str, str], stages: tuple[str, ...] = PHYSICS_STAGES) -> str:
    import pandas as pd

    long_in = long_n = short_in = short_n = 0
    for _, folder in result_folders(raw, stages, span):
        if pd.read_parquet(folder / "experiment.parquet").iloc[0]["backend"] != "vllm":
            continue
        c = pd.read_parquet(folder / "cycles.parquet")
        inside = (c["cross_check_rel_diff"].abs() <= c["cross_check_tolerance"]).to_numpy()
        short = (c["duration_s"] < 3.0).to_numpy()
        long_in, long_n = long_in + int((inside & ~short).sum()), long_n + int((~short).sum())
        short_in, short_n = short_in + int((inside & short).sum()), short_n + int(short.sum())
    return (
        f"vLLM windows of at least 3 s: {long_in} of {long_n} inside their tolerance; under 3 s: {short_in} of "
        f"{short_n}"
    )


@blocks("s21-update-period")
def s21_update_period(raw: Raw) -> str:
    """How often the power field changed in the request-energy runs' timelines: the share of samples equal to the one
    before (per device), and the median time between changes."""
    import numpy as np
    import pandas as pd

    parts = []
    for _, folder in result_folders(raw, ("request-energy",), UP_TO_13):
        tl = pd.read_parquet(folder / "timeline.parquet")
        meter = json.loads((folder / "summary.json").read_text()).get("meter", {})
        for device, d in tl.groupby("device"):
            t, p = d.t_s.to_numpy(), d.power_w.to_numpy()
            same = float(np.mean(np.diff(p) == 0))
            changes = t[1:][np.diff(p) != 0]
            parts.append(f"{folder.name} {device} ({meter.get('power_source')}, sampled at {meter.get('sample_hz')} "
                         f"Hz): {same:.0%} of samples equal to the one before; the reading changed every "
                         f"{float(np.median(np.diff(changes))):.3f} s (median)")  # fmt: skip
    return "; ".join(parts) or "_Not run yet: stage `request-energy` with a result folder._"


LAGS_S = (0.0, 0.02, 0.05, 0.1, 0.2)


def mean_power(t, pw, spans: list[tuple[float, float]], lag: float) -> float | None:
    """Mean of the timeline's samples inside the spans, each shifted `lag` seconds later."""
    import numpy as np

    inside = np.concatenate([pw[(t >= a + lag) & (t <= b + lag)] for a, b in spans])
    return float(inside.mean()) if len(inside) else None


@blocks("s21-prefill-operating-point")
def s21_prefill_operating_point(raw: Raw) -> str:
    """The two request-energy points the prefill target compares (prefill-only; mixed), per cycle: the median GPU
    time per prompt token over its prefill-dominated steps (prompt tokens >= 90 % of the step's tokens: step duration
    / prompt tokens, no fit), and the power timeline's mean over those steps' spans, read as recorded and shifted
    later by each of LAGS_S (a sensor that lags the work shows its power after the step)."""
    import numpy as np
    import pandas as pd

    rows = []
    for _, folder in result_folders(raw, ("request-energy",), UP_TO_13):
        if not (folder / "steps.parquet").is_file():
            continue
        w = pd.read_parquet(folder / "windows.parquet")
        steps = pd.read_parquet(folder / "steps.parquet")
        power = pd.read_parquet(folder / "timeline.parquet").groupby("t_s", as_index=False).power_w.sum()
        t, pw = power.t_s.to_numpy(), power.power_w.to_numpy()
        for point, cyc in w[w.kind == "cycle"].groupby("sweep_point", sort=False):
            if not {"batch_size=64", "input_len=512"} <= set(point.split(",")):  # the prefill-only and mixed points
                continue
            for c in cyc.cycle:
                s = steps[(steps.sweep_point == point) & (steps.cycle == c)].sort_values("t_s")
                ends = s.t_s.to_numpy()
                p, d = s.prompt_tokens.to_numpy()[1:], s.decode_tokens.to_numpy()[1:]
                mostly = (p > 0) & (p >= 0.9 * (p + d))
                spans = list(zip(ends[:-1][mostly], ends[1:][mostly]))
                if not spans:
                    continue
                per_token = float(np.median(np.diff(ends)[mostly] / p[mostly])) * 1e6
                means = [mean_power(t, pw, spans, lag) for lag in LAGS_S]
                rows.append([point, int(c), len(spans), f(per_token, 2), *(f(m, 0) for m in means)])
    if not rows:
        return "_Not run yet: stage `request-energy` with a result folder._"
    head = ["sweep point", "cycle", "prefill steps", "µs per prompt token",
            *(f"mean W over the steps +{lag * 1e3:.0f} ms" for lag in LAGS_S)]  # fmt: skip
    return table(head, rows)


@blocks("s22-warm-worker-gap")
def s22_warm_worker_gap(raw: Raw) -> str:
    """s21-warm-worker-gap for session 14's engine-warm-worker run."""
    return warm_worker_gap_table(raw, SESSIONS[14])


@blocks("s22-start-phases")
def s22_start_phases(raw: Raw) -> str:
    """s20-start-phases for session 14's engine-warm-worker run."""
    return start_phases_table(raw, SESSIONS[14])


@blocks("s22-calibration")
def s22_calibration(raw: Raw) -> str:
    """physics-v1 on session 14's request-energy windows (measured after the rule was fixed: out of sample)."""
    return session_calibration(raw, ("request-energy",), 14)


@blocks("s22-power-lag")
def s22_power_lag(raw: Raw) -> str:
    """power-lag: per long burst, how far the first update after its start (rise) or end (fall) came after that edge,
    and the share of the way from idle to the burst's level the first two updates after it read; the update period
    and the short bursts' captured share."""
    import numpy as np

    from benchmarks.power_lag import edge_reads, fit_stretch, update_times

    parts = []
    for r in runs_of(raw, "power-lag"):
        if not (raw.run_dir(r) / "result.json").is_file():
            continue
        data = json.loads(raw.text(f"runs/{r.raw_dir}/result.json"))
        t, p = np.array(data["timeline"]["t_s"]), np.array(data["timeline"]["power_w"])
        updates, long = update_times(t, p), data["edges"][str(data["bursts_s"][0])]
        short = data["series"]["short_captured"]
        rows, reads = [], {}
        for edge in ("rise", "fall"):
            reads[edge] = edge_reads(t, p, updates, long, edge)
            for ms, first, second in reads[edge]:
                rows.append([edge, f(ms * 1e3, 1), f(first, 2), f(second, 2)])
        first, second = fit_stretch(reads["rise"], reads["fall"], data["sample_period_s"])
        informative = sum(0.05 < row[1] < 0.95 for rows_ in reads.values() for row in rows_)
        head = ["edge", "edge -> first update ms", "first update reads", "second update reads"]
        parts.append(
            f"`{r.uid}` ({where(r)}, {data['power_source']}, sampled every {data['sample_period_s'] * 1e3:.1f} ms): "
            f"{len(updates)} updates, one every {data['update_period_s'] * 1e3:.1f} ms (median); of each "
            f"{data['bursts_s'][1] * 1e3:.0f} ms burst's energy above idle, the reading shows inside the burst's own "
            f"span a median {g(statistics.median(short), 3)} (max {g(max(short), 3)}) over {len(short)} bursts. "
            f"The stretch whose mean power best predicts the edges' first reads (benchmarks.power_lag.fit_stretch): "
            f"[update − {first * 1e3:.0f} ms, update − {second * 1e3:.0f} ms], resting on the {informative} edges "
            f"whose first update read between 0.05 and 0.95 of the way (the others only bound it).\n\n"
            + table(head, rows)
        )
    return "\n\n".join(parts) or "_Not run yet: stage `power-lag` of the plan (§0)._"


@blocks("ev-request-energy")
def ev_request_energy(raw: Raw) -> str:
    """request-energy (GPU) and request-energy-prefill (its CPU reading): the per-request attribution at batch 1
    against each request's own measured span, the window sums, and the prefill share under batching against the
    prefill-only phase run; sessions up to 14 (§20's prose), s23-request-energy has session 15's."""
    return request_energy_lines(raw, ("", SESSIONS[14][1]))


def request_energy_lines(raw: Raw, span: tuple[str, str]) -> str:
    lines = []
    for r in runs_of(raw, "request-energy", span):
        if not (raw.run_dir(r) / "result.json").is_file():
            continue
        s = json.loads(raw.text(f"runs/{r.raw_dir}/result.json"))["series"]
        bs1 = s["bs1_rel_dev"]
        if not bs1:
            lines.append(f"`{r.uid}` ({where(r)}): no batch-1 request with a measured span")
            continue
        lines.append(
            f"`{r.uid}` ({where(r)}): batch 1, {len(bs1)} requests: \\|attributed / measured − 1\\| median "
            f"{g(statistics.median(bs1), 3)}, max {g(max(bs1), 3)}; every window's requests sum to it within "
            f"{g(max(abs(v) for v in s['window_sum_rel_dev']), 2)} (relative)"
        )
    for r in runs_of(raw, "request-energy-prefill", span):
        if not (raw.run_dir(r) / "result.json").is_file():
            continue
        result = json.loads(raw.text(f"runs/{r.raw_dir}/result.json"))
        p = result["prefill"]
        mixed, phase = p["mixed_prefill_j_per_prompt_token"], p["phase_run_j_per_prompt_token"]
        share = ", ".join(g(v, 3) for v in p["mixed_prefill_share_of_window"])
        per_cycle = ", ".join(g(v, 3) for v in result["series"]["prefill_gap_per_cycle"])
        s = result["series"]
        bs1 = "; ".join(
            f"{label} ({len(s[key])} requests): \\|attributed / measured − 1\\| median "
            f"{g(statistics.median(s[key]), 3)}, max {g(max(s[key]), 3)}"
            for key, label in (("bs1_rel_dev", "batch 1"), ("bs1_mixed_rel_dev", "batch 1 with drawn lengths"))
            if s.get(key)
        )
        lines.append(
            f"`{r.uid}` (over `{result['folder'].split('/runs/')[-1].split('/')[1]}`): {bs1 + '; ' if bs1 else ''}"
            f"prefill J per prompt token, attributed under batching {g(mixed['mean'], 4)} ± "
            f"{g(mixed['ci95'], 2)} against the prefill-only run's {g(phase['mean'], 4)} ± {g(phase['ci95'], 2)} "
            f"({(mixed['mean'] / phase['mean'] - 1) * 100:+.1f} %; gap "
            f"{g(p['gap_over_combined_interval_of_means'], 3)} combined intervals, per cycle {per_cycle}); "
            f"attributed prefill share of each mixed window {share}"
        )
    return bullets(lines) if lines else "_Not run yet: stage `request-energy` of the plan (§0)._"


@blocks("ev-hand")
def ev_hand(raw: Raw) -> str:
    items = []
    for path in sorted((raw.root / "raw").rglob("*")):
        rel = path.relative_to(raw.root).as_posix()
        if path.is_file() and is_hand(rel):
            first = path.read_text(errors="replace").splitlines()[0]
            said = (
                first.removeprefix(HAND_LINE).strip() if first.startswith(HAND_LINE) else "**no first line saying so**"
            )
            items.append(f"`{rel}`: {said}")
    return bullets(items)


@blocks("ev-meter")
def ev_meter(raw: Raw) -> str:
    """The plan's meter-overhead runs: the on/off verdict and, beside it, the A/A control (off/off2): the host's own
    round-to-round swing with no meter in either arm, as a percentile-bootstrap interval of its median."""
    from benchmarks.decision import bootstrap_interval

    rows = []
    for stage in MEDIAN_STAGES:
        for r in raw.ledger().of(stage):
            judged = verdicts(raw, r)  # each prefixed with its target's name (both halves are judged)
            median = [v.removeprefix(MEDIAN_PREFIX) for v in judged if v.startswith(MEDIAN_PREFIX)]
            on_off = [v.removeprefix(f"{short(CI_TARGET)}: ") for v in judged if not v.startswith(MEDIAN_PREFIX)]
            log = raw.run_dir(r) / "stdout.log"
            aa = [float(x) for x in re.findall(r"off/off2 ([0-9.]+)", log.read_text())] if log.is_file() else []
            control = "–"
            if len(aa) >= 2:
                lo, hi = bootstrap_interval(aa)
                control = f"median {g(statistics.median(aa), 4)}, 95 % CI {g(lo, 4)}–{g(hi, 4)} ({len(aa)} rounds)"
            rows.append(
                [
                    f"`{stage}`",
                    where(r),
                    r.started["start"][:10],
                    r.status,
                    "; ".join(on_off),
                    "; ".join(median),
                    control,
                ]  # fmt: skip
            )
    if not rows:
        return "_Not run yet: stages `meter-overhead-compiled` and `meter-overhead-vllm` of the plan (§0)._"
    head = ["stage", "device", "date", "status", "on/off: CI verdict", "on/off: median verdict", "A/A control off/off2"]
    return table(head, rows)


MEDIAN_TARGET = "benchmarks/targets/meter-overhead-median.yaml"
CI_TARGET = "benchmarks/targets/meter-overhead.yaml"
MEDIAN_STAGES = ("meter-overhead-compiled", "meter-overhead-vllm")
MEDIAN_PREFIX = f"{short(MEDIAN_TARGET)}: "


def median_verdict(raw: Raw, run: Run) -> str:
    """The median half of the meter-overhead goal, for a run that recorded only the CI half (before plan.yaml listed
    both): the median file was committed before any such run (dcbc8c4), so its committed text judges it."""
    target, note = parse_target((REPO / MEDIAN_TARGET).read_text(), MEDIAN_TARGET), "not recorded at the run"
    groups = series_values(target, raw.run_dir(run))
    return "; ".join([evaluate(target, v).text() for v in groups.values()] + [note])


@blocks("s23-request-energy")
def s23_request_energy(raw: Raw) -> str:
    """ev-request-energy for session 15 (the sensed fit's first run)."""
    return request_energy_lines(raw, SESSIONS[15])


@blocks("s23-warm-worker-gap")
def s23_warm_worker_gap(raw: Raw) -> str:
    """s21-warm-worker-gap for session 15's engine-warm-worker-forkserver run."""
    return warm_worker_gap_table(raw, SESSIONS[15], "engine-warm-worker-forkserver")


@blocks("s23-start-phases")
def s23_start_phases(raw: Raw) -> str:
    """s20-start-phases for session 15's engine-warm-worker-forkserver run."""
    return start_phases_table(raw, SESSIONS[15], "engine-warm-worker-forkserver")


@blocks("s23-compare")
def s23_compare(raw: Raw) -> str:
    """compare-gpu in session 15: each backend's row of compare.json, beside the blocking checks of its result folder
    as `llm-energy-measure validate` runs them today."""
    return compare_table(raw, SESSIONS[15])


@blocks("s25-compare")
def s25_compare(raw: Raw) -> str:
    """compare-gpu in session 17 (the example sized for windows >= 20 s), with each backend's steady state, batch
    fill and idle baselines."""
    return compare_table(raw, SESSIONS[17], more=True)


def compare_folders(raw: Raw, span: tuple[str, str]):
    """(run, compare.json row, its backend's result folder) of every compare-gpu run in `span`."""
    from pathlib import Path

    for r in runs_of(raw, "compare-gpu", span):
        for x in json.loads(raw.text(f"runs/{r.raw_dir}/compare/compare.json")):
            folder = raw.run_dir(r) / "compare" / "runs" / Path(x["result_folder"]).name
            raw.note(f"runs/{r.raw_dir}/compare/runs/{folder.name}")
            yield r, x, folder


def compare_table(raw: Raw, span: tuple[str, str], more: bool = False) -> str:
    from benchmarks.report.early import idle
    from gpu_ops.results import ResultFolder
    from gpu_ops.validation import blocking_failures, validate

    rows = []
    for r, x, folder in compare_folders(raw, span):
        tables = ResultFolder.read(folder).tables
        failed = sorted({c.check for c in blocking_failures(validate(tables))})
        extra = []
        if more:
            before, after = idle(tables)
            extra = [*steady_cells(x.get("steady_duration_s_mean"), x.get("batch_fill_mean")),
                     f"{f(before, 1)} / {f(after, 1)}"]  # fmt: skip
        rows.append([f"`{r.uid}`", x["backend"], f"{g(x['j_per_token_mean'], 4)} ± {g(x['j_per_token_ci95'], 2)}",
                     f(x["tokens_per_s_mean"], 0), f(x["ttft_p50_pooled_s"] * 1e3, 1),
                     f(x["tpot_p50_pooled_s"] * 1e3, 2), x["n_cycles"], f(x["duration_s_mean"], 2), *extra,
                     ", ".join(failed) or "all pass"])  # fmt: skip
    if not rows:
        return "_Not run yet: stage `compare-gpu` in this session._"
    head = ["run", "backend", "J/token ± 95 % CI", "tok/s", "TTFT p50 ms", "TPOT p50 ms", "cycles", "window s (mean)"]
    if more:
        head += ["steady state s (mean)", "batch fill (mean)", "idle before / after W"]
    return table(head + ["blocking checks failed"], rows)


@blocks("s25-compare-time")
def s25_compare_time(raw: Raw) -> str:
    """Where each compare-gpu run of session 17 spent its wall time, by kind (summary.json's wall_time), and how long
    its runs waited for a spare engine process's imports (engine_start spans labelled `spare`)."""
    rows = []
    kinds = ("cycle", "engine_start", "compile", "weights", "warmup", "idle_baseline", "bookkeeping", "other")
    for r, x, folder in compare_folders(raw, SESSIONS[17]):
        wall = json.loads((folder / "summary.json").read_text())["wall_time"]
        sec = wall["seconds"]
        spans = wall["spans"]
        spare = sum(s["end"] - s["start"] for s in spans if s["kind"] == "engine_start" and s["label"] == "spare")
        total = sum(sec.values())
        share = f"{sec['cycle'] / wall['wall_s'] * 100:.1f} %"
        rows.append([f"`{r.uid}`", x["backend"], f(wall["wall_s"], 1), *(f(sec.get(k, 0.0), 1) for k in kinds),
                     f(spare, 1), share, f(wall["wall_s"] - total, 1)])  # fmt: skip
    if not rows:
        return "_Not run yet: stage `compare-gpu` in session 17._"
    head = ["run", "backend", "wall s", "cycle windows s", "engine start s (rest)", "compile s", "weights s",
            "warm-up s", "idle baselines s", "bookkeeping s", "other s", "of the engine start: spare wait s",
            "share in cycle windows", "unaccounted s"]  # fmt: skip
    return table(head, rows)


S23_STAGES = ("request-energy", "compare-gpu", "vllm-streaming-poisson")


@blocks("s23-calibration")
def s23_calibration(raw: Raw) -> str:
    """physics-v1 on session 15's GPU windows (every one measured after the rule was fixed: out of sample)."""
    return session_calibration(raw, S23_STAGES, 15)


@blocks("s23-physics-by-length")
def s23_physics_by_length(raw: Raw) -> str:
    """s22-physics-by-length through session 15, with its compare and streaming windows."""
    return physics_by_length(raw, ("", SESSIONS[15][1]), PHYSICS_STAGES + S23_STAGES[1:])


S25_STAGES = ("calibration-windows-pytorch", "compare-gpu", "vllm-streaming-poisson")


@blocks("s25-calibration")
def s25_calibration(raw: Raw) -> str:
    """physics-v1 on session 17's GPU windows (out of sample: the rule was fixed before them)."""
    return session_calibration(raw, S25_STAGES, 17)


@blocks("s25-physics-by-band")
def s25_physics_by_band(raw: Raw) -> str:
    """Every window physics-v1 judged out of sample through session 17, both backends, by window length: under 3 s,
    3-20 s, and >= 20 s (the length #27 ranks)."""
    import pandas as pd

    stages = PHYSICS_STAGES + ("calibration-windows-pytorch",) + S23_STAGES[1:]
    bands = {"under 3 s": [0, 0], "3-20 s": [0, 0], "20 s or more": [0, 0]}
    for _, folder in result_folders(raw, stages, ("", SESSIONS[17][1])):
        c = pd.read_parquet(folder / "cycles.parquet")
        for _, x in c.iterrows():
            d = x["duration_s"]
            band = bands["under 3 s" if d < 3 else "3-20 s" if d < 20 else "20 s or more"]
            band[0] += int(abs(x["cross_check_rel_diff"]) <= x["cross_check_tolerance"])
            band[1] += 1
    return bullets([f"windows {k}: {i} of {n} inside their tolerance" for k, (i, n) in bands.items()])
