"""Blocks of §1-§9: the first GPU evidence (engine run, roofline, meter overhead, campaign share, Zeus, multi-GPU,
export at scale, the CPU parity run, the counter step), each read from the raw file it came with."""

from __future__ import annotations

import json
import re
import statistics

from benchmarks.decision import bootstrap_interval
from benchmarks.report.blocks import Blocks
from benchmarks.report.fmt import bullets, f, g, pct, span, table
from benchmarks.report.raw import Raw, ReportError

blocks = Blocks()


# -- helpers shared by the sections ----------------------------------------------------------------------------------
def printed_frame(raw: Raw, rel: str, first: str) -> list[dict]:
    """A pandas frame as `to_string(index=False)` printed it: the header line whose first column is `first`, and the
    rows under it up to the first line of another shape. Columns are right-aligned under their names, so each value
    ends where its name ends (an empty cell stays empty). Values stay text."""
    lines = raw.text(rel).splitlines()
    for i, line in enumerate(lines):
        if line.split()[:1] == [first]:
            ends = [m.end() for m in re.finditer(r"\S+", line)]
            names = line.split()
            rows = []
            for row in lines[i + 1 :]:
                if not row.strip() or len(row) > ends[-1] + 1 or any(row[e : e + 1] not in ("", " ") for e in ends):
                    break
                rows.append({n: row[s:e].strip() for n, s, e in zip(names, [0, *ends[:-1]], ends)})
            return rows
    raise ReportError(f"{rel}: no printed table with a first column {first!r}")


def json_lines(raw: Raw, rel: str) -> list[dict]:
    return [json.loads(line) for line in raw.text(rel).splitlines() if line.startswith("{")]


def point(tables, sweep_point: str | None = None) -> dict:
    """A sweep point's statistics from summary.json (the only one when `sweep_point` is None)."""
    points = tables.summary["sweep_points"]
    found = [p for p in points if sweep_point is None or p["sweep_point"] == sweep_point]
    if len(found) != 1:
        raise ReportError(f"{len(found)} sweep points named {sweep_point!r} in a summary.json")
    return found[0]


def idle(tables) -> tuple[float, float]:
    w = tables.windows
    return tuple(float(w[w.kind == k].avg_power_w.iloc[0]) for k in ("idle_before", "idle_after"))


def ci_text(p: dict, key: str = "j_per_token", sig: int = 4) -> str:
    return f"{g(p[f'{key}_mean'], sig)} ± {g(p[f'{key}_ci95'], 2)}"


_CHECKED: dict[str, tuple[int, list[str]]] = {}


def checks(tables) -> tuple[int, list[str]]:
    """The physics and consistency checks today's code runs on a stored folder: (how many, which failed). A folder is
    validated once per process, by its content hash (several blocks cite the same folder)."""
    from gpu_ops.validation import validate

    key = tables.summary["content_hash"]
    if key not in _CHECKED:
        results = validate(tables)
        _CHECKED[key] = (len(results), [r.check for r in results if not r.passed])
    return _CHECKED[key]


def paired(on: list[float], off: list[float]) -> dict:
    ratios = [a / b for a, b in zip(on, off)]
    lo, hi = bootstrap_interval(ratios)
    return {"ratios": ratios, "median": statistics.median(ratios), "lo": lo, "hi": hi}


# -- §1 the engine run -----------------------------------------------------------------------------------------------
S1 = "raw/llama-1b-summary.txt"


@blocks("s1-cycles")
def s1_cycles(raw: Raw) -> str:
    rows = printed_frame(raw, S1, "sweep_point")
    return table(
        ["sweep point", "cycle", "s", "tok/s", "counter J", "timeline J", "counter vs timeline", "net J", "J/token",
         "net J/token", "avg W"],
        [
            [r["sweep_point"].replace("batch_size=", "bs"), r["cycle"], f(float(r["duration_s"]), 2),
             f(float(r["tokens_per_s"]), 0), f(float(r["gross_energy_j"])), f(float(r["timeline_energy_j"])),
             pct(float(r["cross_check_rel_diff"]), 1, signed=True), f(float(r["net_energy_j"])),
             g(float(r["j_per_token"])), g(float(r["net_j_per_token"]), 3), f(float(r["avg_power_w"]))]
            for r in rows
        ],
    )  # fmt: skip


