"""Every column the engine and the platform write, defined once: name, type, unit, meaning, and how it is used.

A `Table` is an ordered set of `Column`s. The tables of a result folder, the per-sweep-point statistics, the
leaderboard and the dataset's provenance table are defined here, and so is everything derived from them: the
typed record of each row kind (`Table.record`), the frame a run writes (`Table.frame`, exact columns and types),
the check of an uploaded folder's columns (gpu_ops.results), the statistics (gpu_ops.stats), the leaderboard and
the site's columns, the dataset card and the platform's Dagster table schemas. So is each `View`: the columns one
reader reads or shows of a table (a Dagster preview, a notification, a page's table, the run summary), with the labels
and units it shows them by; other modules import the view instead of listing column names.

A column used by several tables with one meaning is one `Column` object, shared. This module imports nothing of
the engine: every other module may read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

Dtype = Literal["str", "float", "int", "int?", "bool", "bool?", "list[float]"]
"""Stored type. `str` and `float` may be missing (empty, never 0); `int` and `bool` may not; `int?` and `bool?` may.
`list[float]` is a list of numbers (possibly empty)."""
Better = Literal["lower", "higher"]

_PANDAS = {
    "str": "str",
    "float": "float64",
    "int": "int64",
    "int?": "Int64",
    "bool": "bool",
    "bool?": "boolean",
    "list[float]": "object",
}
_PYTHON = {
    "str": str | None,
    "float": float | None,
    "int": int,
    "int?": int | None,
    "bool": bool,
    "bool?": bool | None,
    "list[float]": list[float],
}
_REQUIRED_VALUE = ("int", "bool", "list[float]")


@dataclass(frozen=True)
class Column:
    """One column.

    Args:
        name: the column's name in every table that holds it.
        dtype: its stored type (see `Dtype`).
        unit: the unit of its values ("" for text, identifiers and plain numbers).
        meaning: what a value is, in a sentence (the dataset card, the Dagster UI and the site show it).
        summarised: a figure of the cycles table that the statistics summarise per sweep point
            (`<name>_{mean,std,ci95,cv}`).
        shown: a leaderboard column the site shows in its table.
        better: which way is better ("lower" J/token, "higher" tokens/J), for ranking and sorting; None: neither.
        from_counter: computed from the GPU energy counter: its statistics are missing for a sweep point with an
            unmeasured cycle (never computed from the cycles that happened to be measured).
        optional: added after the first published result folders: a folder written before may lack it.
        label: a short name for table headers; "" uses the name.
    """

    name: str
    dtype: Dtype
    unit: str
    meaning: str
    summarised: bool = False
    shown: bool = False
    better: Better | None = None
    from_counter: bool = False
    optional: bool = False
    label: str = ""

    @property
    def title(self) -> str:
        """The column's header in a table: its label, else its name in words."""
        return self.label or self.name.replace("_", " ")


STATISTICS_OF = {
    "mean": "mean over cycles of",
    "std": "sample standard deviation (ddof=1) over cycles of",
    "ci95": "half-width of the 95 % confidence interval (Student t, n-1 degrees of freedom) of the mean of",
    "cv": "coefficient of variation (std / mean) over cycles of",
}


def statistic(metric: Column, kind: str) -> Column:
    """The statistics column `<metric>_<kind>` of a summarised cycle metric; the mean keeps its direction and label."""
    return Column(
        f"{metric.name}_{kind}",
        "float",
        "" if kind == "cv" else metric.unit,
        f"{STATISTICS_OF[kind]}: {metric.meaning}",
        better=metric.better if kind == "mean" else None,
        from_counter=metric.from_counter,
        label=metric.label if kind == "mean" else "",
    )


def shown(column: Column) -> Column:
    """`column` as a leaderboard column the site shows."""
    return replace(column, shown=True)


class Record:
    """Base of the generated row records: one keyword field per column, in the table's order."""

    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class Table:
    """An ordered set of columns: a stored table, or a group of columns that one function computes.

    Args:
        name: the table's name (a result folder's file, a dataset config) or the group's.
        parts: columns and other tables, concatenated in order; a name may appear once.
        record: the name of the generated record class.
        free_prefix: free-form columns this table may also hold (sweep_points: `backend_<key>`, the backend's load
            details, which differ by backend); their types are inferred.
        free_meaning: what a free-form column holds (the card and the UI describe each by it and its key).
    """

    def __init__(
        self, name: str, *parts: Column | Table, record: str = "", free_prefix: str = "", free_meaning: str = ""
    ):
        cols: list[Column] = []
        for part in parts:
            cols += part.columns if isinstance(part, Table) else [part]
        names = [c.name for c in cols]
        if len(set(names)) != len(names):
            raise ValueError(f"table {name}: columns {sorted({n for n in names if names.count(n) > 1})} appear twice")
        self.name, self.columns = name, tuple(cols)
        self.record_name = record or "".join(w.capitalize() for w in name.split("_")) + "Row"
        self.free_prefix, self.free_meaning = free_prefix, free_meaning
        self._by_name = {c.name: c for c in cols}

    def __repr__(self) -> str:
        return f"Table({self.name!r}, {len(self.columns)} columns)"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __getitem__(self, name: str) -> Column:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def where(self, **flags: Any) -> tuple[Column, ...]:
        """The columns whose attributes equal `flags`, e.g. `CYCLES.where(summarised=True)`."""
        return tuple(c for c in self.columns if all(getattr(c, k) == v for k, v in flags.items()))

    def describe(self, name: str) -> Column | None:
        """The definition of a column of this table (a free-form one by its rule), or None when it has none."""
        if name in self._by_name:
            return self._by_name[name]
        if self.free_prefix and name.startswith(self.free_prefix) and len(name) > len(self.free_prefix):
            return Column(name, "str", "", f"{self.free_meaning} '{name.removeprefix(self.free_prefix)}'")
        return None

    @cached_property
    def record(self) -> type:
        """The typed record of one row: a frozen dataclass with one keyword field per column (missing or unknown
        fields fail at construction)."""
        fields = [(c.name, _PYTHON[c.dtype], dataclasses.field(metadata={"column": c})) for c in self.columns]
        cls = dataclasses.make_dataclass(
            self.record_name, fields, bases=(Record,), kw_only=True, frozen=True, slots=True
        )
        cls.__module__ = __name__
        return cls

    def row(self, *parts: Record, **values: Any) -> Record:
        """This table's record from records of its parts (groups of its columns) and the remaining values."""
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part.as_dict())
        merged.update(values)
        return self.record(**merged)

    def frame(self, rows: Iterable[Record], free: Iterable[Mapping[str, Any]] | None = None) -> pd.DataFrame:
        """The table of `rows` (records of this table): exactly its columns in order, each of its stored type, so
        tables from every machine share one schema. `free`: each row's free-form columns (see `free_prefix`)."""
        rows = list(rows)
        wrong = sorted({type(r).__name__ for r in rows if not isinstance(r, self.record)})
        if wrong:
            raise TypeError(f"table {self.name}: rows must be {self.record_name}, got {', '.join(wrong)}")
        df = pd.DataFrame(
            {c.name: _typed(self.name, c, [getattr(r, c.name) for r in rows]) for c in self.columns},
            index=pd.RangeIndex(len(rows)),
        )
        if free is not None:
            extra = pd.DataFrame(list(free), index=df.index)
            for name in extra.columns:
                if self.describe(name) is None or name in self._by_name:
                    raise ValueError(
                        f"table {self.name}: free-form column {name!r} must start with {self.free_prefix!r}"
                    )
            df = pd.concat([df, extra], axis=1)
        return df

    def conform(self, df: pd.DataFrame) -> pd.DataFrame:
        """`df` as this table: its columns in order, each cast to its stored type; a missing or extra column is an
        error naming it (a computation and the schema disagree)."""
        missing = [n for n in self.names if n not in df.columns]
        extra = [n for n in df.columns if n not in self._by_name]
        if missing or extra:
            raise ValueError(
                f"table {self.name}: columns differ from gpu_ops/schema.py: missing {missing}, "
                f"not in the schema {extra}"
            )
        return pd.DataFrame(
            {c.name: _typed(self.name, c, df[c.name]) for c in self.columns}, index=pd.RangeIndex(len(df))
        )


