"""Where wall time goes: a run's phases as spans on the wall clock, and their breakdown by kind.

A GPU held for a run costs its whole wall time, not only its measured windows. The measuring code records each phase
it passes through (engine start, warm-up, idle baselines, cycle windows, ...) as a span; `breakdown` turns spans into
seconds per kind over an interval, each instant counted once (where spans overlap, the most specific kind wins, in
KINDS order) and the rest of the interval as `other`, so the kinds sum to the interval's wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# most specific first: an instant inside a cycle window inside an engine's lifetime counts as cycle
KINDS = (
    "cycle",  # measured cycle windows
    "warmup",  # warm-up windows (a PyTorch compile lands here)
    "idle_baseline",  # idle-before and idle-after windows
    "settle",  # waiting for idle power to settle after the work
    "compile",  # compilation the engine reports while it starts (vLLM's torch.compile)
    "weights",  # loading or writing weights (vLLM's model loading; synthetic weights)
    "engine_start",  # the rest of starting an engine (its process, CUDA context, KV cache, CUDA graphs)
    "process_start",  # a run's process: from its start to the measurement (imports, Dagster's run worker)
    "bookkeeping",  # traces, records and tables around the windows; writing and checking results
    "queue_gap",  # between one queued run's end and the next one's start
)
OTHER = "other"


@dataclass
class Span:
    """One phase, [start, end] in seconds since the epoch; `parts` names seconds of it that belong to more specific
    kinds whose placement inside the span is not known (e.g. an engine's own compile seconds)."""

    kind: str
    start: float
    end: float
    label: str = ""
    parts: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "start": self.start, "end": self.end, "label": self.label, "parts": self.parts}

    @classmethod
    def from_dict(cls, d: dict) -> Span:
        return cls(d["kind"], float(d["start"]), float(d["end"]), d.get("label", ""), dict(d.get("parts") or {}))


class SpanRecorder:
    """Spans of one run, on the wall clock (time.time, comparable across processes and with Dagster's run records)."""

    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self.spans: list[Span] = []

    @contextmanager
    def span(self, kind: str, label: str = "") -> Iterator[Span]:
        """Record the block as a span of `kind` (also when it raises); the yielded span takes `parts` afterwards."""
        _check(kind)
        s = Span(kind, self.clock(), self.clock(), label)
        try:
            yield s
        finally:
            s.end = self.clock()
            self.spans.append(s)

    def add(self, kind: str, start: float, end: float, label: str = "", parts: dict[str, float] | None = None) -> None:
        for k in (kind, *(parts or {})):
            _check(k)
        self.spans.append(Span(kind, start, end, label, {k: float(v) for k, v in (parts or {}).items() if v}))

    def as_list(self) -> list[dict]:
        return [s.as_dict() for s in self.spans]


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"span kind {kind!r}: use one of {', '.join(KINDS)}")


def _winners(spans: list[Span], start: float, end: float) -> Iterator[tuple[float, int | None]]:
    """Each elementary piece of [start, end]: its seconds and the index of the most specific span covering it."""
    rank = {k: i for i, k in enumerate(KINDS)}
    edges = sorted({start, end, *(min(max(t, start), end) for s in spans for t in (s.start, s.end))})
    for a, b in zip(edges, edges[1:]):
        covering = [i for i, s in enumerate(spans) if s.start <= a and s.end >= b]
        yield b - a, min(covering, key=lambda j: rank[spans[j].kind]) if covering else None


def breakdown(spans: Iterable[Span], start: float, end: float) -> dict[str, float]:
    """Seconds per kind (every kind of KINDS and `other`) over [start, end]: each instant counted once, for the most
    specific span covering it; a span's `parts` move up to their seconds from its own kind to theirs. Sums to
    end - start."""
    spans = [s for s in spans if s.end > start and s.start < end]
    out = dict.fromkeys((*KINDS, OTHER), 0.0)
    own: dict[int, float] = {}  # seconds each span kept for its own kind
    for seconds, i in _winners(spans, start, end):
        out[OTHER if i is None else spans[i].kind] += seconds
        if i is not None:
            own[i] = own.get(i, 0.0) + seconds
    for i, seconds in own.items():
        left = seconds
        for kind, part in spans[i].parts.items():
            moved = min(max(part, 0.0), left)
            out[spans[i].kind] -= moved
            out[kind] += moved
            left -= moved
    return out


def apportion(spans: Iterable[Span], start: float, end: float, labels: list[str]) -> dict[str, float]:
    """[start, end]'s seconds shared among `labels` (the sweep points a run measured): what a span labelled with one
    of them covers goes to it (its engine start, warm-up, cycles); the rest (idle baselines, settling, bookkeeping,
    anything unrecorded) is shared equally. Sums to end - start."""
    spans = [s for s in spans if s.end > start and s.start < end]
    if not labels:
        return {}
    out = dict.fromkeys(labels, 0.0)
    shared = 0.0
    for seconds, i in _winners(spans, start, end):
        if i is not None and spans[i].label in out:
            out[spans[i].label] += seconds
        else:
            shared += seconds
    return {label: v + shared / len(labels) for label, v in out.items()}
