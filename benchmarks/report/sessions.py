"""Blocks of §10-§13: GPU sessions 5 to 7 (vLLM on the H200, estimate accuracy, the platform on the GPU, reference
workloads), each read from its logs and stored result folders; post-hoc verdicts by today's target files."""

from __future__ import annotations

import re
import statistics

import numpy as np

from benchmarks.decision import evaluate, load_target
from benchmarks.reference_windows import point_figures, window_rows
from benchmarks.report.blocks import Blocks
from benchmarks.report.early import checks, ci_text, idle, paired, point
from benchmarks.report.fmt import bullets, f, g, pct, span, table
from benchmarks.report.raw import Raw, ReportError

blocks = Blocks()
TARGETS = "benchmarks/targets"
CYCLE_LINE = r"\[(?P<point>[^\]]+)\] cycle (?P<n>\d+): (?P<s>\S+) s, (?P<j>\S+)(?: ± (?P<pm>\S+))? J"


def target(name: str):
    from benchmarks.ledger import REPO

    return load_target(REPO / TARGETS / f"{name}.yaml")


def device_line(raw: Raw, rel: str) -> str:
    """'NVIDIA H200, driver 580.159.04, 700 W; torch …, vllm …' from an nvidia-smi CSV and a versions line."""
    gpu = raw.find(rel, r"^\d+, (NVIDIA [^,]+), GPU-[^,]+, (\S+), (\S+) W, (\w+)")
    versions = raw.find(rel, r"^(torch \S+ vllm \S+ transformers \S+(?: dagster \S+)?)$")[1]
    return f"one **{gpu[1]}**, driver {gpu[2]}, {float(gpu[3]):.0f} W, MIG {gpu[4].lower()}; {versions}"


def cycle_lines(raw: Raw, rel: str) -> list[re.Match]:
    return raw.all(rel, CYCLE_LINE)


def rounds(raw: Raw, rel: str, pattern: str) -> list[float]:
    return raw.numbers(rel, pattern)


# -- §10 session 5 ---------------------------------------------------------------------------------------------------
S5 = "raw/session5"
M1 = f"{S5}/machine1-replies.hand.txt"
M3 = f"{S5}/run3"
PARITY_ROUND = r"^round (\d+) \((\w+) first\): ours\s+(\S+) tok/s\s+theirs\s+(\S+) tok/s\s+ratio (\S+) \| window \S+ s, tail (\S+) ms after delivery, frontend lag (\S+) ms"  # noqa: E501


@blocks("s10-device")
def s10_device(raw: Raw) -> str:
    return device_line(raw, f"{M3}/device.txt")


@blocks("s10-cli-machine1")
def s10_cli_machine1(raw: Raw) -> str:
    m = raw.find(M1, r"default\s+5 cycles\s+tok/s (\S+)\s+J/token (\S+) ± (\S+)")
    cyc = cycle_lines(raw, M1)
    d, j = [float(c["s"]) for c in cyc], [float(c["j"]) for c in cyc]
    pm = [float(c["pm"]) for c in cyc]
    return (
        f"**{m[1]} tok/s, {m[2]} ± {m[3]} J/token**, cycles of {span(min(d), max(d), f, 2)} s and "
        f"{span(min(j), max(j), f, 0)} J ± {span(min(pm), max(pm), f, 1)} J"
    )


@blocks("s10-fork-hang")
def s10_fork_hang(raw: Raw) -> str:
    return '"' + raw.find(M1, r"== (nvml-thread: HUNG: [^\n]+)")[1] + '"'


@blocks("s10-first-start")
def s10_first_start(raw: Raw) -> str:
    return raw.find(f"{M3}/vllm_parity_256.log", r"engine started in (\S+ s)")[1]


def parity_rounds(raw: Raw) -> list[re.Match]:
    return raw.all(M1, PARITY_ROUND) + raw.all(f"{M3}/vllm_parity_256.log", PARITY_ROUND)


@blocks("s10-window-tail")
def s10_window_tail(raw: Raw) -> str:
    tails = [float(m[6]) for m in parity_rounds(raw)]
    return f"{span(min(tails), max(tails), f, 2)} ms"


@blocks("s10-frontend-lag")
def s10_frontend_lag(raw: Raw) -> str:
    lags = [float(m[7]) for m in parity_rounds(raw)]
    return f"{span(min(lags), max(lags), f, 0)} ms"


