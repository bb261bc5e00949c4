"""Blocks of platform-gpu/README.md: the Dagster platform's GPU campaign of session 7, from the daemon's log, the
instance it left (run tags, stored partitions), campaign.json, the leaderboard and the dataset card."""

from __future__ import annotations

import datetime
import re
from collections import defaultdict

import pandas as pd

from benchmarks.report.blocks import Blocks
from benchmarks.report.fmt import bullets, f, g, pct, span, table
from benchmarks.report.raw import Raw, ReportError
from benchmarks.report.sessions import INSTANCE7, device_line

blocks = Blocks()
LOG = "platform-gpu/daemon-h200.log"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d) \+0000 - (.*)$")
RUN = re.compile(r"measure - ([0-9a-f-]{36}) - ")


def log_lines(raw: Raw) -> list[tuple[str, str]]:
    """(time, text) of every timestamped line of the daemon's log, colours removed."""
    out = []
    for line in ANSI.sub("", raw.text(LOG)).splitlines():
        m = LINE.match(line)
        if m:
            out.append((m[1], m[2]))
    return out


def seconds(a: str, b: str) -> float:
    t = lambda s: datetime.datetime.strptime(s, "%H:%M:%S")  # noqa: E731
    return (t(b) - t(a)).total_seconds()


def runs(raw: Raw) -> dict[str, dict]:
    """Per measure run (by id, in start order): RUN_START, RUN_SUCCESS, the last raw_measurements materialization, the
    end of its idle-before window, and its sweep points' lines (model line, warm-up line)."""
    out: dict[str, dict] = {}
    for time, text in log_lines(raw):
        m = RUN.search(text)
        if not m:
            continue
        r = out.setdefault(m[1], {"points": defaultdict(dict), "settle": []})
        if "RUN_START" in text:
            r["start"] = time
        elif "RUN_SUCCESS" in text:
            r["end"] = time
        elif "ASSET_MATERIALIZATION - Materialized value raw_measurements" in text:
            r["stored"] = time
        elif "idle-before:" in text:
            r["idle_before_end"] = time
        elif point := re.search(
            r"raw_measurements - \[([^\]]+)\] (?:\S+ \(\w+\) on |warm-up \d+ request\(s\): (\S+) s)", text
        ):
            key = "warmup" if point[2] else "model"
            r["points"][point[1]][key] = (time, float(point[2]) if point[2] else None)
        elif settle := re.search(r"idle power (still above .* after \S+ s|back within .* after \S+ s)", text):
            r["settle"].append((time, settle[1]))
    return dict(sorted(out.items(), key=lambda kv: kv[1].get("start", "")))


def partitions(raw: Raw) -> dict[str, tuple[str, object]]:
    """Run id -> (partition, stored tables), through the instance's run tags."""
    tags = dict(raw.sqlite("dagster_home/history/runs.db", INSTANCE7,
                           "select run_id, value from run_tags where key = 'dagster/partition'"))  # fmt: skip
    stored = {"|".join(name.split("/")[-2:]): t for name, t in raw.folders(INSTANCE7)}
    return {run: (part, stored[part]) for run, part in tags.items()}


@blocks("pg-device")
def pg_device(raw: Raw) -> str:
    return device_line(raw, "raw/session7/logs/01-device.log")


@blocks("pg-queued")
def pg_queued(raw: Raw) -> str:
    times = [t for t, text in log_lines(raw) if re.search(r"Completed launch of run \S+ for experiment_inbox", text)]
    return (
        f"{len(times)} `measure` runs, {span(times[0], times[-1], str)}"
        if times[0] != times[-1]
        else (f"{len(times)} `measure` runs at {times[0]}")
    )


@blocks("pg-runs")
def pg_runs(raw: Raw) -> str:
    seconds_by_run = {r["run_id"]: r["seconds"] for r in raw.json("platform-gpu/campaign.json")["runs"]}
    rows = []
    for run, (part, t) in sorted(partitions(raw).items(), key=lambda kv: runs(raw)[kv[0]]["start"]):
        points = sorted(t.cycles.sweep_point.unique())
        rows.append([f"`{part}`", run[:8], ", ".join(f"`{p}`" for p in points), f(seconds_by_run[run]),
                     f"{len(t.cycles)} cycles"])  # fmt: skip
    return table(["partition", "run", "sweep points", "run s", "measured"], rows)