@blocks("s1-stats")
def s1_stats(raw: Raw) -> str:
    before, after = (float(x) for x in raw.find(S1, r"^idle W before/after: \[(\S+), (\S+)\]").groups())
    worst = raw.find(S1, r"counter_timeline_agree: ok - .*worst (\S+)%")[1]
    ok = len(raw.all(S1, r"^\w+: ok - "))
    items = [
        f"idle baseline {f(before)} W before, {f(after)} W after; net energy uses their mean, "
        f"{f((before + after) / 2)} W",
    ]
    for m in raw.all(
        S1, r"^batch_size=(\d+) J/token mean (\S+) ± (\S+) \(CV (\S+)\); net (\S+); tok/s (\S+) \(CV (\S+)\)"
    ):
        items.append(
            f"bs{m[1]}: J/token {m[2]} ± {m[3]} (95 % t-CI), CV {pct(float(m[4]), 1)}; {m[6]} tok/s, CV "
            f"{pct(float(m[7]), 1)}"
        )
    items.append(f"{ok} checks ran and passed; the worst counter-vs-timeline difference was {worst} %")
    return bullets(items)


# -- §2 the decode roofline ------------------------------------------------------------------------------------------
S2 = "raw/roofline-h200.log"
S2_DEFAULT = "raw/roofline-h200-compile-mode-default.log"


def roofline(raw: Raw, rel: str) -> dict[str, dict]:
    return {r["variant"].removeprefix("roofline-"): r for r in json_lines(raw, rel)}


@blocks("s2-roofline")
def s2_roofline(raw: Raw) -> str:
    names = {"eager-bs1": "eager bs1", "eager-bs64": "eager bs64", "compiled-bs1": "compiled static cache bs1",
             "compiled-bs64": "compiled static cache bs64"}  # fmt: skip
    rows = [
        [names[k], f(r["tokens_per_s"]), f(r["decode_tok_s"]), g(r["j_per_token"], 5), pct(r["j_per_token_cv"], 1),
         f(r["avg_power_w"]), f(r["warmup_s"]), f(100 * r["share_of_roofline"])]
        for k, r in roofline(raw, S2).items()
    ]  # fmt: skip
    return table(
        ["variant", "tok/s", "decode tok/s (bs / TPOT)", "J/token", "CV", "avg W", "warm-up s", "% of roofline"], rows
    )


@blocks("s2-bandwidth")
def s2_bandwidth(raw: Raw) -> str:
    return raw.find(S2, r"^measured copy bandwidth: (\d+ GB/s)")[1]


@blocks("s2-speedup")
def s2_speedup(raw: Raw) -> str:
    r = roofline(raw, S2)
    eager, comp = r["eager-bs1"], r["compiled-bs1"]
    return (
        f"{comp['decode_tok_s'] / eager['decode_tok_s']:.1f}× the decode rate and "
        f"{eager['j_per_token'] / comp['j_per_token']:.1f}× less energy per token than eager at bs1, "
        f"{f(100 * comp['share_of_roofline'])} % of the bandwidth roofline"
    )


@blocks("s2-default-mode")
def s2_default_mode(raw: Raw) -> str:
    return f"{f(100 * roofline(raw, S2_DEFAULT)['compiled-bs1']['share_of_roofline'])} %"


# -- §3 meter overhead -----------------------------------------------------------------------------------------------
S3 = {
    "eager, bs16 (`raw/meter_overhead.log`)": "raw/meter_overhead.log",
    "compiled, bs16, first sampler (`raw/meter_overhead_compiled-before-fix.log`)": (
        "raw/meter_overhead_compiled-before-fix.log"
    ),
    "compiled, bs16, current sampler (`raw/meter_overhead_compiled.log`)": "raw/meter_overhead_compiled.log",
}


def on_off_rounds(raw: Raw, rel: str) -> tuple[list[float], list[float]]:
    """The first script's rounds ('round N meter on : X tok/s' and '... off: Y'), paired by round."""
    on = {int(m[1]): float(m[2]) for m in raw.all(rel, r"^round (\d+) meter on :\s+(\S+) tok/s")}
    off = {int(m[1]): float(m[2]) for m in raw.all(rel, r"^round (\d+) meter off:\s+(\S+) tok/s")}
    return [on[i] for i in sorted(on)], [off[i] for i in sorted(on)]


@blocks("s3-overhead")
def s3_overhead(raw: Raw) -> str:
    rows = []
    for name, rel in S3.items():
        on, off = on_off_rounds(raw, rel)
        p = paired(on, off)
        rows.append([
            name, len(on), f(statistics.median(on)), f(statistics.median(off)),
            g(statistics.median(on) / statistics.median(off)), g(p["median"]), span(p["lo"], p["hi"], g, 4),
            f"{span(min(on), max(on), f, 0)} / {span(min(off), max(off), f, 0)}",
        ])  # fmt: skip
    return table(
        ["run", "rounds", "median tok/s on", "off", "ratio of medians", "paired ratio: median", "its 95 % bootstrap CI",
         "spread on / off"],
        rows,
    )  # fmt: skip


