"""Prefill and decode energy: which part of a window's energy went into prompts, which into generated tokens.

Two methods, chosen by what the backend can tell (docs/energy.md, "Phase energy"):
- whole batches (PyTorch): a batch prefills from its start to its first token and decodes until its last token;
  the power timeline over those spans is prefill and decode energy, the rest of the window is "other".
- engine steps (vLLM, continuous batching): requests overlap, so spans cannot be told apart in time. Each engine
  step (its end on the engine's clock, and the prompt tokens it prefilled and the tokens it decoded) takes the
  energy of the timeline since the previous step, and that energy is split by the step's work: a least-squares fit
  of step duration = a + b * prompt tokens + c * decoded tokens over the cycle's steps gives the time a prompt token
  and a decoded token cost, and each step's prefill share is b * prompt / (b * prompt + c * decoded).
Timeline energies are scaled to the counter total, so prefill + decode + other = the measured energy.

Where the power field is known to sense only a short stretch before each of its updates (the H100's instantaneous
field, docs/benchmarks §22: gpu_ops.energy.meter.SENSED_STRETCH_S, recorded in the meter's `sensed_stretch_s`), a step
of a few hundredths of a second is seen only by chance, so a step is not given the timeline's integral over its own
span. Instead each update is read as a sample of the steps inside its sensed stretch: a non-negative least-squares
fit of reading = P0 + α · prompt tokens/s + β · decoded tokens/s over the window's updates, and each step takes
P0 · its duration + α · its prompt tokens + β · its decoded tokens (the P0 part split by the step's work share), all
scaled to the counter ("engine steps, sensed fit").

Per request: its prefill energy is its share (by prompt tokens) of the prefill energy of the step or batch that
produced its first token; its decode energy is the sum, over the steps after that, of one decoded token's share.
Its energy (`energy_j`) is the whole window's energy attributed by those token-steps: prefill + decode, with the
rest of the window (gaps between steps or batches, set-up, the tail) shared in proportion, so a cycle's requests sum
to its counter energy (docs/energy.md, "Per-request energy").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gpu_ops.energy.meter import WindowMeasurement, integrate

MIN_SENSED_UPDATES = 10  # fewer updates inside a window: the fit is not attempted (the timeline integral is used)
MIN_SENSED_KIND = 3  # nor when fewer updates sensed any prompt (or any decode) work that the window holds


@dataclass
class PhaseSplit:
    method: str | None  # "batches" | "engine steps"; None when energy is unmeasured
    prefill_j: float | None
    decode_j: float | None
    other_j: float | None
    request_prefill_j: pd.Series  # per request (index of the requests frame); NaN when not attributable
    request_decode_j: pd.Series
    total_j: float | None = None  # the window's counter energy that request_j shares out

    @property
    def request_j(self) -> pd.Series:
        """Each request's share of the window's energy: its prefill + decode energy scaled so the requests sum to the
        window (the unattributed rest is shared in proportion to the work each request was attributed). NaN when
        energy is unmeasured or no request was attributed any."""
        work = self.request_prefill_j.fillna(0.0) + self.request_decode_j.fillna(0.0)
        attributed = float(work.sum())
        if self.total_j is None or attributed <= 0:
            return pd.Series(np.nan, index=self.request_prefill_j.index)
        return work * (self.total_j / attributed)

    @property
    def ttft_decode_corr(self) -> float | None:
        """Pearson correlation across requests of prefill (TTFT) energy and decode energy."""
        both = pd.DataFrame({"p": self.request_prefill_j, "d": self.request_decode_j}).dropna()
        if len(both) < 3 or both.p.std() == 0 or both.d.std() == 0:
            return None
        return float(np.corrcoef(both.p, both.d)[0, 1])


def attribute(
    timeline: pd.DataFrame,
    req: pd.DataFrame,
    window: WindowMeasurement,
    steps: pd.DataFrame,
    sensed: tuple[float, float] | None = None,
) -> PhaseSplit:
    """Split a window's counter energy into prefill, decode and other, per request too; `sensed`: what each update of
    the power field reports (gpu_ops.energy.meter.sensed_stretch), when known."""
    nan = pd.Series(np.nan, index=req.index)
    if timeline.empty or window.gpu_energy_j is None or not window.timeline_energy_j:
        return PhaseSplit(None, None, None, None, nan, nan)
    power = timeline.groupby("t_s", as_index=False).power_w.sum()
    t, p = power.t_s.to_numpy(), power.power_w.to_numpy()
    scale = window.gpu_energy_j / window.timeline_energy_j

    def energy(a: float, b: float) -> float:
        a, b = max(a, window.start_s), min(b, window.end_s)
        return (integrate(t, p, a, b) or 0.0) * scale if b > a else 0.0

    if len(steps):
        steps = steps.sort_values("t_s").reset_index(drop=True)
        spans = step_spans(steps)
        coef = _sensed_fit(t, p, window, sensed, steps, spans) if sensed else None
        return _by_steps(steps, spans, req, energy, window.gpu_energy_j, coef, window.end_s - window.start_s)
    return _by_batches(req, energy, window.gpu_energy_j)


def batch_spans(b: pd.DataFrame) -> tuple[float, float, float] | None:
    """(start, first token, last token) of one whole batch: it prefills until its first token, then decodes."""
    first = b.prefill_end_s.min() if b.prefill_end_s.notna().any() else b.first_token_s.min()
    return None if pd.isna(first) else (b.scheduled_s.min(), first, b.last_token_s.max())


def phase_intervals(req: pd.DataFrame) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Prefill and decode spans of whole batches, merged where batches overlap (shown on the site's timeline)."""
    spans = [s for _, b in req.groupby("batch_id") if (s := batch_spans(b)) is not None]
    return _merge([(a, f) for a, f, _ in spans]), _merge([(f, e) for _, f, e in spans if pd.notna(e) and e > f])