@blocks("s10-parity")
def s10_parity(raw: Raw) -> str:
    summary = r"paired ratio ours/theirs over (\d+) rounds: median (\S+), IQR ([\d.]+-[\d.]+)"
    m256, m64 = raw.all(M1, summary)
    shown = ", ".join(m[5] for m in raw.all(M1, PARITY_ROUND))
    minmax = raw.find(M1, r"over 4 rounds: .*min (\S+), max (\S+)")
    run3 = raw.all(f"{M3}/vllm_parity_256.log", PARITY_ROUND)
    hand = "only in `machine1-replies.hand.txt` (hand-assembled)"
    return table(
        ["run", "rounds", "paired ratios ours/theirs", "median", "rests on"],
        [
            ["max_num_seqs 256, machine 1", m256[1], f"{shown} (+ round 0, not in the tail)", f"**{m256[2]}** (IQR "
             f"{m256[3]})", hand],
            ["max_num_seqs 64, 512 prompts, machine 1", m64[1], f"min {minmax[1]}, max {minmax[2]}",
             f"**{m64[2]}** (IQR {m64[3]})", hand],
            ["max_num_seqs 256, machine 3, both prefix caches emptied", f"{len(run3)} (then the 150 s bound)",
             ", ".join(m[5] for m in run3), g(statistics.median(float(m[5]) for m in run3), 3),
             "`run3/vllm_parity_256.log`"],
        ],
    )  # fmt: skip


@blocks("s10-theirs-spread")
def s10_theirs_spread(raw: Raw) -> str:
    theirs = [float(m[4]) for m in parity_rounds(raw)]
    return f"{f(min(theirs) / 1000)}–{f(max(theirs) / 1000)}k tok/s"


def meter_rounds(raw: Raw, rel: str) -> tuple[list[float], list[float]]:
    on = rounds(raw, rel, r"^round \d+ \(\w+ first\): on\s+(\S+) tok/s")
    off = rounds(raw, rel, r"^round \d+ \(\w+ first\): on\s+\S+ tok/s\s+off\s+(\S+) tok/s")
    return on, off


def meter_summary(raw: Raw, rel: str) -> str:
    on, off = meter_rounds(raw, rel)
    p = paired(on, off)
    q = statistics.quantiles(p["ratios"], n=4)  # as the benchmark printed its IQR
    verdict = evaluate(target("meter-overhead"), p["ratios"])
    return (
        f"{len(on)} rounds: paired on/off **median {g(p['median'], 5)}**, IQR {span(q[0], q[2], g, 5)}, min "
        f"{g(min(p['ratios']), 5)}, max {g(max(p['ratios']), 5)}; medians on {f(statistics.median(on))} / off "
        f"{f(statistics.median(off))} tok/s. Target (benchmarks/targets/meter-overhead.yaml, declared after these "
        f"rounds): **{verdict.text()}**"
    )


@blocks("s10-meter-compiled")
def s10_meter_compiled(raw: Raw) -> str:
    return meter_summary(raw, f"{M3}/meter_overhead_compiled.log")


@blocks("s10-meter-vllm")
def s10_meter_vllm(raw: Raw) -> str:
    on, off = meter_rounds(raw, f"{M3}/meter_overhead_vllm.log")
    return ", ".join(g(a / b, 5) for a, b in zip(on, off))


@blocks("s10-counter")
def s10_counter(raw: Raw) -> str:
    return counter_summary(raw, f"{M3}/counter_step.log")


def counter_summary(raw: Raw, rel: str) -> str:
    m = raw.find(
        rel, r"counter steps in (\S+) s \(idle GPU\): (\d+); interval ms: min (\S+), .*median (\S+), .*max (\S+)"
    )
    windows = raw.all(rel, r"^\s+(\d+) ms windows: (\d+)/(\d+) measured; last: (\w+)(?:, (\S+) J)?")
    parts = [f"{w[1]} ms {w[2]}/{w[3]}" + (f" (last {w[5]} J)" if w[5] else "") for w in windows]
    return f"{m[2]} updates in {m[1]} s, median **{m[4]} ms** ({m[3]}–{m[5]}); windows measured: " + ", ".join(parts)


@blocks("s10-cli-crosscheck")
def s10_cli_crosscheck(raw: Raw) -> str:
    m = raw.find(M1, r"counter_timeline_agree: FAILED - (\d+) cycle\(s\) .*worst: (\S+) against (\S+) in")
    return (
        f"{m[1]} of 5 windows failed `counter_timeline_agree`: worst {m[2]} against that window's tolerance of {m[3]}"
    )


# -- §11 estimate accuracy -------------------------------------------------------------------------------------------
S11 = "raw/estimate_accuracy.txt"
EST_ROW = (
    r"^(\S+) / (\S+)\s+(\S+)\s+(\d+) \((\d+)-(\d+)\)\s+(\d+)\s+(\S+)%\s+(\S+) \((\S+)-(\S+)\)\s+(\S+)\s+(\S+)%\s+(.+)$"
)