@dataclass(frozen=True)
class Shown:
    """A column as one view shows it: its header, its unit and the factor from the stored unit to the shown one (1000:
    seconds shown in ms). By default the column's own title and unit, as stored."""

    column: Column
    label: str
    unit: str
    scale: float = 1.0

    @property
    def name(self) -> str:
        return self.column.name


class View:
    """A named, ordered selection of one table's columns: what one reader reads or shows of it (a Dagster preview, a
    notification, a page's table). Defined here, beside the tables, so renaming a column is a change to this file.

    Args:
        name: what the view is for.
        table: the table it selects from; a name the table does not hold fails here, at import.
        entries: each a column name, or `(name, label)`, `(name, label, unit)` or `(name, label, unit, scale)` where
            the view shows the column otherwise: label "" is the column's title, unit None its stored unit ("": none).
    """

    def __init__(self, name: str, table: Table, *entries: str | tuple):
        fields = []
        for entry in entries:
            column_name, *display = (entry,) if isinstance(entry, str) else entry
            label, unit, scale = (*display, *("", None, 1.0)[len(display) :])
            if column_name not in table:
                raise ValueError(
                    f"view {name}: {column_name!r} is not a column of table {table.name} (gpu_ops/schema.py)"
                )
            column = table[column_name]
            fields.append(Shown(column, label or column.title, column.unit if unit is None else unit, scale))
        if len({f.name for f in fields}) != len(fields):
            raise ValueError(f"view {name}: a column appears twice")
        self.name, self.table, self.fields = name, table, tuple(fields)
        self._by_name = {f.name: f for f in fields}

    def __repr__(self) -> str:
        return f"View({self.name!r} of {self.table.name}: {', '.join(self.names)})"

    def __iter__(self):
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, name: str) -> Shown:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(f.column for f in self.fields)


def plain(value: Any) -> Any:
    """A stored cell as a plain Python value: None for a missing one, Python numbers for numpy ones."""
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def plain_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as plain values (JSON as summary.json stores it: null for a missing value, never NaN)."""
    return [{k: plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _typed(table: str, column: Column, values: pd.Series | list) -> pd.Series:
    """`values` as a series of the column's stored type; a missing value where the type allows none is an error."""
    dtype = _PANDAS[column.dtype]
    series = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values, dtype="object")
    missing = series.isna().to_numpy() if column.dtype != "list[float]" else series.map(lambda v: v is None).to_numpy()
    if missing.any() and column.dtype in _REQUIRED_VALUE:
        raise ValueError(
            f"{table}.{column.name}: missing in row {int(missing.argmax())}; a {column.dtype} column needs "
            "a value in every row (gpu_ops/schema.py)"
        )
    if column.dtype == "list[float]":
        return pd.Series([[float(x) for x in v] for v in series], dtype="object")
    if str(series.dtype) == dtype:
        return series
    if missing.any():  # None, NaN and pd.NA alike: the missing value of the target type
        series = series.astype("object").where(~missing, None)
    try:
        return series.astype(dtype)
    except (TypeError, ValueError, ArithmeticError) as exc:  # pyarrow's errors derive from these
        raise ValueError(
            f"{table}.{column.name}: values such as {series.dropna().iloc[:1].tolist()} are not "
            f"{column.dtype} ({type(exc).__name__}: {exc}); gpu_ops/schema.py defines the column"
        ) from None


# -- columns shared by several tables ---------------------------------------------------------------------------
S, J, W = "s", "J", "W"
SWEEP_POINT = Column(
    "sweep_point",
    "str",
    "",
    "label of the sweep point (its sweep values), 'default' without a sweep",
    label="sweep point",
)
CYCLE = Column("cycle", "int", "", "cycle index within the sweep point (0-based)")
MODEL = Column(
    "model",
    "str",
    "",
    "model spec: builtin:, synthetic: (real architecture, random weights), a local folder or a hub id",
)
BACKEND = Column("backend", "str", "", "inference backend: pytorch, vllm or tensorrt")
HARDWARE = Column("hardware", "str", "", "hardware profile slug, e.g. h100-80gb-hbm3, 2x-h200 or cpu-intel-xeon-2c")
WEIGHTS = Column(
    "weights",
    "str",
    "",
    "'real' or 'synthetic' (random weights with the real model's shapes: same FLOPs and bytes, meaningless text)",
)
EXPERIMENT_KEY = Column("experiment_key", "str", "", "partition key part `model__backend`")
PRECISION = Column("precision", "str", "", "weight/activation precision: fp32, fp16, bf16, int8, int4")
BATCH_SIZE = Column(
    "batch_size",
    "int",
    "requests",
    "batch size (whole-batch strategies) or cap on running sequences (continuous batching)",
    label="batch",
)
PARALLELISM = Column(
    "parallelism",
    "str",
    "",
    "how the model was split over the GPUs: tpN tensor, ppN pipeline, dpN data-parallel replicas; 'single' = not split",
    optional=True,
)
POINT_CONFIG_HASH = Column(
    "config_hash", "str", "", "the sweep point's hash (`sweep_point_hash`): of its fully resolved config"
)
GPU_COUNT = Column("gpu_count", "int", "GPUs", "GPUs the run used (0 on a CPU)")
GPU_SECONDS = Column(
    "gpu_seconds",
    "float",
    "GPU·s",
    "GPU time the sweep point cost: its share of the wall time the run held its GPUs (its own engine start, warm-up "
    "and cycles, plus an equal share of the run's idle baselines, settling and bookkeeping) times the GPUs held; "
    "empty on a CPU or for results written before it was recorded",
    optional=True,
    label="GPU-s",
)
ENERGY_STATUS = Column(
    "energy_status",
    "str",
    "",
    "'measured' or 'unmeasured' (then unmeasured_reason says why; energy columns are empty, never 0)",
)
UNMEASURED_REASON = Column("unmeasured_reason", "str", "", "why energy is unmeasured")
IDLE_POWER = Column("idle_power_w", "float", W, "idle GPU power: mean of the idle windows before and after the run")
CROSS_CHECK_TOLERANCE = Column(
    "cross_check_tolerance", "float", "fraction", "allowed |timeline - counter| / counter of a window (docs/energy.md)"
)
FINGERPRINT_HASH = Column("fingerprint_hash", "str", "", "hash of the environment fingerprint")
PARTITION_KEY = Column(
    "partition_key", "str", "", "Dagster partition `experiment|hardware`: the key to the raw run in the Dagster UI"
)