@blocks("s3-nvml")
def s3_nvml(raw: Raw) -> str:
    rows = [
        [f"`{m[1]}`", m[2], m[3]]
        for m in raw.all("raw/nvml_call_cost.log", r"^(nvml\S+)\s+median\s+(\S+) us\s+max\s+(\S+) us")
    ]
    return table(["NVML call (median of 200)", "median µs", "max µs"], rows)


# -- §4 campaign share -----------------------------------------------------------------------------------------------
CAMPAIGN = (
    r"wall (\S+) s: measured windows (\S+) s, warm-up (\S+) s, idle baseline (\S+) s, other .* (\S+) s\n.*?: (\S+)%"
)


@blocks("s4-campaign")
def s4_campaign(raw: Raw) -> str:
    runs = {
        "0 s (`COOLDOWN=0`)": "raw/campaign-h200-no-cooldown.log",
        "0.2 s": "raw/campaign-h200.log",
        "0.2 s, warm-up at every point": "raw/campaign-h200-warmup-every-point.log",
    }
    rows = []
    for name, rel in runs.items():
        m = raw.find(rel, CAMPAIGN)
        rows.append([name, *m.groups()[:5], f"{m[6]} %"])
    return table(["cooldown between cycles", "wall s", "measured windows s", "warm-up s", "idle baseline s", "other s",
                  "share"], rows)  # fmt: skip


@blocks("s4-cpu")
def s4_cpu(raw: Raw) -> str:
    return f"{raw.find('raw/campaign-cpu.hand.txt', CAMPAIGN)[6]} %"


# -- §5 Zeus ---------------------------------------------------------------------------------------------------------
ZEUS = {"20 Hz": "raw/zeus-crosscheck.txt", "50 Hz": "raw/zeus-50hz.txt"}


@blocks("s5-zeus")
def s5_zeus(raw: Raw) -> str:
    rows = []
    for hz, rel in ZEUS.items():
        r = printed_frame(raw, rel, "cycle")

        def col(k, fmt, r=r):
            return " / ".join(fmt(float(x[k])) for x in r)

        rows.append([
            hz, col("cycle", lambda v: str(int(v))), col("duration_s", lambda v: f(v, 2)),
            col("gross_energy_j", f), col("zeus_energy_j", f), col("timeline_energy_j", f),
            col("cross_check_rel_diff", lambda v: pct(v, 1, signed=True)),
        ])  # fmt: skip
    return table(["sampling", "cycle", "s", "our counter J", "Zeus J", "timeline J", "timeline vs counter"], rows)


@blocks("s5-agreement")
def s5_agreement(raw: Raw) -> str:
    rows = [x for rel in ZEUS.values() for x in printed_frame(raw, rel, "cycle")]
    same_j = all(x["zeus_energy_j"] == x["gross_energy_j"] for x in rows)
    relative = max(abs(float(x["zeus_vs_counter"])) for x in rows if "zeus_vs_counter" in x)
    worst = {hz: max(abs(float(x["cross_check_rel_diff"])) for x in printed_frame(raw, rel, "cycle"))
             for hz, rel in ZEUS.items()}  # fmt: skip
    return (
        f"Zeus's energy {'equals' if same_j else 'differs from'} our counter's to the printed mJ in all {len(rows)} "
        f"windows (relative difference at most {relative:.1e} where it was printed); the timeline's worst window "
        f"differs from the counter by {pct(worst['20 Hz'], 1)} at 20 Hz and {pct(worst['50 Hz'], 1)} at 50 Hz"
    )


# -- §6 multi-GPU ----------------------------------------------------------------------------------------------------
MG = "raw/multigpu"
MG_RUNS = {"TP=1": "llama8b-tp1__h200", "TP=2": "llama8b-tp2__2x-h200", "DP=2": "llama8b-dp2__2x-h200"}


def mg(raw: Raw, rel: str, contains: str):
    return raw.folder(rel, contains)


@blocks("s6-cycles")
def s6_cycles(raw: Raw) -> str:
    rows = []
    for name, key in MG_RUNS.items():
        t = _top_level(raw, key)  # the three runs of one machine; earlier-run/ and the others have their own blocks
        for c in t.cycles.itertuples():
            split = c.gpu_energy_by_device_j.split(";")
            energy = f(c.gross_energy_j) + ("" if len(split) < 2 else " (" + " + ".join(
                f(float(s.split("=")[1])) for s in split) + ")")  # fmt: skip
            rows.append([
                name, "gpu0" if len(split) < 2 else "gpu0+gpu1", c.cycle, f(c.duration_s, 2), f(c.tokens_per_s),
                energy, pct(c.cross_check_rel_diff, 1, signed=True), g(c.j_per_token), g(c.net_j_per_token),
                f(c.avg_power_w), f(1000 * c.tpot_mean_s),
            ])  # fmt: skip
    return table(["run", "GPUs", "cycle", "s", "tok/s", "energy J (per GPU)", "counter vs timeline", "J/token",
                  "net J/token", "avg W", "TPOT ms"], rows)  # fmt: skip