@blocks("s11-summary")
def s11_summary(raw: Raw) -> str:
    return "```\n" + raw.find(S11, r"^(median absolute error over .*)$")[1] + "\n```"


@blocks("s11-points")
def s11_points(raw: Raw) -> str:
    rows = []
    for m in raw.all(S11, EST_ROW):
        folder = m[1].removeprefix("multigpu/").split("__")[0]
        rows.append([f"`{folder}` / {m[2]}",
                     m[3], f"{m[4]} ({m[5]}–{m[6]})", m[7], f"{m[8]} %", f"{m[9]} ({m[10]}–{m[11]})", m[12],
                     f"{m[13]} %"])  # fmt: skip
    return table(["folder / sweep point", "hardware", "energy J predicted (range)", "measured", "error",
                  "time s predicted (range)", "measured", "error"], rows)  # fmt: skip


@blocks("s11-cross-hardware")
def s11_cross_hardware(raw: Raw) -> str:
    m = [m for m in raw.all(S11, EST_ROW) if "h100" in m[3]][0]
    return f"{m[8]} % in energy and {m[13]} % in time"


INSTANCE7 = "platform-gpu/instance-from-h200.tgz"


def covered(t) -> tuple[float, float, float]:
    """What an estimate covers, as the stored partition measured it (gpu_ops.estimate: every cycle plus the warm-up;
    loading and idle baselines not included): (Wh, seconds), and the cycles' Wh alone."""
    w = t.windows[t.windows.kind.isin(["cycle", "warmup"])]
    cycles = t.cycles.gross_energy_j.sum() / 3600
    return w.gpu_energy_j.sum() / 3600, w.duration_s.sum(), cycles


def platform_estimates(raw: Raw) -> list[dict]:
    """Every estimate the platform attached to a queued run (its lem/estimate_* tags) beside what that run's stored
    partition measured over the same span (`covered`)."""
    tags: dict[str, dict] = {}
    query = "select run_id, key, value from run_tags where key like 'lem/estimate%' or key = 'dagster/partition'"
    for run, key, value in raw.sqlite("dagster_home/history/runs.db", INSTANCE7, query):
        tags.setdefault(run, {})[key.split("/")[-1]] = value
    stored = {"|".join(name.split("/")[-2:]): t for name, t in raw.folders(INSTANCE7)}
    out = []
    for run, tag in sorted(tags.items(), key=lambda kv: kv[1]["partition"]):
        wh, s, cycles_wh = covered(stored[tag["partition"]])
        out.append({"partition": tag["partition"], "run": run[:8], "tags": tag, "measured_wh": wh, "measured_s": s,
                    "cycles_wh": cycles_wh})  # fmt: skip
    return out


@blocks("s11-platform")
def s11_platform(raw: Raw) -> str:
    rows = []
    for e in platform_estimates(raw):
        t = e["tags"]
        lo, hi = (float(x) for x in t["estimate_wh_range"].split("-"))
        est, meas = float(t["estimate_wh"]), e["measured_wh"]
        rows.append([
            f"`{e['partition']}` (run {e['run']})", t["estimate_method"],
            f"{t['estimate_wh']} ({t['estimate_wh_range']})", f"{f(meas, 2)} ({f(e['cycles_wh'], 2)})",
            f"{meas / est:.2f}×",
            "yes" if lo <= meas <= hi else "**no**", t["estimate_s"], f(e["measured_s"], 1),
        ])  # fmt: skip
    return table(["partition", "method", "estimated Wh (range)", "measured Wh: cycles + warm-up (cycles alone)",
                  "measured / estimated", "inside the range", "estimated s", "measured s"], rows)  # fmt: skip


# -- §12 session 6 ---------------------------------------------------------------------------------------------------
S6 = "raw/session6"
S6M2 = f"{S6}/machine2"
S6_FOLDERS = {
    "campaign-quarantine-llama-1b-pytorch": f"{S6}/campaign-quarantine-llama-1b-pytorch.tgz",
    "vllm-streaming-poisson": f"{S6}/vllm-streaming-poisson.tgz",
    "platform-raw-llama-1b-pytorch": f"{S6M2}/platform-raw-llama-1b-pytorch.tgz",
    "vllm-cli": f"{S6M2}/vllm-cli.tgz",
}


@blocks("s12-device")
def s12_device(raw: Raw) -> str:
    return device_line(raw, f"{S6}/logs/01-device.log")