# -- the meter's readings of a window (gpu_ops.energy.WindowMeasurement) ----------------------------------------
WINDOW_START = Column("start_s", "float", S, "window start on the run clock")
WINDOW_END = Column("end_s", "float", S, "window end on the run clock")
DURATION = Column("duration_s", "float", S, "measured window length", summarised=True)
GPU_ENERGY = Column(
    "gpu_energy_j",
    "float",
    J,
    "GPU energy from the NVML energy counter (edges aligned to its updates), summed over the run's GPUs",
)
ENERGY_UNCERTAINTY = Column(
    "energy_uncertainty_j",
    "float",
    J,
    "± bound on the window's counter energy from aligning its edges to counter updates",
    summarised=True,
    better="lower",
    optional=True,
)
EDGES_ALIGNED = Column(
    "edges_aligned",
    "bool",
    "",
    "true when every GPU's counter was read at an observed update at both window edges",
    optional=True,
)
GPU_ENERGY_BY_DEVICE = Column(
    "gpu_energy_by_device_j", "str", J, "per-GPU counter energy, `device=J` pairs separated by ';'"
)
TIMELINE_ENERGY = Column(
    "timeline_energy_j",
    "float",
    J,
    "independent estimate: instantaneous power sampled in a separate process, integrated over the window",
)
CROSS_CHECK = Column(
    "cross_check_rel_diff",
    "float",
    "fraction",
    "(timeline energy - counter energy) / counter energy",
    summarised=True,
    from_counter=True,
    label="counter vs timeline",
)
WINDOW_TOLERANCE = replace(
    CROSS_CHECK_TOLERANCE,
    optional=True,
    meaning="allowed |timeline - counter| / counter for this window's length (docs/energy.md)",
)
N_SAMPLES = Column("n_samples", "int", "samples", "power samples inside the window")
AVG_POWER = Column(
    "avg_power_w", "float", W, "gross energy / duration", summarised=True, from_counter=True, label="power"
)
PEAK_POWER = Column("peak_power_w", "float", W, "highest power sample in the window", summarised=True)
TEMP_MIN = Column("temp_min_c", "float", "°C", "lowest GPU temperature seen", optional=True)
TEMP_MAX = Column("temp_max_c", "float", "°C", "highest GPU temperature seen", optional=True)
CLOCK_MIN = Column("sm_clock_min_mhz", "float", "MHz", "lowest SM clock seen", optional=True)
CLOCK_MAX = Column("sm_clock_max_mhz", "float", "MHz", "highest SM clock seen", optional=True)
MEM_CLOCK_MIN = Column(
    "mem_clock_min_mhz", "float", "MHz", "lowest memory clock read at the window's edges", optional=True
)
MEM_CLOCK_MAX = Column(
    "mem_clock_max_mhz", "float", "MHz", "highest memory clock read at the window's edges", optional=True
)
WINDOW_POWER_LIMIT = Column(
    "window_power_limit_w",
    "float",
    W,
    "enforced power limit at the window's end, summed over the run's GPUs; empty when NVML does not report it",
    optional=True,
)
MEMORY_POWER = Column(
    "memory_power_w",
    "float",
    W,
    "GPU memory power at the window's end (NVML's average over its memory scope), summed over the GPUs; empty where "
    "NVML does not report it (before Hopper), never 0",
    optional=True,
)
THROTTLE = Column(
    "throttle_reasons", "int", "bitmask", "OR of NVML clock-event reasons seen (0x1 = idle)", optional=True
)
FOREIGN = Column(
    "foreign_processes", "str", "", "PIDs of other processes seen on the run's GPUs during the window, separated by ','"
)
TOO_SHORT = Column("too_short", "bool", "", "true when the window spans fewer than 10 counter updates (~1 s)")
CPU_STATUS = Column("cpu_energy_status", "str", "", "'measured' (RAPL) or 'unmeasured'")
CPU_REASON = Column("cpu_unmeasured_reason", "str", "", "why CPU energy is unmeasured")
CPU_ENERGY = Column("cpu_energy_j", "float", J, "CPU package energy from RAPL", summarised=True, better="lower")
ZEUS = Column(
    "zeus_energy_j",
    "float",
    J,
    "the same window read by Zeus's ZeusMonitor (energy.zeus; it reads the same "
    "counter: a comparison, not an independent check)",
    optional=True,
)
MIG_ATTRIBUTION = Column(
    "mig_attribution",
    "str",
    "",
    "how a MIG slice's energy is attributed (the parent GPU's counter is shared)",
    optional=True,
)
MIG_ENERGY = Column(
    "mig_attributed_energy_j", "float", J, "energy attributed to the MIG slice by compute fraction", optional=True
)

WINDOW_READINGS = Table(
    "window_readings",
    Column("name", "str", "", "window name: `<sweep point>/<kind>`, `idle-before` or `idle-after`"),
    WINDOW_START,
    WINDOW_END,
    DURATION,
    Column("gpu_energy_status", "str", "", "'measured' or 'unmeasured' (then gpu_unmeasured_reason says why; never 0)"),
    Column("gpu_unmeasured_reason", "str", "", "why GPU energy is unmeasured"),
    GPU_ENERGY,
    ENERGY_UNCERTAINTY,
    EDGES_ALIGNED,
    GPU_ENERGY_BY_DEVICE,
    TIMELINE_ENERGY,
    CROSS_CHECK,
    WINDOW_TOLERANCE,
    N_SAMPLES,
    AVG_POWER,
    PEAK_POWER,
    TEMP_MIN,
    TEMP_MAX,
    CLOCK_MIN,
    CLOCK_MAX,
    THROTTLE,
    FOREIGN,
    TOO_SHORT,
    CPU_STATUS,
    CPU_REASON,
    CPU_ENERGY,
    ZEUS,
    MIG_ATTRIBUTION,
    MIG_ENERGY,
    MEM_CLOCK_MIN,
    MEM_CLOCK_MAX,
    WINDOW_POWER_LIMIT,
    MEMORY_POWER,
)
"""A window as the meter measured it: the fields of WindowMeasurement, flattened (its dict and list as text)."""

WINDOWS = Table(
    "windows",
    WINDOW_READINGS,
    Column("kind", "str", "", "window kind: idle_before, warmup, cycle, idle_after"),
    replace(SWEEP_POINT, meaning="sweep point of a warm-up or cycle window; empty for idle windows"),
    Column("cycle", "float", "", "cycle index of a cycle window (0-based); empty for the other kinds"),
    record="WindowRow",
)

# -- cycles -----------------------------------------------------------------------------------------------------
CYCLE_KEY = Table("cycle_key", SWEEP_POINT, CYCLE)
MEASURED = Table("measured", MODEL, BACKEND, HARDWARE, WEIGHTS)
"""What was measured where: statistics never mix rows that differ in any of these."""
RUN_IDENTITY = Table("run_identity", MEASURED, EXPERIMENT_KEY)
POINT_SETTINGS = Table("point_settings", PRECISION, BATCH_SIZE, PARALLELISM, POINT_CONFIG_HASH)
RUN_GPUS = Table(
    "run_gpus", Column("power_limit_w", "float", W, "enforced power limit, summed over the run's GPUs"), GPU_COUNT
)
CYCLE_WINDOW = Table(
    "cycle_window",
    Column("window_start_s", "float", S, "measured window start on the run clock"),
    Column("window_end_s", "float", S, "measured window end on the run clock"),
    TIMELINE_ENERGY,
    ENERGY_UNCERTAINTY,
    EDGES_ALIGNED,
    CROSS_CHECK,
    WINDOW_TOLERANCE,
    TOO_SHORT,
    N_SAMPLES,
    FOREIGN,
    THROTTLE,
    TEMP_MIN,
    TEMP_MAX,
    CLOCK_MIN,
    CLOCK_MAX,
    ZEUS,
    MIG_ATTRIBUTION,
    MIG_ENERGY,
    GPU_ENERGY_BY_DEVICE,
)
"""What a cycle repeats of its window (window_start_s/window_end_s are its start_s/end_s)."""
WINDOW_FIELD = {"window_start_s": "start_s", "window_end_s": "end_s"}
"""Cycle columns named differently from the window field they repeat."""