def _top_level(raw: Raw, key: str):
    found = [t for name, t in raw.folders(MG) if "/" not in name and key in name]
    if len(found) != 1:
        raise ReportError(f"{MG}: {len(found)} top-level result folders match {key!r}")
    return found[0]


@blocks("s6-points")
def s6_points(raw: Raw) -> str:
    p = {name: point(_top_level(raw, key)) for name, key in MG_RUNS.items()}
    base = p["TP=1"]
    items = []
    for name, s in p.items():
        text = (
            f"**{name}: {ci_text(s)} J/token (CV {pct(s['j_per_token_cv'], 1)}), {f(s['tokens_per_s_mean'])} ± "
            f"{f(s['tokens_per_s_ci95'])} tok/s, {f(s['tokens_per_j_mean'], 2)} tokens/J**"
        )
        if s is not base:
            e, t = s["j_per_token_mean"] / base["j_per_token_mean"], s["tokens_per_s_mean"] / base["tokens_per_s_mean"]
            text += f" ({e:.2f}× the energy per token of TP=1, {t:.2f}× its throughput"
            text += f" = {100 * t / 2:.0f} % of linear)" if name.startswith("DP") else ")"
        items.append(text)
    return bullets(items)


@blocks("s6-idle")
def s6_idle(raw: Raw) -> str:
    parts = []
    for name, key in MG_RUNS.items():
        b, a = idle(_top_level(raw, key))
        parts.append(f"{name} {f(b)} W before / {f(a)} W after")
    return "; ".join(parts)


@blocks("s6-checks")
def s6_checks(raw: Raw) -> str:
    out = []
    for name, key in MG_RUNS.items():
        n, failed = checks(_top_level(raw, key))
        out.append(f"{name}: {n - len(failed)} of {n} pass" + (f" (failed: {', '.join(failed)})" if failed else ""))
    return "; ".join(out)


@blocks("s6-dp2-before-fix")
def s6_dp2_before_fix(raw: Raw) -> str:
    rel = f"{MG}/dp2-before-warmup-fix/multigpu-summary.txt"
    rows = printed_frame(raw, rel, "cycle")
    cv = raw.find(rel, r"J/token \S+ ± \S+ \(CV (\S+)\)")[1]
    d = [float(r["duration_s"]) for r in rows]
    return (
        f"cycle 0 took {f(d[0], 2)} s and {g(float(rows[0]['j_per_token']), 3)} J/token against "
        f"{span(min(d[1:]), max(d[1:]), f, 2)} s "
        f"for cycles 1–2 (CV {pct(float(cv), 1)})"
    )


@blocks("s6-dp2-after-fix")
def s6_dp2_after_fix(raw: Raw) -> str:
    t = _top_level(raw, MG_RUNS["DP=2"])
    return f"cycle 0 {f(float(t.cycles.duration_s.iloc[0]), 2)} s, CV {pct(point(t)['j_per_token_cv'], 1)}"


@blocks("s6-sweep")
def s6_sweep(raw: Raw) -> str:
    t = mg(raw, f"{MG}/sweep-run", "")
    items = []
    for sp in ("parallelism=dp2", "parallelism=tp2"):
        s = point(t, sp)
        c = t.cycles[t.cycles.sweep_point == sp]
        items.append(
            f"`{sp}`: **{ci_text(s)} J/token (CV {pct(s['j_per_token_cv'], 1)}), {f(s['tokens_per_s_mean'])} tok/s**, "
            f"cycles {span(c.duration_s.min(), c.duration_s.max(), f, 2)} s, TPOT "
            f"{span(1000 * c.tpot_mean_s.min(), 1000 * c.tpot_mean_s.max(), f, 0)} ms"
        )
    n, failed = checks(t)
    worst = t.cycles.cross_check_rel_diff.abs().max()
    items.append(f"checks over its {len(t.cycles)} cycles: {n - len(failed)} of {n} pass; counter vs timeline worst "
                 f"{pct(worst, 1)}")  # fmt: skip
    return bullets(items)