@blocks("s12-counter")
def s12_counter(raw: Raw) -> str:
    return counter_summary(raw, f"{S6}/logs/02-counter-step.log")


@blocks("s12-quarantine")
def s12_quarantine(raw: Raw) -> str:
    m = raw.find(
        f"{S6}/campaign-quarantine-REASON.txt", r"counter_timeline_agree: (\d+) cycle.*worst: (\S+) against (\S+) in"
    )
    total = len(raw.folder(S6_FOLDERS["campaign-quarantine-llama-1b-pytorch"]).cycles)
    return f"`counter_timeline_agree` failed in {m[1]} of {total} cycles, worst {m[2]} against a tolerance of {m[3]}"


def current_rule(t) -> list[dict]:
    """Each measured cycle window of a stored folder under the cross-check rules of gpu_ops.energy.tolerance: sigma-v2
    (σ of the timeline, the edge term over one power-update period, the counter's ±), sqrt-v1 before it, and
    physics-v1 (today's: nothing fitted), as docs/energy.md describes them."""
    from gpu_ops.energy.tolerance import (
        CROSS_CHECK_FLOOR,
        LEGACY_CROSS_CHECK_SCALE,
        cross_check_tolerance,
        legacy_cross_check_tolerance,
        physics_tolerance,
        timeline_edge_error,
        timeline_sigma,
    )
    from gpu_ops.rederive import parse_by_device

    w, tl = t.windows, t.timeline
    out = []
    for r in w[(w.kind == "cycle") & (w.gpu_energy_status == "measured")].itertuples():
        sigma = timeline_sigma(tl, r.start_s, r.end_s)
        diff = (r.timeline_energy_j - r.gpu_energy_j) / r.gpu_energy_j
        edge = timeline_edge_error(tl, r.start_s, r.end_s, 0.1)  # the H200's power field: 100 ms
        out.append({
            "diff": diff, "z": diff * r.gpu_energy_j / sigma if sigma else None,
            "tolerance": cross_check_tolerance(r.gpu_energy_j, r.energy_uncertainty_j, sigma, edge_j=edge),
            "physics": physics_tolerance(r.gpu_energy_j, r.energy_uncertainty_j, r.duration_s,
                                         len(parse_by_device(r.gpu_energy_by_device_j)), edge),
            "old": legacy_cross_check_tolerance(r.duration_s, 0.1, CROSS_CHECK_FLOOR, LEGACY_CROSS_CHECK_SCALE),
            "recorded": getattr(r, "cross_check_tolerance", None),
        })  # fmt: skip
    return out


def calibration(raw: Raw) -> dict[str, list[dict]]:
    return {name: current_rule(raw.folder(rel)) for name, rel in S6_FOLDERS.items()}


@blocks("s12-calibration")
def s12_calibration(raw: Raw) -> str:
    rows = [r for runs in calibration(raw).values() for r in runs]
    z = np.array([r["z"] for r in rows if r["z"] is not None])
    old = sum(abs(r["diff"]) <= r["old"] for r in rows)
    new = sum(abs(r["diff"]) <= r["tolerance"] for r in rows)
    physics = sum(abs(r["diff"]) <= r["physics"] for r in rows)
    return (
        f"Over all **{len(rows)} cycle windows of the four H200 runs** in this section, |diff|/σ has an RMS of "
        f"**{np.sqrt(np.mean(z**2)):.2f}** and a maximum of **{np.abs(z).max():.2f}**. The old rule, sqrt-v1 (`0.5 % + "
        f"0.1·√(period/length)`), passed **{old} of {len(rows)}**; sigma-v2, chosen on these same windows, passes "
        f"**{new} of {len(rows)}** (no evidence: it was fitted to them); physics-v1, which has no fitted parameter, "
        f"passes **{physics} of {len(rows)}**"
    )


@blocks("s12-tolerances")
def s12_tolerances(raw: Raw) -> str:
    rows = []
    for name, runs in calibration(raw).items():
        recorded = [r["recorded"] for r in runs if r["recorded"] is not None]
        now = [r["tolerance"] for r in runs]
        physics = [r["physics"] for r in runs]
        diffs = [abs(r["diff"]) for r in runs]
        passed = sum(abs(r["diff"]) <= r["physics"] for r in runs)
        rows.append([f"`{name}`", len(runs), span(min(diffs), max(diffs), pct, 2),
                     span(min(recorded), max(recorded), pct, 2), span(min(now), max(now), pct, 2),
                     f"{span(min(physics), max(physics), pct, 2)} ({passed} of {len(runs)} pass)"])  # fmt: skip
    return table(["run", "windows", "\\|counter − timeline\\| / counter",
                  "tolerance the meter recorded (its rule of that day)", "sigma-v2 recomputed", "physics-v1"],
                 rows)  # fmt: skip