CYCLE_METRICS = Table(
    "cycle_metrics",
    DURATION,
    Column("requests", "int", "requests", "requests completed in the cycle"),
    Column("input_tokens", "int", "tokens", "prompt tokens in the cycle"),
    Column("output_tokens", "int", "tokens", "tokens generated in the cycle"),
    Column(
        "tokens_per_s",
        "float",
        "tokens/s",
        "output tokens / window duration",
        summarised=True,
        better="higher",
        label="throughput",
    ),
    Column("requests_per_s", "float", "requests/s", "requests / window duration", summarised=True, better="higher"),
    ENERGY_STATUS,
    UNMEASURED_REASON,
    Column(
        "gross_energy_j",
        "float",
        J,
        "GPU energy of the window (counter), idle included",
        summarised=True,
        better="lower",
        from_counter=True,
    ),
    IDLE_POWER,
    Column(
        "net_energy_j",
        "float",
        J,
        "gross energy - idle power x duration",
        summarised=True,
        better="lower",
        from_counter=True,
    ),
    Column(
        "j_per_token",
        "float",
        "J/token",
        "gross energy / output tokens",
        summarised=True,
        better="lower",
        from_counter=True,
        label="energy",
    ),
    Column(
        "net_j_per_token",
        "float",
        "J/token",
        "net energy / output tokens",
        summarised=True,
        better="lower",
        from_counter=True,
    ),
    Column(
        "tokens_per_j",
        "float",
        "tokens/J",
        "output tokens / gross energy",
        summarised=True,
        better="higher",
        from_counter=True,
        label="efficiency",
    ),
    Column(
        "j_per_request",
        "float",
        "J/request",
        "gross energy / requests",
        summarised=True,
        better="lower",
        from_counter=True,
    ),
    AVG_POWER,
    PEAK_POWER,
    Column(
        "peak_memory_bytes",
        "float",
        "bytes",
        "peak device memory allocated by the backend (empty when the engine preallocates)",
        summarised=True,
        better="lower",
    ),
    Column(
        "ttft_mean_s", "float", S, "mean time to first token (first token - arrival)", summarised=True, better="lower"
    ),
    Column("ttft_p50_s", "float", S, "median TTFT", summarised=True, better="lower", label="TTFT p50"),
    Column("ttft_p99_s", "float", S, "99th percentile TTFT", summarised=True, better="lower", label="TTFT p99"),
    Column(
        "tpot_mean_s",
        "float",
        S,
        "mean time per output token, (E2E - TTFT) / (output tokens - 1)",
        summarised=True,
        better="lower",
        label="TPOT",
    ),
    Column("tpot_p50_s", "float", S, "median TPOT", summarised=True, better="lower"),
    Column("tpot_p99_s", "float", S, "99th percentile TPOT", summarised=True, better="lower"),
    Column(
        "itl_p50_s",
        "float",
        S,
        "median inter-token latency (gaps between consecutive tokens; empty when tokens were not streamed)",
        summarised=True,
        better="lower",
    ),
    Column("itl_p99_s", "float", S, "99th percentile inter-token latency", summarised=True, better="lower"),
    Column("e2e_mean_s", "float", S, "mean end-to-end latency (last token - arrival)", summarised=True, better="lower"),
    Column("e2e_p99_s", "float", S, "99th percentile end-to-end latency", summarised=True, better="lower"),
    Column("queue_mean_s", "float", S, "mean time from arrival to the engine scheduling the request"),
    Column(
        "window_tail_s",
        "float",
        S,
        "window end - last token delivered to this process (bookkeeping left inside the window)",
        summarised=True,
        better="lower",
        optional=True,
    ),
    Column("good_requests", "int", "requests", "requests meeting every SLO set in the config"),
    Column(
        "goodput_req_per_s", "float", "requests/s", "good requests / window duration", summarised=True, better="higher"
    ),
    Column(
        "goodput_per_j",
        "float",
        "requests/J",
        "good requests / gross energy",
        summarised=True,
        better="higher",
        from_counter=True,
    ),
    Column(
        "j_per_good_token",
        "float",
        "J/token",
        "gross energy / output tokens of the requests meeting every SLO set in the config (docs/metrics.md); empty "
        "when the config sets no SLO or no request met it",
        summarised=True,
        better="lower",
        from_counter=True,
        optional=True,
        label="J/good token",
    ),
    CPU_STATUS,
    CPU_ENERGY,
    CPU_REASON,
    Column(
        "prefill_energy_j",
        "float",
        J,
        "energy of the cycle spent prefilling prompts (docs/energy.md, 'Phase energy')",
        summarised=True,
        better="lower",
        from_counter=True,
    ),
    Column(
        "decode_energy_j",
        "float",
        J,
        "energy of the cycle spent decoding tokens (docs/energy.md, 'Phase energy')",
        summarised=True,
        better="lower",
        from_counter=True,
    ),
    Column("other_energy_j", "float", J, "rest of the window: idle gaps between arrivals, batch set-up"),
    Column(
        "phase_method",
        "str",
        "",
        "how energy was split into prefill and decode: 'batches' (whole batches) or "
        "'engine steps' (continuous batching)",
        optional=True,
    ),
    Column(
        "ttft_decode_energy_corr",
        "float",
        "",
        "Pearson correlation across the cycle's requests of their prefill (TTFT) energy and decode energy",
        optional=True,
    ),
)
"""The figures metrics.cycle_metrics derives from a cycle's window, requests, idle power and phase split."""

CYCLE_TIMING = Table(
    "cycle_timing",
    Column(
        "cycle_setup_s",
        "float",
        S,
        "time before the cycle's window: its trace, the backend's preparation, the wait for a counter update",
        optional=True,
    ),
    Column(
        "cycle_collect_s",
        "float",
        S,
        "time after the cycle's window: the wait for a counter update, records, engine metrics",
        optional=True,
    ),
)
ENGINE_USE = Table(
    "engine_use",
    Column(
        "engine_id",
        "str",
        "",
        "the engine the cycle ran on (`<engine identity>-<n>`): cycles with one id ran on one loaded engine",
        optional=True,
    ),
    Column(
        "engine_start_s",
        "float",
        S,
        "seconds that engine took to start: its process, imports, weights, engine init (not in any window)",
        optional=True,
    ),
    Column(
        "engine_reused",
        "bool?",
        "",
        "true when the engine was already warm (started for an earlier sweep point or run) when this point began",
        optional=True,
    ),
)
"""Which engine a cycle ran on (gpu_ops.engines): its provenance."""

ENGINE_METRICS = Table(
    "engine_metrics",
    Column(
        "prefix_cache_hit_rate",
        "float",
        "fraction",
        "prefix-cache hits / queries (tokens) in the cycle",
        summarised=True,
        better="higher",
        optional=True,
    ),
    Column(
        "kv_cache_usage_peak",
        "float",
        "fraction",
        "highest KV-cache usage fraction seen in the cycle",
        summarised=True,
        optional=True,
    ),
    Column(
        "kv_cache_usage_mean",
        "float",
        "fraction",
        "mean KV-cache usage fraction over the cycle's engine steps",
        optional=True,
    ),
    Column(
        "kv_blocks_peak", "float", "blocks", "most KV-cache blocks in use at once (usage x total blocks)", optional=True
    ),
    Column("kv_blocks_total", "float", "blocks", "KV-cache blocks the engine allocated", optional=True),
    Column("kv_block_size", "float", "tokens", "tokens per KV-cache block", optional=True),
    Column(
        "preemptions",
        "float",
        "requests",
        "requests preempted (KV cache exhausted) in the cycle",
        summarised=True,
        better="lower",
        optional=True,
    ),
    Column(
        "spec_decode_acceptance_rate",
        "float",
        "fraction",
        "accepted / proposed draft tokens in the cycle",
        summarised=True,
        better="higher",
        optional=True,
    ),
)
"""Engine metrics: a column in every backend's cycles table; empty where a backend does not report it."""

