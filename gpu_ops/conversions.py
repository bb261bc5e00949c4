"""Carbon and cost from measured energy, with every input explicit.

Inputs: grid intensity (gCO2e/kWh), PUE, price per kWh, price per GPU-hour (and the currency). Each is set for the
whole instance, per hardware profile, or per partition (one run's raw data), in one YAML file; the most specific
setting wins, field by field. An input set nowhere is unknown: the figures that need it are empty and say
"unknown", never computed with an assumed value (codecarbon#1316 is the complaint this answers). Each leaderboard row
carries the values it was converted with and where each came from (`conversion_inputs`), beside the figures.

    instance: {grid_gco2e_per_kwh: 380, pue: 1.2}
    hardware: {h100-80gb-hbm3: {price_per_gpu_hour: 2.5, currency: USD}}
    partitions: {"tiny__vllm|h100-80gb-hbm3": {grid_gco2e_per_kwh: 50, source: "on-site PPA, 2026"}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpu_ops.errors import ConfigError, excerpt

J_PER_KWH = 3.6e6
PER_TOKENS = 1e6
"""Converted figures are per million output tokens."""
MAX_FILE_BYTES = 256 << 10
INPUTS = ("grid_gco2e_per_kwh", "pue", "price_per_kwh", "price_per_gpu_hour", "currency")
UNKNOWN = "unknown"


class ConversionInputs(BaseModel):
    """One level's inputs; a field left out is not set at this level.

    Attributes:
        grid_gco2e_per_kwh: carbon intensity of the electricity, grams CO2-equivalent per kWh (e.g. from
            ElectricityMaps for the site and period).
        pue: power usage effectiveness of the facility (total facility energy / IT energy), >= 1.
        price_per_kwh: price of one kWh of facility energy.
        price_per_gpu_hour: price of one GPU for one hour (cloud rental or amortised ownership).
        currency: the currency of both prices (shown beside the costs).
        source: where the figures come from, shown with them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    grid_gco2e_per_kwh: Annotated[float, Field(ge=0, le=5000)] | None = None
    pue: Annotated[float, Field(ge=1, le=10)] | None = None
    price_per_kwh: Annotated[float, Field(ge=0, le=1000)] | None = None
    price_per_gpu_hour: Annotated[float, Field(ge=0, le=10_000)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z$€£¥]{1,8}$")] | None = None
    source: Annotated[str, Field(max_length=300)] | None = None


class Conversions(BaseModel):
    """The conversions file: instance-wide inputs, per hardware profile, per partition (most specific wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    instance: ConversionInputs = ConversionInputs()
    hardware: dict[Annotated[str, Field(max_length=130)], ConversionInputs] = {}
    partitions: dict[Annotated[str, Field(max_length=300)], ConversionInputs] = {}

    def resolve(self, partition_key: str, hardware: str) -> dict[str, tuple[object, str]]:
        """Each input's value and where it was set ('partition', 'hardware <slug>', 'instance'), or (None,
        'unknown')."""
        levels = (
            (self.partitions.get(partition_key), "partition"),
            (self.hardware.get(hardware), f"hardware {hardware}"),
            (self.instance, "instance"),
        )
        out: dict[str, tuple[object, str]] = {}
        for name in INPUTS:
            out[name] = next(
                ((getattr(lvl, name), by) for lvl, by in levels if lvl is not None and getattr(lvl, name) is not None),
                (None, UNKNOWN),
            )
        return out


NO_CONVERSIONS = Conversions()


def load_conversions(path: Path | None) -> Conversions:
    """The conversions file at `path`; none (None or a missing file): every input unknown. A bad file is a
    ConfigError naming the file, the field and the fix."""
    if path is None or not Path(path).exists():
        return NO_CONVERSIONS
    path = Path(path)
    text = path.read_bytes()
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes; keep the conversions file small")
    try:
        data = yaml.safe_load(text) or {}
        return Conversions.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML ({excerpt(str(exc), bare=True)}); fix the conversions file") from None
    except ValidationError as exc:
        e = exc.errors()[0]
        field = ".".join(str(p) for p in e["loc"])
        raise ConfigError(
            f"{path}: {field}: {e['msg']} (got {excerpt(e.get('input'), bare=True)}); fix the conversions file "
            "(docs/metrics.md, 'Carbon and cost')"
        ) from None


def converted(board: pd.DataFrame, conversions: Conversions) -> pd.DataFrame:
    """The carbon and cost columns of each leaderboard row (schema.CONVERSION) from its measured J/token and
    throughput and the inputs that apply to it; a figure whose input is unknown is empty."""
    rows = []
    for r in board.itertuples(index=False):
        got = conversions.resolve(str(r.partition_key), str(r.hardware))
        value = {k: v for k, (v, _) in got.items()}
        kwh_per_mtok = _times(_f(r.j_per_token_mean), PER_TOKENS / J_PER_KWH)
        kwh_ci = _times(_f(r.j_per_token_ci95), PER_TOKENS / J_PER_KWH)
        facility = value["pue"]
        grid, per_kwh, per_hour = value["grid_gco2e_per_kwh"], value["price_per_kwh"], value["price_per_gpu_hour"]
        tps, gpus = _f(r.tokens_per_s_mean), _f(r.gpu_count)
        gpu_hours = PER_TOKENS / tps / 3600 * gpus if tps and gpus else None
        energy_cost = _times(kwh_per_mtok, facility, per_kwh)
        time_cost = _times(gpu_hours, per_hour)
        rows.append(
            {
                **value,
                "gco2e_per_mtoken": _times(kwh_per_mtok, facility, grid),
                "gco2e_per_mtoken_ci95": _times(kwh_ci, facility, grid),
                "energy_cost_per_mtoken": energy_cost,
                "gpu_time_cost_per_mtoken": time_cost,
                "cost_per_mtoken": None if energy_cost is None or time_cost is None else energy_cost + time_cost,
                "conversion_inputs": json.dumps(
                    {k: {"value": v, "set_by": by} for k, (v, by) in got.items()}
                    | {"source": [s for s in _sources(conversions, r) if s]},
                    sort_keys=True,
                ),
            }
        )
    return pd.DataFrame(rows, index=board.index)


def inputs_text(conversion_inputs: str) -> str:
    """A row's inputs in one line, for the site and terminal: '380 gCO2e/kWh (instance), PUE unknown, ...'."""
    got = json.loads(conversion_inputs) if conversion_inputs else {}
    money = (got.get("currency") or {}).get("value") or "price units"

    def one(name: str, fmt: str) -> str:
        entry = got.get(name) or {}
        v = entry.get("value")
        return fmt.format("unknown") if v is None else f"{fmt.format(f'{v:g}')} ({entry.get('set_by')})"

    return ", ".join(
        (
            one("grid_gco2e_per_kwh", "{} gCO2e/kWh"),
            one("pue", "PUE {}"),
            one("price_per_kwh", "{} " + money + "/kWh"),
            one("price_per_gpu_hour", "{} " + money + "/GPU-hour"),
        )
    )


def _sources(conversions: Conversions, r) -> list[str | None]:
    lvls = (conversions.partitions.get(str(r.partition_key)), conversions.hardware.get(str(r.hardware)))
    return [lvl.source for lvl in (*lvls, conversions.instance) if lvl is not None]


def _f(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def _times(*factors: float | None) -> float | None:
    """The product, or None when any factor is unknown."""
    return None if any(f is None for f in factors) else float(np.prod(factors))