@blocks("s12-streaming")
def s12_streaming(raw: Raw) -> str:
    t = raw.folder(S6_FOLDERS["vllm-streaming-poisson"])
    p = point(t)
    return (
        f"{f(p['tokens_per_s_mean'], 0)} tok/s, **{ci_text(p)} J/token**, TTFT p50 "
        f"{f(1000 * p['ttft_p50_s_mean'])} ms, "
        f"ITL p50 {f(1000 * p['itl_p50_s_mean'])} ms / p99 {f(1000 * p['itl_p99_s_mean'])} ms (one gap per streamed "
        f"chunk), TPOT p50 {f(1000 * p['tpot_p50_s_mean'])} ms, KV-cache peak {pct(p['kv_cache_usage_peak_mean'], 1)}, "
        f"{p['preemptions_mean']:.0f} preemptions, window tail (last token → window end) "
        f"{f(1000 * p['window_tail_s_mean'], 2)} ms"
    )


@blocks("s12-streaming-crosscheck")
def s12_streaming_crosscheck(raw: Raw) -> str:
    runs = current_rule(raw.folder(S6_FOLDERS["vllm-streaming-poisson"]))
    failed = [r for r in runs if abs(r["diff"]) > r["recorded"]]
    worst = max(failed, key=lambda r: abs(r["diff"]))
    return (
        f"`counter_timeline_agree` failed {len(failed)} cycle under the old rule ({pct(worst['diff'], 2, signed=True)} "
        f"against {pct(worst['recorded'], 2)}); recomputed under sigma-v2 that window's tolerance is "
        f"{pct(worst['tolerance'], 2)} (passes), under physics-v1 {pct(worst['physics'], 2)} "
        f"({'passes' if abs(worst['diff']) <= worst['physics'] else 'fails'})"
    )


@blocks("s12-vllm-cli-machine1")
def s12_vllm_cli_machine1(raw: Raw) -> str:
    cyc = cycle_lines(raw, f"{S6}/logs/04-vllm-cli.log")
    d, j, pm = ([float(c[k]) for c in cyc] for k in ("s", "j", "pm"))
    return (
        f"{len(cyc)} of 5 cycles before the bound, {span(min(d), max(d), f, 2)} s and {span(min(j), max(j), f, 0)} J "
        f"each (± {span(min(pm), max(pm), f, 1)} J)"
    )


@blocks("s12-feature-cycles")
def s12_feature_cycles(raw: Raw) -> str:
    d = [float(c["s"]) for name in ("prefix-cache", "ngram-speculative") for c in
         cycle_lines(raw, f"{S6}/logs/11-{name}.log")]  # fmt: skip
    return f"{span(min(d), max(d), f, 2)} s"


@blocks("s12-platform-raw")
def s12_platform_raw(raw: Raw) -> str:
    t = raw.folder(S6_FOLDERS["platform-raw-llama-1b-pytorch"])
    rows = []
    for p in sorted(t.summary["sweep_points"], key=lambda p: p["sweep_point"]):
        name = "static cache + compile" if "static_cache=True" in p["sweep_point"] else "eager"
        rows.append(
            [
                f"{p['precision']}, {name}",
                f"{f(p['tokens_per_s_mean'], 0)} ± {f(p['tokens_per_s_ci95'], 0)}",
                f"{g(p['j_per_token_mean'], 3)} ± {g(p['j_per_token_ci95'], 2)}",
                pct(p["j_per_token_cv"], 1),
            ]
        )
    n, failed = checks(t)
    return table(["sweep point", "tok/s (± t-CI)", "J/token (± t-CI)", "CV"], rows) + (
        f"\n\n{n - len(failed)} of {n} checks pass when the stored folder is re-validated with today's code."
    )


@blocks("s12-estimate")
def s12_estimate(raw: Raw) -> str:
    m = raw.find(
        f"{S6M2}/estimate-vs-measured.hand.txt",
        r"'lem/estimate_s': '(\S+)', 'lem/estimate_wh': '(\S+)', 'lem/estimate_wh_range': '(\S+)'",
    )
    return f"**{m[2]} Wh** (range {m[3]}) and {m[1]} s"


@blocks("s12-estimate-measured")
def s12_estimate_measured(raw: Raw) -> str:
    t = raw.folder(S6_FOLDERS["platform-raw-llama-1b-pytorch"])
    wh, s, cycles_wh = covered(t)
    return (
        f"**{f(wh, 2)} Wh** and {f(s, 1)} s over its {len(t.cycles)} cycles and warm-ups, the span the estimate covers "
        f"({f(cycles_wh, 2)} Wh in the cycles alone)"
    )