STEADY_STATE = Table(
    "steady_state",
    Column(
        "steady_start_s",
        "float",
        S,
        "steady state start (run clock): the running batch first reached max_num_seqs; empty without one",
        optional=True,
    ),
    Column(
        "steady_end_s",
        "float",
        S,
        "steady state end (run clock): the batch started to drain (running < max_num_seqs, none waiting)",
        optional=True,
    ),
    Column("steady_duration_s", "float", S, "steady state length", summarised=True, optional=True),
    Column(
        "steady_output_tokens", "float", "tokens", "tokens generated in the steady state (engine steps)", optional=True
    ),
    Column(
        "steady_energy_j",
        "float",
        J,
        "GPU energy of the steady state: the power timeline over it, scaled to the cycle's counter energy",
        from_counter=True,
        optional=True,
    ),
    Column(
        "steady_j_per_token",
        "float",
        "J/token",
        "steady-state energy / steady-state tokens: a serving run's ranked J/token (docs/metrics.md)",
        summarised=True,
        better="lower",
        from_counter=True,
        optional=True,
        label="steady J/token",
    ),
    Column(
        "batch_fill",
        "float",
        "fraction",
        "mean running requests / max_num_seqs over the steady state (time-weighted by engine step)",
        summarised=True,
        better="higher",
        optional=True,
    ),
    Column(
        "cycle_batch_fill",
        "float",
        "fraction",
        "mean running requests / max_num_seqs over the whole cycle window; empty for whole-batch backends",
        summarised=True,
        better="higher",
        optional=True,
    ),
)
"""gpu_ops.steady.steady_state: a continuous-batching cycle's steady state, as ML.ENERGY defines it."""

CYCLES = Table(
    "cycles",
    CYCLE_KEY,
    RUN_IDENTITY,
    POINT_SETTINGS,
    RUN_GPUS,
    CYCLE_WINDOW,
    CYCLE_METRICS,
    CYCLE_TIMING,
    ENGINE_USE,
    ENGINE_METRICS,
    STEADY_STATE,
    record="CycleRow",
)

# -- requests ---------------------------------------------------------------------------------------------------
REQUEST_METRICS = Table(
    "request_metrics",
    Column("request_id", "int", "", "request index within the trace"),
    Column("prompt_tokens", "int", "tokens", "prompt length"),
    Column("output_tokens", "int", "tokens", "tokens generated for the request"),
    Column("arrival_s", "float", S, "when the request was sent (open loop: its scheduled arrival), cycle clock"),
    Column("scheduled_s", "float", S, "when the engine started work on it, cycle clock"),
    Column(
        "tokenize_s",
        "float",
        S,
        "tokenising the prompt inside the window (tokenize_in_window); empty when prompts were token ids",
        optional=True,
    ),
    Column("queue_s", "float", S, "scheduled - arrival - tokenize: waiting for the engine"),
    Column(
        "prefill_s",
        "float",
        S,
        "scheduled -> the engine's first token: the prefill (empty when not observed)",
        optional=True,
    ),
    Column(
        "first_token_delivery_s",
        "float",
        S,
        "the engine's first token -> its arrival here (streamed vLLM); empty when the backend cannot tell them apart",
        optional=True,
    ),
    Column("ttft_s", "float", S, "first token - arrival"),
    Column("tpot_s", "float", S, "(E2E - TTFT) / (output tokens - 1), for output tokens > 1"),
    Column("e2e_s", "float", S, "last token - arrival"),
    Column("itl_s", "list[float]", S, "gaps between consecutive output tokens"),
    Column("batch_id", "int", "", "batch the request ran in (whole-batch strategies; -1 with continuous batching)"),
    Column("first_token_s", "float", S, "first token time on the run clock"),
    Column("last_token_s", "float", S, "last token time on the run clock"),
    Column(
        "delivered_s",
        "float",
        S,
        "when the request's last token reached this process (offline vLLM: when generate returned), run clock",
        optional=True,
    ),
    Column(
        "first_token_engine_s",
        "float",
        S,
        "when the engine produced the first token, by its own stats (vLLM), run clock",
        optional=True,
    ),
    Column("prefill_end_s", "float", S, "first token of the request's batch: end of its prefill, run clock"),
)
"""What metrics.request_metrics derives from a backend's RequestRecord."""
REQUEST_ENERGY = Table(
    "request_energy",
    Column(
        "prefill_energy_j",
        "float",
        J,
        "the request's share of its step's or batch's prefill energy (docs/energy.md, 'Phase energy')",
        optional=True,
    ),
    Column(
        "decode_energy_j",
        "float",
        J,
        "the request's share of the decode energy of the steps that generated its "
        "tokens (docs/energy.md, 'Phase energy')",
        optional=True,
    ),
    Column(
        "energy_j",
        "float",
        J,
        "the request's share of its cycle window's counter energy, by the token-steps it occupied (prefill tokens, "
        "decode steps); a cycle's requests sum to its energy (docs/energy.md, 'Per-request energy')",
        optional=True,
        label="request energy",
    ),
)
REQUESTS = Table("requests", REQUEST_METRICS, REQUEST_ENERGY, CYCLE_KEY, record="RequestRow")

# -- engine steps, power timeline -------------------------------------------------------------------------------
ENGINE_STEP = Table(
    "engine_step",
    Column("t_s", "float", S, "when the engine core finished the step, run clock"),
    Column(
        "prompt_tokens",
        "int",
        "tokens",
        "prompt tokens computed in this engine step (prefix-cache hits excluded) for requests whose prefill ended here",
    ),
    Column("first_tokens", "int", "requests", "requests that got their first token in this engine step"),
    Column("decode_tokens", "int", "tokens", "tokens decoded in this engine step, first tokens excluded"),
    Column("kv_usage", "float", "fraction", "KV-cache blocks in use after this engine step"),
    Column("running", "int", "requests", "requests running in this engine step"),
    Column("waiting", "int", "requests", "requests waiting for the scheduler at this engine step"),
)
"""One engine step as the backend reports it (gpu_ops.backends.EngineStep)."""
STEPS = Table("steps", ENGINE_STEP, CYCLE_KEY, record="StepRow")

TIMELINE = Table(
    "timeline",
    Column("t_s", "float", S, "sample time on the run clock"),
    Column("device", "str", "", "GPU label within the run (gpu0, gpu1, ...)"),
    Column("power_w", "float", W, "instantaneous power sample"),
    Column("temp_c", "float", "°C", "GPU temperature sample", optional=True),
    Column("sm_clock_mhz", "float", "MHz", "SM clock sample", optional=True),
    replace(THROTTLE, meaning="NVML clock-event reasons at this sample (0x1 = idle)"),
    record="PowerSample",
)

# -- experiment, sweep points -----------------------------------------------------------------------------------
EXPERIMENT = Table(
    "experiment",
    Column("name", "str", "", "experiment name from its YAML file"),
    RUN_IDENTITY,
    Column(
        "config_hash", "str", "", "the experiment's hash (`experiment_hash`): of its resolved config, all sweep points"
    ),
    Column("config_json", "str", "", "the fully resolved experiment config as JSON"),
    Column("schema_version", "int", "", "result-folder schema version"),
    Column("package_version", "str", "", "llm-energy-measure version that measured", optional=True),
    Column("started_at", "str", "UTC", "when the run took its devices (per-GPU locks held), ISO 8601", optional=True),
    Column("finished_at", "str", "UTC", "when the run was done with its devices, ISO 8601", optional=True),
    IDLE_POWER,
    Column("idle_before_w", "float", W, "idle GPU power before the first cycle"),
    Column("idle_after_w", "float", W, "idle GPU power after the last cycle"),
    Column(
        "idle_settle_s",
        "float",
        S,
        "seconds the GPUs took to return to the idle-before power after the run (empty: not waited or not back)",
        optional=True,
    ),
    Column(
        "idle_drift",
        "float",
        "fraction",
        "idle-after / idle-before - 1; beyond ±0.10 the two baselines were not taken in the same state (a warning)",
        optional=True,
    ),
    replace(
        CROSS_CHECK_TOLERANCE,
        meaning="the config's fixed counter vs timeline tolerance; empty: each window's "
        "length-dependent default (docs/energy.md)",
    ),
    Column(
        "fingerprint_json",
        "str",
        "",
        "environment fingerprint: driver, CUDA, library versions, GPU names, hashed host and GPU UUIDs",
    ),
    FINGERPRINT_HASH,
    Column("meter_json", "str", "", "energy meter set-up: sources, sampling rate, counter update period, attribution"),
    record="ExperimentRow",
)