def _by_batches(req: pd.DataFrame, energy, total_j: float) -> PhaseSplit:
    pre_req = pd.Series(np.nan, index=req.index)
    dec_req = pd.Series(np.nan, index=req.index)
    for _, b in req.groupby("batch_id"):
        spans = batch_spans(b)
        if spans is None:
            continue
        start, first, last = spans
        pre_req[b.index] = energy(start, first) * b.prompt_tokens / b.prompt_tokens.sum()
        dec_req[b.index] = (
            (energy(first, last) if pd.notna(last) and last > first else 0.0) * b.output_tokens / b.output_tokens.sum()
        )
    prefill_spans, decode_spans = phase_intervals(req)
    prefill = sum(energy(a, b) for a, b in prefill_spans)
    decode = sum(energy(a, b) for a, b in decode_spans)
    return PhaseSplit("batches", prefill, decode, total_j - prefill - decode, pre_req, dec_req, total_j)


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def step_costs(steps: pd.DataFrame) -> tuple[float, float]:
    """Seconds per prefilled prompt token and per decoded token, from the steps' durations (non-negative least
    squares with an intercept). Falls back to the medians of pure steps, then to one cost per token."""
    from scipy.optimize import nnls

    dt = np.diff(steps.t_s.to_numpy())
    x = steps.iloc[1:]
    if len(x) >= 3:
        coef, _ = nnls(np.column_stack([np.ones(len(x)), x.prompt_tokens, x.decode_tokens]).astype(float), dt)
        if coef[1] > 0 and coef[2] > 0:
            return float(coef[1]), float(coef[2])
    pre = x[(x.prompt_tokens > 0) & (x.decode_tokens == 0)]
    dec = x[(x.decode_tokens > 0) & (x.prompt_tokens == 0)]
    b = float(np.median(dt[pre.index - 1] / pre.prompt_tokens)) if len(pre) else 1.0
    c = float(np.median(dt[dec.index - 1] / dec.decode_tokens)) if len(dec) else 1.0
    return b, c