@blocks("s12-vllm-quarantine")
def s12_vllm_quarantine(raw: Raw) -> str:
    return raw.find(f"{S6M2}/platform-quarantine-REASON.txt", r"\(min (\S+ s)\)")[1]


@blocks("s12-vllm-cli-machine2")
def s12_vllm_cli_machine2(raw: Raw) -> str:
    t = raw.folder(S6_FOLDERS["vllm-cli"])
    p, (n, failed) = point(t), checks(t)
    runs = current_rule(t)
    back = raw.find(f"{S6M2}/logs/04-vllm-cli.log", r"idle power back within 10 % of (\S+) W after (\S+) s")
    return (
        f"{p['n_cycles']} cycles, **{f(p['tokens_per_s_mean'], 0)} ± {f(p['tokens_per_s_ci95'], 0)} tok/s, "
        f"{ci_text(p)} J/token**, TTFT p50 {f(1000 * p['ttft_p50_s_mean'], 0)} ± {f(1000 * p['ttft_p50_s_ci95'], 0)} "
        f"ms, TPOT {f(1000 * p['tpot_mean_s_mean'], 3)} ± {f(1000 * p['tpot_mean_s_ci95'], 3)} ms, CV "
        f"{pct(p['j_per_token_cv'], 1)}; {n - len(failed)} of {n} checks pass (counter vs timeline worst "
        f"{pct(max(abs(r['diff']) for r in runs), 2)}, tolerances recorded "
        f"{span(min(r['recorded'] for r in runs), max(r['recorded'] for r in runs), pct, 2)}); idle power back within "
        f"10 % of {back[1]} W {back[2]} s after the last cycle"
    )


@blocks("s12-partial-reference")
def s12_partial_reference(raw: Raw) -> str:
    rel = f"{S6M2}/logs/09-reference-pytorch.log"
    cyc = cycle_lines(raw, rel)
    j = np.array([float(c["j"]) for c in cyc])
    d = [float(c["s"]) for c in cyc]
    cv = j.std(ddof=1) / j.mean()
    verdict = evaluate(target("jpt-cv-1pct"), j / j.mean())  # equal work per cycle: J/token varies as J does
    return (
        f"{len(cyc)} cycles of {span(min(d), max(d), f, 2)} s and {span(j.min(), j.max(), f, 1)} J; its folder was "
        f"never written. Every cycle does the same work, so its J/token CV equals the CV of its cycle energies: "
        f"**{pct(cv, 2)}**. By the reference target (J/token CV ≤ 1 %, benchmarks/targets/jpt-cv-1pct.yaml): "
        f"**{verdict.word}**"
    )


# -- §13 session 7 ---------------------------------------------------------------------------------------------------
S7 = "raw/session7"
REFERENCE = {"pytorch": f"{S7}/reference-pytorch.tgz", "vllm": f"{S7}/reference-vllm.tgz"}


@blocks("s13-device")
def s13_device(raw: Raw) -> str:
    return device_line(raw, f"{S7}/logs/01-device.log")


@blocks("s13-calls")
def s13_calls(raw: Raw) -> str:
    last = raw.all(f"{S7}/device-calls.hand.txt", r"^\d+\s+.*\s(\S+)\s+(\S+)\s+(\d+)$")[-1]
    return f"{float(last[2]):.0f} s of the session's 1800 s of device time"


@blocks("s13-phases-start")
def s13_phases_start(raw: Raw) -> str:
    return raw.find(f"{S7}/progress", r"^(\S+) start 11-phases")[1]


def reference_table(raw: Raw, which: str, power: bool) -> str:
    rows = []
    for r in window_rows(raw.folder(REFERENCE[which])):
        row = [
            r["cycle"],
            f(r["window_s"], 2),
            f(r["tok_s"]),
            f"{f(r['counter_j'])} ({f(r['counter_pm_j'])})",
            f(r["timeline_j"]),
            pct(r["diff"], 2, signed=True),
            pct(r["tolerance"], 2),
            g(r["j_per_token"], 4),
        ]
        row[5] = f"**{row[5]}**" if abs(r["diff"]) > 0.005 else row[5]
        row.append(f"{f(r['power_sd_w'])} W / {f(r['power_min_w'], 0)}–{f(r['power_max_w'], 0)} W" if power
                   else f"{f(r['tail_ms'], 2)} ms")  # fmt: skip
        rows.append(row)
    last = "power sd / range in the window" if power else "last token → window end"
    return table(["cycle", "window s", "tok/s", "counter J (±)", "timeline J", "counter vs timeline", "its tolerance",
                  "J/token", last], rows)  # fmt: skip