SWEEP_POINTS = Table(
    "sweep_points",
    SWEEP_POINT,
    Column(
        "status",
        "str",
        "",
        "'measured', or 'unavailable' when this machine lacks an optional kernel or package the point needs",
        optional=True,
    ),
    Column(
        "unavailable_reason", "str", "", "why the sweep point could not run here (then it has no cycles)", optional=True
    ),
    Column("overrides_json", "str", "", "sweep values that define this sweep point, as JSON"),
    Column("config_json", "str", "", "the sweep point's fully resolved config as JSON"),
    Column("non_defaults_json", "str", "", "config fields that differ from the defaults, as JSON"),
    POINT_CONFIG_HASH,
    Column(
        "trace_hash",
        "str",
        "",
        "hash of the request trace (prompt token ids, arrival offsets, token limits); equal hashes = same workload",
        optional=True,
    ),
    Column(
        "model_reused",
        "bool?",
        "",
        "true when the point ran on the model or engine already loaded for the previous point",
        optional=True,
    ),
    Column(
        "warmup_s",
        "float",
        S,
        "the sweep point's warm-up window (compilation, CUDA graphs, first batch); empty when none ran",
        optional=True,
    ),
    GPU_SECONDS,
    record="SweepPointRow",
    free_prefix="backend_",
    free_meaning="backend-specific load detail (e.g. device, mode, engine arguments):",
)

RESULT_TABLES = {t.name: t for t in (EXPERIMENT, SWEEP_POINTS, CYCLES, REQUESTS, WINDOWS, TIMELINE, STEPS)}
"""The tables of a result folder, by file name."""

# -- statistics, leaderboard, provenance -------------------------------------------------------------------------
SUMMARISED = CYCLES.where(summarised=True)
POOLED_OF = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_s", "e2e": "e2e_s"}
"""Request latencies whose percentiles are taken over the pooled requests of all cycles of a sweep point."""
POOLED_QUANTILES = (50, 90, 99)
POOLED_LATENCY = Table(
    "pooled_latency",
    *(
        Column(
            f"{m}_p{q}_pooled{end}_s",
            "float",
            S,
            f"{meaning} {REQUEST_METRICS[source].meaning}",
            better=None if end else "lower",
            optional=True,
            label="" if end else f"{m.upper()} p{q}",
        )
        for m, source in POOLED_OF.items()
        for q in POOLED_QUANTILES
        for end, meaning in (
            ("", f"{q}th percentile (numpy's linear interpolation, as vLLM's benchmark) over all cycles' requests of:"),
            ("_lo", f"lower end of the 95 % bootstrap interval of the pooled {q}th percentile of:"),
            ("_hi", f"upper end of the 95 % bootstrap interval of the pooled {q}th percentile of:"),
        )
    ),
)
"""gpu_ops.stats.pooled_latency: percentiles over every request of a sweep point, with exact bootstrap intervals."""
STATISTICS = Table(
    "statistics",
    SWEEP_POINT,
    Column("n_cycles", "int", "cycles", "cycles aggregated in this row", label="cycles"),
    MEASURED,
    POINT_SETTINGS,
    GPU_COUNT,
    replace(
        ENERGY_STATUS,
        meaning="'unmeasured' when any cycle of the sweep point is (then the energy statistics are "
        "empty), else 'measured'",
    ),
    UNMEASURED_REASON,
    *(statistic(m, kind) for m in SUMMARISED for kind in STATISTICS_OF),
    POOLED_LATENCY,
    Column(
        "window_min_s",
        "float",
        S,
        "shortest ranked window over the cycles: a serving run's steady state, else its cycle window; empty when a "
        "serving cycle had no steady state",
        optional=True,
    ),
    GPU_SECONDS,
    record="PointStatistics",
)
"""One row per sweep point (gpu_ops.stats.sweep_point_statistics; summary.json's `sweep_points`)."""

RAW_PROVENANCE = Table(
    "raw_provenance",
    Column("raw_run_id", "str", "", "Dagster run that materialized the raw partition"),
    Column("raw_storage_id", "int?", "", "event-log storage id of that materialization"),
    Column("raw_data_version", "str", "", "data version (content hash) of the raw partition"),
    Column("raw_code_version", "str", "", "code version of the raw asset"),
)
STATS_CODE_VERSION = Column("stats_code_version", "str", "", "code version of the statistics that computed the row")
SUBMITTER = Column(
    "submitter",
    "str",
    "",
    "who the raw data came from: the signer of an approved upload, 'local' for the platform's own runs",
)
# -- the three config hashes (docs/platform.md, "One config identity") ---------------------------------------------
FILE_SHA = Column(
    "file_sha",
    "str",
    "",
    "sha256 (16 hex digits) of the experiment file's bytes as submitted (run tag lem/file_sha); empty when unknown",
)
EXPERIMENT_HASH = Column(
    "experiment_hash", "str", "", "hash of the whole resolved experiment, all sweep points (experiment.config_hash)"
)
SWEEP_POINT_HASH = Column(
    "sweep_point_hash", "str", "", "hash of the sweep point's resolved config (sweep_points.config_hash)"
)
CONFIG_IDENTITY = Table("config_identity", FILE_SHA, EXPERIMENT_HASH, SWEEP_POINT_HASH)
"""File bytes -> whole experiment -> one sweep point: each hash identifies less text and more precisely."""
STATISTICS_PROVENANCE = Table(
    "statistics_provenance",
    PARTITION_KEY,
    EXPERIMENT_KEY,
    FINGERPRINT_HASH,
    Column("experiment_name", "str", "", "experiment name"),
    FILE_SHA,
    EXPERIMENT_HASH,
    STATS_CODE_VERSION,
    RAW_PROVENANCE,
    SUBMITTER,
)
"""Where a statistics row came from: added to the statistics of one raw partition (gpu_ops.stats.with_provenance)."""
STATISTICS_DRIFT = Table(
    "statistics_drift",
    Column(
        "drift",
        "bool?",
        "",
        "true when the re-measured headline figure (J/token, else tokens/s) moved outside the combined 95 % interval "
        "of the stored and the new measurement (docs/metrics.md, 'Drift'); empty on a first measurement or "
        "without intervals",
        optional=True,
    ),
    Column("drift_detail", "str", "", "the comparison behind `drift`: old and new figure, move, interval"),
    Column(
        "drift_previous_run_id",
        "str",
        "",
        "raw run of the statistics the new measurement was compared with",
        optional=True,
    ),
)
"""gpu_ops.drift.with_drift: a re-measured partition's statistics against the ones stored before."""
PUBLISHED_STATISTICS = Table(
    "statistics", STATISTICS, STATISTICS_PROVENANCE, STATISTICS_DRIFT, record="PublishedStatistics"
)
"""The platform's `cycle_statistics` and the dataset's `statistics` table."""