@blocks("pg-stopped")
def pg_stopped(raw: Raw) -> str:
    r = runs(raw)
    stored = [v["stored"] for v in r.values() if "stored" in v]
    lines = log_lines(raw)
    launched = [t for t, text in lines if re.search(r"Tick produced [1-9]\d* runs?", text)]
    interrupted = [t for t, text in lines if "Received interrupt" in text]
    ends = [v["end"] for v in r.values() if "end" in v]
    return bullets([
        f"first partition stored at {min(stored)}, the last at {max(stored)} (its run ended at {max(ends)})",
        f"the automation's first run (statistics over the stored partitions) launched at {launched[0]}"
        if launched else "the automation launched no run",
        f"the daemon was interrupted at {interrupted[0]}" if interrupted else "the daemon was not interrupted",
    ])  # fmt: skip


@blocks("pg-where")
def pg_where(raw: Raw) -> str:
    r = runs(raw)
    parts = partitions(raw)
    items = []
    for run, v in r.items():
        backend = parts[run][1].summary["backend"] if run in parts else "?"
        starts = [(p, seconds(w["model"][0], w["warmup"][0])) for p, w in v["points"].items()
                  if "model" in w and "warmup" in w]  # fmt: skip
        if backend == "vllm":
            slow = [(p, s) for p, s in starts if s > 10]
            items.append(
                "vLLM's engine starts (model line to warm-up line): "
                + "; ".join(f"`{p.split('attention_backend=')[-1]}` {f(s, 0)} s" for p, s in slow)
            )
        warmups = [w["warmup"][1] for w in v["points"].values() if "warmup" in w]
        items.append(f"run {run[:8]} ({backend}): warm-ups {', '.join(f(w, 2) + ' s' for w in warmups)}")
        for time, text in v["settle"]:
            items.append(f"run {run[:8]}: at {time} idle power {text}")
    ordered = list(r.values())
    gaps = [seconds(a["end"], b["start"]) for a, b in zip(ordered, ordered[1:]) if "end" in a and "start" in b]
    to_idle = [seconds(v["start"], v["idle_before_end"]) for v in ordered if "idle_before_end" in v]
    items.append(
        f"between runs: the queue started the next run {span(min(gaps), max(gaps), f, 0)} s after the previous ended; "
        f"each run then took {span(min(to_idle), max(to_idle), f, 0)} s from its start to the end of its idle-before "
        f"window"
    )
    return bullets(items)


@blocks("pg-leaderboard")
def pg_leaderboard(raw: Raw) -> str:
    lb = pd.read_csv(raw.path("platform-gpu/leaderboard.csv"))
    rows = [[f"`{r.experiment_key}`", f"`{r.sweep_point}`", g(r.j_per_token_mean, 4), pct(r.j_per_token_cv, 1),
             "**unstable**" if r.unstable else ""] for r in lb.itertuples()]  # fmt: skip
    return table(["experiment", "sweep point", "J/token", "CV", "flag"], rows)


@blocks("pg-small-model")
def pg_small_model(raw: Raw) -> str:
    t = next(t for _, (part, t) in partitions(raw).items() if part.startswith("builtin-small-llama"))
    parts, ratios = [], []
    for p, c in t.cycles.groupby("batch_size", sort=True):
        d = c.sort_values("cycle").duration_s.tolist()
        if d[0] > 1.5 * max(d[1:]):
            ratios.append(d[0] / min(d[1:]))
            rest = span(min(d[1:]), max(d[1:]), f, 2)
            rest = rest.split("–")[0] if len(set(rest.split("–"))) == 1 else rest
            parts.append(f"{f(d[0], 2)} vs {rest} s at batch {p}")
    if not parts:
        raise ReportError(f"{INSTANCE7}: no batch size of the small model whose first cycle was slow")
    return f"{min(ratios):.1f}–{max(ratios):.1f}× slower than the next ({'; '.join(parts)})"


@blocks("pg-card")
def pg_card(raw: Raw) -> str:
    card = raw.text("platform-gpu/dataset-card.md")
    snap = re.search(r"This snapshot: (\d+) leaderboard rows from (\d+) partitions", card)
    counts = {m[1]: m[2] for m in re.finditer(r"^- `(\w+)`: ([\d,]+) rows", card, re.M)}
    if not snap:
        raise ReportError("platform-gpu/dataset-card.md: no 'This snapshot:' line")
    want = {"cycles": "cycles", "requests": "requests", "power_timelines": "power samples"}
    return f"{snap[1]} leaderboard rows from {snap[2]} partitions, " + ", ".join(
        f"{int(counts[k]):,} {name}" for k, name in want.items() if k in counts
    )