@blocks("s13-reference-pytorch")
def s13_reference_pytorch(raw: Raw) -> str:
    return reference_table(raw, "pytorch", power=False)


@blocks("s13-reference-vllm")
def s13_reference_vllm(raw: Raw) -> str:
    return reference_table(raw, "vllm", power=True)


def reference_targets(t) -> list[str]:
    """The reference targets, judged post hoc by today's target files on the stored cycles."""
    agree = evaluate(target("window-agreement"), t.cycles.cross_check_rel_diff.tolist())
    cv = evaluate(target("jpt-cv-1pct"), t.cycles.j_per_token.tolist())
    long = (t.cycles.duration_s >= 20).all()
    within = int((t.cycles.cross_check_rel_diff.abs() <= 0.005).sum())
    return [
        f"counter vs timeline ≤ 0.5 % in every ≥ 20 s window (window-agreement.yaml; all windows ≥ 20 s: "
        f"{'yes' if long else 'no'}): **{agree.word}**, {within} of {len(t.cycles)} windows within it, worst "
        f"{pct(agree.value, 2)}",
        f"gross J/token CV ≤ 1 % (jpt-cv-1pct.yaml): **{cv.word}**, CV {pct(cv.value, 2)}",
    ]


def reference_stats(raw: Raw, which: str) -> str:
    t = raw.folder(REFERENCE[which])
    p, fig, (b, a), (n, failed) = point(t), point_figures(t.cycles), idle(t), checks(t)
    items = reference_targets(t) + [
        f"J/token **{ci_text(p, sig=4)}**, CV {pct(fig['cv_gross'], 2)} gross, {pct(fig['cv_net'], 2)} net; "
        f"{f(p['tokens_per_s_mean'], 0)} ± {f(p['tokens_per_s_ci95'], 0)} tok/s (CV {pct(fig['tok_s_cv'], 2)})",
        f"SM clock {fig['sm_clock'][0]:.0f}–{fig['sm_clock'][1]:.0f} MHz, "
        f"{fig['temp_c'][0]:.0f}–{fig['temp_c'][1]:.0f} °C; window tail at most {f(fig['tail_max_ms'], 2)} ms "
        f"(goal < 5 ms); {n - len(failed)} of {n} checks pass",
        f"idle **{f(b, 2)} W before, {f(a, 2)} W after**; net energy rests on their mean, "
        f"{f(t.summary['idle_power_w'])} W",
    ]
    return bullets(items)


@blocks("s13-reference-pytorch-stats")
def s13_reference_pytorch_stats(raw: Raw) -> str:
    return reference_stats(raw, "pytorch")


@blocks("s13-reference-vllm-stats")
def s13_reference_vllm_stats(raw: Raw) -> str:
    return reference_stats(raw, "vllm")


@blocks("s13-pytorch-settle")
def s13_pytorch_settle(raw: Raw) -> str:
    return f'"{raw.find(f"{S7}/logs/09-reference-pytorch.log", r"(idle power still above [^;]+)")[1]}"'


@blocks("s13-vllm-power")
def s13_vllm_power(raw: Raw) -> str:
    vllm = window_rows(raw.folder(REFERENCE["vllm"]))
    torch = window_rows(raw.folder(REFERENCE["pytorch"]))
    sd = lambda rows: span(min(r["power_sd_w"] for r in rows), max(r["power_sd_w"] for r in rows), f, 0)  # noqa: E731
    return (
        f"between {f(min(r['power_min_w'] for r in vllm), 0)} and {f(max(r['power_max_w'] for r in vllm), 0)} W within "
        f"a window (sd {sd(vllm)} W, against {sd(torch)} W for compiled PyTorch)"
    )


@blocks("s13-vllm-clock")
def s13_vllm_clock(raw: Raw) -> str:
    rows = window_rows(raw.folder(REFERENCE["vllm"]))
    fastest = min(rows, key=lambda r: r["window_s"])
    slow = [r for r in rows if r is not fastest]
    reasons = sorted({r["throttle_reasons"] for r in rows})
    return (
        f"throttle reasons {', '.join(f'{x:#x}' for x in reasons)} in every cycle; the SM clock fell to "
        f"{span(min(r['sm_clock_min_mhz'] for r in slow), max(r['sm_clock_min_mhz'] for r in slow), f, 0)} MHz, below "
        f"1900 MHz in {span(min(r['below_1900'] for r in slow), max(r['below_1900'] for r in slow), pct, 1)} of the "
        f"samples, in the four slower cycles, and to {f(fastest['sm_clock_min_mhz'], 0)} MHz in the fastest (cycle "
        f"{fastest['cycle']})"
    )