LEADERBOARD_PROVENANCE = Table(
    "leaderboard_provenance",
    PARTITION_KEY,
    RAW_PROVENANCE,
    SUBMITTER,
    STATS_CODE_VERSION,
    EXPERIMENT_HASH,
    SWEEP_POINT_HASH,
    FINGERPRINT_HASH,
)
"""The provenance every leaderboard row carries: a row without all of it fails a blocking check (`file_sha` is
beside it: a result uploaded without its file has none)."""
HEADLINE_CV = Column(
    "cv",
    "float",
    "",
    "coefficient of variation over cycles of the ranked J/token (steady state for a serving run), or of tokens/s "
    "when energy is unmeasured",
    label="CV",
)
UNSTABLE = Column(
    "unstable",
    "bool?",
    "",
    "true when the CV exceeds the ranking rules' max_cv (gpu_ops.ranking): the row is not ranked; "
    "empty with a single cycle",
)
RANK_BASIS = Column(
    "rank_basis",
    "str",
    "",
    "what the ranked J/token is taken over: 'steady state' (serving runs, continuous batching) or 'cycle window' "
    "(offline batches)",
)
RANKED_J_PER_TOKEN = Column(
    "ranked_j_per_token_mean",
    "float",
    "J/token",
    "the J/token the row is ranked by: steady_j_per_token_mean for a serving run, else j_per_token_mean",
    better="lower",
    from_counter=True,
    label="ranked J/token",
)
RANKED_J_PER_TOKEN_CI = replace(
    RANKED_J_PER_TOKEN,
    name="ranked_j_per_token_ci95",
    meaning="half-width of the 95 % confidence interval (Student t) of ranked_j_per_token_mean",
    better=None,
    label="",
)
RANKING = Table(
    "ranking",
    Column("ranked", "bool", "", "true when the row meets every ranking rule (docs/methodology.md); else not ranked"),
    Column(
        "not_ranked_reason",
        "str",
        "",
        "every ranking rule the row breaks, e.g. 'short window: 5 s (< 20 s)'; empty when ranked",
    ),
    Column(
        "rank_label",
        "str",
        "",
        "the J/token rank as shown: '3', '=3' when rows share the rank band, empty when not ranked",
        label="rank",
    ),
    Column(
        "rank_tied", "bool?", "", "true when another row shares this row's J/token rank band; empty when not ranked"
    ),
    Column(
        "throughput_fallback_rank",
        "int?",
        "rank",
        "for a row whose energy is unmeasured: its place by tokens_per_s_mean (1 = best: higher is better) among the "
        "rows with energy unmeasured and a throughput only, in bands as the ranks (overlapping 95 % intervals tie). "
        "A fallback order, not a rank: the row stays unranked, below every ranked row. Empty when energy is measured "
        "or throughput is missing",
    ),
    Column(
        "throughput_fallback_label",
        "str",
        "",
        "the throughput fallback as shown beside the not-ranked reason: 'throughput =1 of 3' ('=' a shared band; of "
        "N: the rows with energy unmeasured and a throughput); empty when the row has none",
        label="throughput fallback",
    ),
    Column("ranking_rules", "str", "", "the thresholds the ranks were computed with (gpu_ops.ranking.RankingRules)"),
)
"""gpu_ops.ranking: whether a row is ranked, why not, its rank as shown, and the throughput fallback of a row whose
energy is unmeasured."""
RANKED = {  # rank column -> the statistic it ranks, in its column's `better` direction
    "rank_j_per_token": "ranked_j_per_token_mean",
    "rank_j_per_good_token": "j_per_good_token_mean",
    "rank_tokens_per_j": "tokens_per_j_mean",
    "rank_throughput": "tokens_per_s_mean",
    "rank_ttft": "ttft_p50_pooled_s",
}
_STAT = {c.name: c for c in STATISTICS.columns} | {c.name: c for c in (RANKED_J_PER_TOKEN,)}
CONVERSION = Table(
    "conversion",
    Column("grid_gco2e_per_kwh", "float", "gCO2e/kWh", "grid carbon intensity; empty: unknown"),
    Column("pue", "float", "", "facility power usage effectiveness the row was converted with; empty: unknown"),
    Column("price_per_kwh", "float", "currency/kWh", "price of a kWh the row was converted with; empty: unknown"),
    Column("price_per_gpu_hour", "float", "currency/GPU-hour", "price of a GPU-hour; empty: unknown"),
    Column("currency", "str", "", "currency of the prices; empty: unknown"),
    shown(
        Column(
            "gco2e_per_mtoken",
            "float",
            "gCO2e/Mtoken",
            "carbon of a million output tokens: J/token x 1e6 / 3.6e6 x PUE x grid intensity; empty when an input is "
            "unknown",
            better="lower",
            label="carbon",
        )
    ),
    Column("gco2e_per_mtoken_ci95", "float", "gCO2e/Mtoken", "95 % half-width of gco2e_per_mtoken (from J/token's)"),
    Column(
        "energy_cost_per_mtoken",
        "float",
        "currency/Mtoken",
        "energy cost of a million output tokens: kWh x PUE x price per kWh; empty when an input is unknown",
        better="lower",
    ),
    Column(
        "gpu_time_cost_per_mtoken",
        "float",
        "currency/Mtoken",
        "GPU time of a million output tokens at the measured throughput x GPUs x price per GPU-hour; empty when "
        "unknown",
        better="lower",
    ),
    shown(
        Column(
            "cost_per_mtoken",
            "float",
            "currency/Mtoken",
            "energy cost + GPU-time cost of a million output tokens; empty unless both are known",
            better="lower",
            label="cost",
        )
    ),
    Column(
        "conversion_inputs",
        "str",
        "",
        "JSON: each conversion input's value and where it was set (partition, hardware profile, instance) or "
        "'unknown', and the sources named",
        label="conversion inputs",
    ),
)
"""gpu_ops.conversions.converted: carbon and cost from measured energy, with the inputs beside them."""
SLO_METRICS = ("ttft", "itl", "tpot")
SLO_QUANTILES = (50, 99)
"""Pooled percentiles the leaderboard carries with their intervals: what a latency deadline is judged on
(gpu_ops.slo)."""
SHOWN_LATENCY = {("ttft", 50, ""), ("ttft", 99, "")}
LEADERBOARD = Table(
    "leaderboard",
    EXPERIMENT_KEY,
    shown(MODEL),
    shown(BACKEND),
    shown(HARDWARE),
    shown(STATISTICS["parallelism"]),
    shown(SWEEP_POINT),
    shown(PRECISION),
    shown(WEIGHTS),
    replace(
        GPU_COUNT,
        dtype="int?",
        meaning="GPUs the run used (0 on a CPU); empty for statistics computed before they carried it",
    ),
    STATISTICS["energy_status"],
    UNMEASURED_REASON,
    shown(RANKED_J_PER_TOKEN),
    RANKED_J_PER_TOKEN_CI,
    RANK_BASIS,
    shown(_STAT["j_per_token_mean"]),
    _STAT["j_per_token_ci95"],
    _STAT["net_j_per_token_mean"],
    shown(_STAT["tokens_per_j_mean"]),
    shown(_STAT["tokens_per_s_mean"]),
    _STAT["tokens_per_s_ci95"],
    _STAT["j_per_token_cv"],
    _STAT["tokens_per_s_cv"],
    *(
        shown(_STAT[f"{m}_p{q}_pooled_s"]) if (m, q, end) in SHOWN_LATENCY else _STAT[f"{m}_p{q}_pooled{end}_s"]
        for m in SLO_METRICS
        for q in SLO_QUANTILES
        for end in ("", "_lo", "_hi")
    ),
    shown(_STAT["tpot_mean_s_mean"]),
    _STAT["e2e_mean_s_mean"],
    shown(_STAT["avg_power_w_mean"]),
    _STAT["j_per_request_mean"],
    _STAT["goodput_req_per_s_mean"],
    _STAT["cross_check_rel_diff_mean"],
    shown(_STAT["j_per_good_token_mean"]),
    _STAT["j_per_good_token_ci95"],
    shown(BATCH_SIZE),
    shown(STATISTICS["n_cycles"]),
    STATISTICS["window_min_s"],
    _STAT["batch_fill_mean"],
    shown(GPU_SECONDS),
    HEADLINE_CV,
    UNSTABLE,
    CONVERSION,
    STATISTICS_DRIFT,
    LEADERBOARD_PROVENANCE,
    FILE_SHA,
    *(
        Column(
            rank,
            "int?",
            "rank",
            f"rank by {_STAT[stat].name} (1 = best: {_STAT[stat].better} is better), in bands: a row whose 95 % "
            "interval overlaps its band's best row shares that row's rank; empty when the row is not ranked",
        )
        for rank, stat in RANKED.items()
    ),
    RANKING,
    Column("flag", "str", "", "warning shown beside the row, e.g. 'synthetic weights'"),
    record="LeaderboardRow",
)
"""One row per sweep point and hardware over every partition (gpu_ops.leaderboard.build_leaderboard)."""