def step_spans(steps: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of time-ordered engine steps: each from the previous step's end (the first: one median gap)."""
    ends = steps.t_s.to_numpy()
    gaps = np.diff(ends)
    return np.concatenate([[ends[0] - (np.median(gaps) if len(gaps) else 0.0)], ends[:-1]]), ends


def _sensed_fit(t, p, window: WindowMeasurement, sensed, steps: pd.DataFrame, spans) -> tuple | None:
    """(P0, α, β) in W, J per prompt token and J per decoded token, fitted to the window's updates each read as the
    mean power of its sensed stretch; None when too few updates lie inside the window."""
    from scipy.optimize import nnls

    first, second = sensed
    starts, ends = spans
    changed = np.flatnonzero(np.diff(p) != 0) + 1  # samples where the reading was updated
    dur = np.maximum(ends - starts, 1e-9)
    rate_p, rate_d = steps.prompt_tokens.to_numpy() / dur, steps.decode_tokens.to_numpy() / dur
    rows, reads = [], []
    for k in changed:
        # the update happened between the sample before and this one: average the stretch over that interval
        lo, hi = t[k - 1] - first, t[k] - second
        if lo < window.start_s or hi > window.end_s:
            continue
        rates = np.zeros(2)
        for u in np.linspace(t[k - 1], t[k], 5):
            a, b = u - first, u - second
            overlap = np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0.0, None) / (first - second)
            rates += np.array([overlap @ rate_p, overlap @ rate_d]) / 5
        rows.append([1.0, *rates])
        reads.append(p[k])
    x = np.array(rows)
    if len(rows) < MIN_SENSED_UPDATES:
        return None
    for column, tokens in ((1, steps.prompt_tokens), (2, steps.decode_tokens)):
        if tokens.sum() > 0 and np.count_nonzero(x[:, column]) < MIN_SENSED_KIND:
            return None  # that kind of work was (almost) never sensed: its energy cannot be fitted
    coef, _ = nnls(x, np.array(reads))
    return tuple(float(v) for v in coef)


def _by_steps(
    steps: pd.DataFrame, spans, req: pd.DataFrame, energy, total_j: float, coef: tuple | None, window_s: float
) -> PhaseSplit:
    """Steps in time order with their (starts, ends); `coef`: the sensed fit's (P0, α, β), None for the timeline
    integral per step."""
    b, c = step_costs(steps)
    starts, ends = spans
    work_p, work_d = b * steps.prompt_tokens.to_numpy(), c * steps.decode_tokens.to_numpy()
    share = np.divide(work_p, work_p + work_d, out=np.zeros(len(steps)), where=(work_p + work_d) > 0)
    has_work = (work_p + work_d) > 0
    method = "engine steps"
    if coef is not None:
        # each step: its share of the base power by its work, plus its tokens at the fitted energies; the model's
        # total over the window (base power throughout) scaled to the counter
        p0, alpha, beta = coef
        base = p0 * (ends - starts) * has_work
        modelled = p0 * window_s + alpha * steps.prompt_tokens.sum() + beta * steps.decode_tokens.sum()
        scale = total_j / modelled if modelled > 0 else 0.0
        pre_step = (base * share + alpha * steps.prompt_tokens.to_numpy() * has_work) * scale
        dec_step = (base * (1 - share) + beta * steps.decode_tokens.to_numpy() * has_work) * scale
        method = "engine steps, sensed fit"
    else:
        step_j = np.array([energy(a, e) for a, e in zip(starts, ends)])
        pre_step, dec_step = step_j * share * has_work, step_j * (1 - share) * has_work
    pre_req = pd.Series(np.nan, index=req.index)
    dec_req = pd.Series(np.nan, index=req.index)
    first = req.prefill_end_s.where(req.prefill_end_s.notna(), req.first_token_s)
    decoded = steps.decode_tokens.to_numpy()
    per_token = np.divide(dec_step, decoded, out=np.zeros(len(steps)), where=decoded > 0)
    for i, row in req.iterrows():
        if pd.isna(first[i]):
            continue
        k = int(np.argmin(np.abs(ends - first[i])))  # the step that produced its first token
        pre_req[i] = pre_step[k] * row.prompt_tokens / max(steps.prompt_tokens[k], row.prompt_tokens)
        later = (ends > ends[k]) & (ends <= (row.last_token_s if pd.notna(row.last_token_s) else ends[k]))
        dec_req[i] = float(per_token[later].sum())
    prefill, decode = float(pre_step.sum()), float(dec_step.sum())
    return PhaseSplit(method, prefill, decode, total_j - prefill - decode, pre_req, dec_req, total_j)