@blocks("s6-h100")
def s6_h100(raw: Raw) -> str:
    t = mg(raw, f"{MG}/h100-tp1", "")
    s, (b, a), (n, failed) = point(t), idle(t), checks(t)
    return (
        f"**{ci_text(s)} J/token (CV {pct(s['j_per_token_cv'], 1)}), {f(s['tokens_per_s_mean'])} tok/s**, "
        f"{n - len(failed)} of {n} checks pass, idle {f(b)} W before / {f(a)} W after"
    )


@blocks("s6-earlier")
def s6_earlier(raw: Raw) -> str:
    parts = []
    for name in ("TP=1", "TP=2"):
        early = point(mg(raw, f"{MG}/earlier-run", MG_RUNS[name]))
        now = point(_top_level(raw, MG_RUNS[name]))
        diff = early["j_per_token_mean"] / now["j_per_token_mean"] - 1
        parts.append(f"{name} {ci_text(early)} J/token ({pct(diff, 1, signed=True)} against the run above)")
    return "; ".join(parts)


# -- §7 export at scale ----------------------------------------------------------------------------------------------
@blocks("s7-export")
def s7_export(raw: Raw) -> str:
    rel = "raw/export_scale_cpu.txt"
    m = raw.find(rel, r"^export: (\S+) s for (\d+) request rows \((\S+) MB requests.parquet, (\S+) MB in (\d+) files\)")
    mem = raw.find(rel, r"RSS (\d+) MiB, Arrow pool (\d+) MiB")
    goal = raw.find(rel, r"^goal <= (\d+) s: (\w+)")
    return table(
        ["rows in `requests`", "export time", "requests.parquet", "whole snapshot", "peak RSS", "Arrow pool peak"],
        [[f"{int(m[2]):,}", f"**{m[1]} s** (goal ≤ {goal[1]} s: {goal[2]})", f"{m[3]} MB", f"{m[4]} MB, {m[5]} files",
          f"{mem[1]} MiB", f"{mem[2]} MiB"]],
    )  # fmt: skip


# -- §8 the first CPU parity run -------------------------------------------------------------------------------------
S8 = "raw/vllm_parity_cpu.hand.txt"


@blocks("s8-parity-cpu")
def s8_parity_cpu(raw: Raw) -> str:
    rounds = raw.all(S8, r"^round (\d+): ours \[(\S+)\] tok/s; theirs (\S+) tok/s")
    rows = [[m[1], f(float(m[2])), f(float(m[3])), f(float(m[2]) / float(m[3]), 3)] for m in rounds]
    ours, theirs = ([float(m[i]) for m in rounds] for i in (2, 3))
    rows.append(["**median**", f"**{f(statistics.median(ours))}**", f"**{f(statistics.median(theirs))}**",
                 f"**{f(statistics.median(ours) / statistics.median(theirs), 3)}**"])  # fmt: skip
    return table(["round", "ours tok/s", "vLLM's tok/s", "ratio"], rows)


# -- §9 the counter step ---------------------------------------------------------------------------------------------
S9 = "raw/counter/counter_step.log"


@blocks("s9-counter")
def s9_counter(raw: Raw) -> str:
    lines = [line for line in raw.text(S9).splitlines()[1:] if line.strip()]
    shortened = [line.split(" (it updates")[0].split(", lengthen")[0] for line in lines]
    return "```\n" + "\n".join(shortened) + "\n```"


@blocks("s9-step")
def s9_step(raw: Raw) -> str:
    m = raw.find(S9, r"interval ms: min (\S+), p5 \S+, median (\S+), p95 \S+, max (\S+)")
    return f"every {m[2]} ms ({m[1]}–{m[3]} ms)"


@blocks("s9-idle-step")
def s9_idle_step(raw: Raw) -> str:
    m = raw.find(S9, r"^\s+50 ms windows: .*last: measured, (\S+) J")
    return f"{m[1]} J"


# -- the header: the device and the model of §1-§5 ------------------------------------------------------------------
@blocks("s0-device")
def s0_device(raw: Raw) -> str:
    m = raw.find("raw/device.txt", r"^(NVIDIA [^,]+), (\S+), (\S+) W, (\w+)$")
    return f"one **{m[1]}** ({float(m[3]):.0f} W power limit, MIG {m[4].lower()}), driver {m[2]}"


@blocks("s0-weights")
def s0_weights(raw: Raw) -> str:
    weights = {r["weight_bytes"] for r in json_lines(raw, S2)}
    if len(weights) != 1:
        raise ReportError(f"{S2}: the variants disagree on the weight bytes: {sorted(weights)}")
    return f"{weights.pop() / 1e9:.2f} GB of weights"