HISTORY = Table(
    "history",
    PARTITION_KEY,
    SWEEP_POINT,
    Column("measured_at", "str", "UTC", "when these statistics were materialized, ISO 8601"),
    Column("raw_run_id", "str", "", "Dagster run that measured the raw partition"),
    Column("figure", "str", "", "the headline figure: j_per_token, or tokens_per_s when energy is unmeasured"),
    Column("mean", "float", "", "its mean over cycles (J/token or tokens/s)"),
    Column("ci95", "float", "", "its 95 % t-interval half-width"),
    Column("drift", "bool?", "", "whether this measurement drifted from the one before (empty: not judged)"),
    record="HistoryRow",
)
"""Every measurement of a leaderboard row, kept by the platform (gpu_ops.drift.history_rows) and plotted on the site."""

DATASET_PROVENANCE = Table(
    "provenance",
    PARTITION_KEY,
    EXPERIMENT_KEY,
    HARDWARE,
    RAW_PROVENANCE,
    STATS_CODE_VERSION,
    FINGERPRINT_HASH,
    Column("content_hash", "str", "", "content hash of the raw result folder (hash of its files' sha256)"),
    record="PartitionProvenance",
)
"""The dataset's `provenance` table: one row per raw partition."""

# -- views: what each reader reads or shows of a table (View) ------------------------------------------------------
HEADLINE_FIGURES = View("headline_figures", CYCLES, "j_per_token", "tokens_per_s")
"""A sweep point's headline figure, in order: J/token, else tokens/s where energy is unmeasured (gpu_ops.drift and the
history's `figure`, the site's per-cycle charts, the evidence's trace)."""
RUN_SUMMARY_FIGURES = View(
    "run_summary_figures",
    STATISTICS,
    ("tokens_per_s_mean", "", "tok/s"),
    "j_per_token_mean",
    ("ttft_p50_pooled_s", "", "ms", 1000.0),  # over every request, as the site and compare show it
    ("tpot_mean_s_mean", "", "ms", 1000.0),
)
"""The figures of a run's summary (gpu_ops.summary: the terminal table and `run --json`), each with its 95 %
interval."""
STATISTICS_PREVIEW = View(
    "preview",
    PUBLISHED_STATISTICS,
    "sweep_point",
    "n_cycles",
    "tokens_per_s_mean",
    "tokens_per_s_ci95",
    "j_per_token_mean",
    "j_per_token_ci95",
)
"""The `preview` table of a `cycle_statistics` materialization (energy_assets.assets.stats)."""
LEADERBOARD_TOP_ROWS = View(
    "top_rows",
    LEADERBOARD,
    "experiment_key",
    "hardware",
    "sweep_point",
    "j_per_token_mean",
    "j_per_token_ci95",
    "tokens_per_s_mean",
    "tokens_per_s_ci95",
    "cv",
    "rank_label",
    "not_ranked_reason",
    "throughput_fallback_label",
    "raw_run_id",
)
"""The `top_rows` table of a `leaderboard` materialization (energy_assets.assets.leaderboard)."""
LEADERBOARD_TOP_MARKDOWN = View(
    "top",
    LEADERBOARD,
    "rank_label",
    ("partition_key", "partition"),
    "sweep_point",
    "ranked_j_per_token_mean",
    ("tokens_per_s_mean", "tok/s"),
    "cv",
    "weights",
    ("raw_run_id", "run"),
)
"""The headers of a `leaderboard` materialization's `top` Markdown (energy_assets.assets.leaderboard.top_markdown)."""
NOTIFIED_ROW = View(
    "notified_row",
    LEADERBOARD,
    "partition_key",
    "sweep_point",
    "experiment_key",
    "hardware",
    "j_per_token_mean",
    "tokens_per_s_mean",
    "submitter",
    "raw_run_id",
    "drift",
    "drift_detail",
)
"""The leaderboard columns a notification reads (energy_assets.sensors.notifications)."""
DEMO_LEADERBOARD = View(
    "demo_leaderboard",
    LEADERBOARD,
    "rank_label",
    "throughput_fallback_label",
    "experiment_key",
    "hardware",
    "sweep_point",
    "tokens_per_s_mean",
    "tokens_per_s_ci95",
    "ttft_p50_pooled_s",
    "cv",
    "energy_status",
    "raw_run_id",
)
"""The leaderboard as `make demo` prints it (energy_assets.ops.demo)."""

SITE_ROW = Table(
    "site_row",
    Column("id", "str", "", "the row's id (gpu_ops.site.data.row_id): names its detail page and its API file"),
    Column(
        "model_url", "str", "", "the model's page on the Hugging Face hub; empty for a built-in, local or unknown model"
    ),
)
"""What the site adds to each leaderboard row (gpu_ops.site.data.site_data) that its pages' data carry."""
SITE_BOARD = Table("site_board", LEADERBOARD, SITE_ROW)
SITE_ROW_KEY = ("id", "model", "backend", "hardware", "parallelism", "sweep_point")
"""How every view of the site's data names a row: its id and what it measured."""
SITE_EMBED = View(
    "embed",
    SITE_BOARD,
    *SITE_ROW_KEY,
    "j_per_token_mean",
    "tokens_per_j_mean",
    "tokens_per_s_mean",
    "cv",
    "unstable",
    "model_url",
)
"""What the embeddable card shows of each row (embed.html; the page holds every row, `?model=` picks one model's)."""
SITE_SLO = View(
    "slo",
    SITE_BOARD,
    *SITE_ROW_KEY,
    "j_per_token_mean",
    "j_per_token_ci95",
    "j_per_good_token_mean",
    "j_per_good_token_ci95",
    "rank_j_per_good_token",
    "goodput_req_per_s_mean",
    "tokens_per_s_mean",
    "ranked",
    "not_ranked_reason",
    *(f"{m}_p{q}_pooled{end}_s" for m in SLO_METRICS for q in SLO_QUANTILES for end in ("", "_lo", "_hi")),
)
"""What slo.html needs of each row: the pooled percentiles with their intervals, J/token, J/good token, goodput."""
SITE_HEADLINES = View("site_headlines", LEADERBOARD, "tokens_per_j_mean", "tokens_per_s_mean")
"""The site's headline metric, higher is better: tokens per joule, or output tokens/s when no row's energy is
measured (gpu_ops.site.data.headline)."""
SITE_HIDDEN = View(
    "site_hidden", LEADERBOARD, "weights", "j_per_good_token_mean", "gco2e_per_mtoken", "cost_per_mtoken"
)
"""Columns the site's column chooser starts with unticked, so the table fits a 1600 px screen: the synthetic-weights
flag beside the model already says it; J per good token has its own ranked view (slo.html); carbon and cost are on each
detail page beside their inputs. A reader ticks them back in the chooser."""
SITE_DETAIL_CYCLES = View(
    "detail_cycles",
    CYCLES,
    "cycle",
    ("duration_s", "duration"),
    ("output_tokens", "tokens", ""),
    ("gross_energy_j", "energy"),
    ("j_per_token", "J/token", ""),
    ("tokens_per_s", "tok/s", ""),
    ("avg_power_w", "power"),
    ("ttft_p50_s", "TTFT p50", "ms", 1000.0),
    ("cross_check_rel_diff", "counter vs timeline", "%", 100.0),
    ("cross_check_tolerance", "its tolerance", "%", 100.0),
    "too_short",
    ("engine_id", "engine"),
    ("engine_reused", "warm engine"),
)
"""The cycles table of a site row's detail page (gpu_ops.site.pages); a column without a stored unit shows as text."""