@blocks("s13-meter")
def s13_meter(raw: Raw) -> str:
    return bullets([
        "compiled PyTorch, bs16, 96 prompts (`logs/07-meter-overhead-compiled.log`): "
        + meter_summary(raw, f"{S7}/logs/07-meter-overhead-compiled.log"),
        "vLLM, 1024 prompts, max_num_seqs 256 (`logs/08-meter-overhead-vllm.log`): "
        + meter_summary(raw, f"{S7}/logs/08-meter-overhead-vllm.log"),
    ])  # fmt: skip


@blocks("s13-meter-above-one")
def s13_meter_above_one(raw: Raw) -> str:
    parts = []
    for name in ("07-meter-overhead-compiled", "08-meter-overhead-vllm"):
        on, off = meter_rounds(raw, f"{S7}/logs/{name}.log")
        parts.append(f"{sum(a > b for a, b in zip(on, off))} of {len(on)}")
    return " and ".join(parts)


@blocks("s13-hook")
def s13_hook(raw: Raw) -> str:
    rel = f"{S7}/logs/14-token-hook.log"
    lines = raw.all(
        rel, r"^the (hook|display): (throughput|J/token) (\S+) per round: median (\S+) \(min (\S+), max (\S+)\)"
    )
    cvs = raw.all(rel, r"^J/token CV, arm (\w+): (\S+) over")
    items = [f"{m[1]}, {m[2]} {m[3]}: median **{m[4]}** ({m[5]}–{m[6]})" for m in lines]
    items.append("J/token CV across rounds: " + ", ".join(f"{m[1]} {pct(float(m[2]), 2)}" for m in cvs))
    return bullets(items)


CAMPAIGN_KEYS = {"runs", "wall_s", "windows_s", "window_seconds_by_kind", "share_in_windows"}


@blocks("s13-campaign")
def s13_campaign(raw: Raw) -> str:
    """campaign.json (energy_assets.ops.evidence): wall time, the share in cycle windows, seconds by window kind, each
    run, and any further breakdown a later version writes there (a mapping of names to seconds), printed as it comes."""
    c = raw.json("platform-gpu/campaign.json")
    kinds = ", ".join(f"{k.replace('_', ' ')} {f(v)} s" for k, v in sorted(c.get("window_seconds_by_kind", {}).items()))
    runs = ", ".join(f"`{r['partition'].split('|')[0]}` {f(r['seconds'])} s" for r in c["runs"])
    extra = [
        f"{key.replace('_', ' ')}: " + ", ".join(f"{k.replace('_', ' ')} {f(v)} s" for k, v in value.items())
        for key, value in sorted(c.items())
        if key not in CAMPAIGN_KEYS
        and isinstance(value, dict)
        and all(isinstance(v, (int, float)) for v in value.values())
    ]
    share = c["share_in_windows"]
    return (
        f"{f(c['wall_s'])} s from the first measurement's start to the last one's end, **{f(c['windows_s'])} s inside "
        f"measured cycle windows: {pct(share, 1)}** (goal ≥ 85 %: {'met' if share >= 0.85 else 'not met'}); seconds by "
        f"window kind: {kinds}; runs: {runs}" + "".join(f"; {e}" for e in extra)
    )


@blocks("s13-platform-idle")
def s13_platform_idle(raw: Raw) -> str:
    parts = []
    for name, t in raw.folders(INSTANCE7):
        if t.summary["backend"] == "pytorch":
            b, a = idle(t)
            parts.append(f"`{name.split('/')[-2]}` {f(b)} W before, {f(a)} W after")
    return "; ".join(parts)


@blocks("s13-vllm-idle")
def s13_vllm_idle(raw: Raw) -> str:
    rel = f"{S7}/logs/10-reference-vllm.log"
    back = raw.find(rel, r"idle power back within 10 % of (\S+) W after (\S+) s")
    after = idle(raw.folder(REFERENCE["vllm"]))[1]
    vllm_part = [t for _, t in raw.folders(INSTANCE7) if t.summary["backend"] == "vllm"]
    if len(vllm_part) != 1:
        raise ReportError(f"{INSTANCE7}: expected one vLLM partition")
    return f"{f(after, 2)} W, back within 10 % after {back[2]} s; {f(idle(vllm_part[0])[1], 2)} W in the campaign"
