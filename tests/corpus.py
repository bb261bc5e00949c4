"""A corpus of hostile inputs, generated at test time (no binary blobs in the repository): bad result folders, each a
mutation of one good folder, and bad experiment files. Each case names the fragment its refusal must contain: the
field at fault, or the check that caught it.

    build_bad_uploads(good_folder, into)   -> [Case]: one entry (folder, file or link) per case under `into`
    build_bad_configs(into)                -> [Case]: one `<name>.yaml` (or odd entry) per case under `into`
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpu_ops.results import ResultTables, content_hash_of, file_sha256, read_tables, write_tables


@dataclass(frozen=True)
class Case:
    name: str  # the entry's name in the inbox (may hold undecodable bytes, as a surrogate-escaped str)
    expect: str  # a fragment of the refusal message: the field or the check
    build: Callable[[Path], None]  # creates the entry at the given path
    inbox_only: bool = False  # refused for its name, which only an inbox cares about; the CLI may take it


# ---------------------------------------------------------------------------------------------------------- uploads
def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _put_summary(folder: Path, summary, rehash: bool = False) -> None:
    """Write summary.json; `rehash`: make content_hash match the (edited) table entries, as a careful forger would."""
    if rehash:
        summary["content_hash"] = content_hash_of(
            {n: {"rows": e["rows"], "sha256": e["sha256"]} for n, e in summary["tables"].items()}
        )
    (folder / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))


def _put_table(folder: Path, name: str, table: pa.Table) -> None:
    """Replace one table file and re-sign summary.json for it: only the table's contents are wrong."""
    pq.write_table(table, folder / f"{name}.parquet", compression="zstd")
    s = _summary(folder)
    s["tables"][name] = {"rows": table.num_rows, "sha256": file_sha256(folder / f"{name}.parquet")}
    _put_summary(folder, s, rehash=True)


class _Uploads:
    def __init__(self, good: Path):
        self.good = good
        self.tables = read_tables(good)

    def copy(self, edit: Callable[[Path], None]) -> Callable[[Path], None]:
        """A byte copy of the good folder, then `edit` on the copy."""

        def build(dest: Path) -> None:
            shutil.copytree(self.good, dest)
            edit(dest)

        return build

    def tables_edit(self, edit: Callable[[ResultTables], None]) -> Callable[[Path], None]:
        """The good tables, edited, written as llm-energy-measure writes a folder (valid checksums and content hash)."""

        def build(dest: Path) -> None:
            t = copy.deepcopy(self.tables)
            edit(t)
            write_tables(t, dest)

        return build

    def summary_edit(self, edit: Callable[[dict], object], rehash: bool = False) -> Callable[[Path], None]:
        """summary.json edited in place (what `edit` returns is ignored)."""

        def apply(dest: Path) -> None:
            s = _summary(dest)
            edit(s)
            _put_summary(dest, s, rehash)

        return self.copy(apply)


def _set_identity(t: ResultTables, column: str, value: str) -> None:
    """Claim another identity everywhere a careful forger would: experiment row, cycles and summary."""
    t.experiment[column] = value
    t.cycles[column] = value
    t.summary[column] = value


def _cycle_windows(t: ResultTables):
    return t.windows.kind == "cycle"


def _energy_times(t: ResultTables, factor_of_limit: float) -> None:
    """Gross energy = factor x power limit x duration in cycles and their windows, consistently."""
    c = t.cycles
    c["gross_energy_j"] = factor_of_limit * c.power_limit_w * c.duration_s
    c["avg_power_w"] = c.gross_energy_j / c.duration_s
    c["j_per_token"] = c.gross_energy_j / c.output_tokens
    w = _cycle_windows(t)
    energy = dict(zip(zip(c.sweep_point, c.cycle), c.gross_energy_j))
    t.windows.loc[w, "gpu_energy_j"] = [
        energy[(sp, int(n))] for sp, n in zip(t.windows[w].sweep_point, t.windows[w].cycle)
    ]
    t.windows.loc[w, "gpu_energy_by_device_j"] = [f"gpu0={j:.6f}" for j in t.windows.loc[w, "gpu_energy_j"]]


def _fingerprint_edit(t: ResultTables, edit: Callable[[dict], None]) -> None:
    fp = json.loads(t.experiment.fingerprint_json.iloc[0])
    edit(fp)
    t.experiment["fingerprint_json"] = json.dumps(fp, sort_keys=True)
    t.summary["fingerprint"] = fp


def _unicode_escape_name() -> str:
    return os.fsdecode(b"caf\xe9-result")


def _nested_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _put_table_rows(folder: Path, name: str, batch: pa.Table, repeat: int) -> None:
    """Replace one table by `batch` written `repeat` times (one row group each), re-signed: a large table from a
    small batch, without holding it in memory."""
    path = folder / f"{name}.parquet"
    with pq.ParquetWriter(path, batch.schema, compression="zstd") as writer:
        for _ in range(repeat):
            writer.write_table(batch)
    s = _summary(folder)
    s["tables"][name] = {"rows": batch.num_rows * repeat, "sha256": file_sha256(path)}
    _put_summary(folder, s, rehash=True)


def _timeline_bomb(dest: Path) -> None:
    """The issue's bomb: a 725 KB timeline whose footer says 60M rows x 3 columns (180M values, under a value
    bound of 200M), 1.2 GB once decoded."""
    n = 1_000_000
    batch = pa.table({"t_s": np.full(n, 1.0), "device": ["gpu0"] * n, "power_w": np.full(n, 250.0)})
    _put_table_rows(dest, "timeline", batch, 60)


def _string_bomb(dest: Path) -> None:
    """A timeline within every footer bound whose one dictionary string (64 KiB) repeats on each of 20k rows:
    1.3 GB of characters once expanded, from a file of a few hundred KB."""
    n = 20_000
    device = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array(["g" * (64 << 10)]))
    batch = pa.table({"t_s": np.arange(n, dtype=float), "device": device, "power_w": np.full(n, 250.0)})
    _put_table_rows(dest, "timeline", batch, 1)


def build_bad_uploads(good: Path, into: Path, only: set[str] | None = None) -> list[Case]:
    """Create every bad upload (or those named in `only`) under `into`; returns their cases (at least 40)."""
    u = _Uploads(good)

    def cycles(edit: Callable) -> Callable[[Path], None]:
        return u.tables_edit(lambda t: edit(t.cycles))

    def windows_of_cycles(column: str, value: Callable) -> Callable[[Path], None]:
        def edit(t: ResultTables) -> None:
            w = _cycle_windows(t)
            t.windows.loc[w, column] = value(t.windows.loc[w, column])

        return u.tables_edit(edit)

    cases = [
        # summary.json: shape, nesting, integrity
        Case("summary-is-a-list", "a JSON list", u.copy(lambda d: (d / "summary.json").write_text("[1, 2, 3]"))),
        Case(
            "summary-nested-10000",
            "nested 10000 levels",
            u.copy(lambda d: (d / "summary.json").write_text(_nested_json(10_000))),
        ),
        Case("tables-is-a-string", "tables is 'cycles'", u.summary_edit(lambda s: s.update(tables="cycles"))),
        Case("content-hash-missing", "content_hash is None", u.summary_edit(lambda s: s.pop("content_hash"))),
        Case(
            "content-hash-with-slash",
            "content_hash is '../../etc'",
            u.summary_edit(lambda s: s.update(content_hash="../../etc")),
        ),
        Case(
            "content-hash-wrong",
            "does not match the table checksums",
            u.summary_edit(lambda s: s.update(content_hash="0123456789abcdef")),
        ),
        Case(
            "checksums-removed",
            "tables.experiment.sha256",
            u.summary_edit(lambda s: [e.pop("sha256") for e in s["tables"].values()], rehash=False),
        ),
        Case("table-entry-missing", "tables.windows is missing", u.summary_edit(lambda s: s["tables"].pop("windows"))),
        Case("summary-not-json", "not valid JSON", u.copy(lambda d: (d / "summary.json").write_text("{not json"))),
        Case("summary-not-utf8", "not UTF-8", u.copy(lambda d: (d / "summary.json").write_bytes(b'{"a": "\xff"}'))),
        Case("summary-missing", "no summary.json", u.copy(lambda d: (d / "summary.json").unlink())),
        Case("schema-version-2", "schema_version 2", u.summary_edit(lambda s: s.update(schema_version=2))),
        Case(
            "rows-claimed-wrong",
            "summary.json says 4",
            u.summary_edit(lambda s: s["tables"]["cycles"].update(rows=4), rehash=True),
        ),
        Case(
            "summary-is-a-fifo",
            "summary.json: not a regular file",
            u.copy(lambda d: ((d / "summary.json").unlink(), os.mkfifo(d / "summary.json"))),
        ),
        # table files
        Case("table-file-missing", "windows.parquet: missing", u.copy(lambda d: (d / "windows.parquet").unlink())),
        Case(
            "table-edited-after-signing",
            "checksum differs",
            u.copy(lambda d: (d / "cycles.parquet").write_bytes((d / "cycles.parquet").read_bytes() + b"x")),
        ),
        Case(
            "table-is-a-symlink",
            "cycles.parquet: not a regular file",
            u.copy(
                lambda d: ((d / "cycles.parquet").unlink(), (d / "cycles.parquet").symlink_to(good / "cycles.parquet"))
            ),
        ),
        Case(
            "unexpected-file",
            "unexpected entries ['run.sh']",
            u.copy(lambda d: (d / "run.sh").write_text("rm -rf /\n")),
        ),
        Case("parquet-bomb-60M-rows", "60000000 rows in 60 row groups, 1144 MiB once decoded", u.copy(_timeline_bomb)),
        Case("parquet-bomb-long-string", "MiB once decoded", u.copy(_string_bomb)),
        Case(
            "two-experiment-rows",
            "must hold exactly one row",
            u.tables_edit(lambda t: setattr(t, "experiment", t.experiment.loc[[0, 0]].reset_index(drop=True))),
        ),
        Case("not-parquet", "unreadable Parquet", u.copy(lambda d: _resign(d, "requests", b"PAR1 not really"))),
        # column names and types
        Case(
            "energy-as-text",
            "column gross_energy_j is",
            cycles(lambda c: c.__setitem__("gross_energy_j", c.gross_energy_j.astype(str))),
        ),
        Case(
            "pids-as-integers",
            "column foreign_processes is int64",
            cycles(lambda c: c.__setitem__("foreign_processes", 0)),
        ),
        Case(
            "experiment-key-column-missing",
            "missing columns ['experiment_key']",
            u.tables_edit(lambda t: setattr(t, "cycles", t.cycles.drop(columns=["experiment_key"]))),
        ),
        Case(
            "unmeasured-reason-column-missing",
            "missing columns ['unmeasured_reason']",
            u.tables_edit(lambda t: setattr(t, "cycles", t.cycles.drop(columns=["unmeasured_reason"]))),
        ),
        Case("unknown-column", "['evil'] are not columns", cycles(lambda c: c.__setitem__("evil", 1.0))),
        Case("cycle-as-text", "column cycle is", cycles(lambda c: c.__setitem__("cycle", c.cycle.astype(str)))),
        # false numbers: each caught by recomputation from the raw readings or by physics
        Case(
            "j-per-token-divided-by-10",
            "j_per_token",
            cycles(lambda c: c.__setitem__("j_per_token", c.j_per_token / 10)),
        ),
        Case(
            "gross-energy-times-10",
            "gross_energy_j",
            cycles(lambda c: c.__setitem__("gross_energy_j", c.gross_energy_j * 10)),
        ),
        Case("energy-3x-power-limit", "power_within_limit", u.tables_edit(lambda t: _energy_times(t, 3.0))),
        Case("energy-infinite", "gross_energy_j", cycles(lambda c: c.__setitem__("gross_energy_j", np.inf))),
        Case("duration-zero", "duration_s", cycles(lambda c: c.__setitem__("duration_s", 0.0))),
        Case(
            "power-limit-empty-2500w",
            "power_limit_w",
            cycles(lambda c: (c.__setitem__("power_limit_w", np.nan), c.__setitem__("avg_power_w", 2500.0))),
        ),
        Case(
            "measured-without-timeline",
            "measured_energy_has_timeline",
            u.tables_edit(lambda t: setattr(t, "timeline", t.timeline.iloc[0:0])),
        ),
        Case(
            "window-missing-for-a-cycle",
            "cycles and cycle windows differ",
            u.tables_edit(
                lambda t: setattr(t, "windows", t.windows.drop(index=t.windows.index[_cycle_windows(t)][:1]))
            ),
        ),
        Case("window-energy-doubled", "gpu_energy_j", windows_of_cycles("gpu_energy_j", lambda v: v * 2)),
        Case(
            "experiment-row-says-h200",
            "experiment.hardware",
            u.tables_edit(
                lambda t: (t.experiment.__setitem__("hardware", "h200"), t.summary.__setitem__("hardware", "h200"))
            ),
        ),
        Case(
            "another-models-experiment-key",
            "experiment_key",
            u.tables_edit(lambda t: _set_identity(t, "experiment_key", "builtin-small-llama__pytorch")),
        ),
        Case(
            "hardware-dotdot", "not a valid partition slug", u.tables_edit(lambda t: _set_identity(t, "hardware", ".."))
        ),
        Case("hardware-dot", "not a valid partition slug", u.tables_edit(lambda t: _set_identity(t, "hardware", "."))),
        Case(
            "experiment-key-dotdot",
            "not a valid partition slug",
            u.tables_edit(lambda t: _set_identity(t, "experiment_key", "..")),
        ),
        Case("weights-claimed-real", "weights", u.tables_edit(lambda t: _set_identity(t, "weights", "real"))),
        Case(
            "tolerance-raised",
            "cross_check_tolerance",
            u.tables_edit(lambda t: t.experiment.__setitem__("cross_check_tolerance", 1.0)),
        ),
        Case("batch-size-claimed", "batch_size", cycles(lambda c: c.__setitem__("batch_size", 1))),
        Case(
            "output-tokens-inflated",
            "max_output_tokens",
            u.tables_edit(lambda t: t.requests.__setitem__("output_tokens", 10_000)),
        ),
        Case("ttft-halved", "ttft_s", u.tables_edit(lambda t: t.requests.__setitem__("ttft_s", t.requests.ttft_s / 2))),
        Case(
            "summary-mean-halved",
            "j_per_token_mean",
            u.tables_edit(
                lambda t: [p.update(j_per_token_mean=p["j_per_token_mean"] / 2) for p in t.summary["sweep_points"]]
            ),
        ),
        Case(
            "summary-ci-zeroed",
            "j_per_token_ci95",
            u.tables_edit(lambda t: [p.update(j_per_token_ci95=0.0) for p in t.summary["sweep_points"]]),
        ),
        Case(
            "idle-power-edited", "idle_power_w", u.tables_edit(lambda t: t.experiment.__setitem__("idle_power_w", 10.0))
        ),
        Case("net-energy-edited", "net_energy_j", cycles(lambda c: c.__setitem__("net_energy_j", c.net_energy_j * 2))),
        Case("net-energy-negative", "net_energy_non_negative", cycles(lambda c: c.__setitem__("net_energy_j", -5.0))),
        Case("energy-status-estimated", "energy_status", cycles(lambda c: c.__setitem__("energy_status", "estimated"))),
        Case(
            "unmeasured-without-reason",
            "energy_present",
            cycles(lambda c: c.__setitem__("energy_status", "unmeasured")),
        ),
        Case(
            "foreign-process-seen",
            "no_foreign_gpu_process",
            cycles(lambda c: c.__setitem__("foreign_processes", "4242")),
        ),
        Case(
            "config-json-nested",
            "nested 200 levels",
            u.tables_edit(lambda t: t.experiment.__setitem__("config_json", "[" * 200 + "]" * 200)),
        ),
        Case(
            "fingerprint-power-limit-7000",
            "power_limit_w",
            u.tables_edit(lambda t: _fingerprint_edit(t, lambda fp: fp["gpus"][0].update(power_limit_w=7000.0))),
        ),
        Case(
            "timeline-negative-power",
            "power_w",
            u.tables_edit(lambda t: t.timeline.__setitem__("power_w", -t.timeline.power_w)),
        ),
        Case(
            "cycle-row-twice",
            "appear twice",
            u.tables_edit(lambda t: setattr(t, "cycles", t.cycles.loc[[0, 0, 1, 2]].reset_index(drop=True))),
        ),
        Case(
            "sweep-point-renamed",
            "sweep_points",
            u.tables_edit(lambda t: t.sweep_points.__setitem__("sweep_point", "fastest")),
        ),
        # inbox entries that are not result folders
        Case(_unicode_escape_name(), "not printable UTF-8", u.copy(lambda d: None), inbox_only=True),
        Case("stray-file.tar", "not a folder", lambda d: d.write_bytes(b"\x1f\x8b not a result folder")),
        Case("link-to-a-folder", "not a folder", lambda d: d.symlink_to(good, target_is_directory=True)),
    ]
    return _build([c for c in cases if only is None or c.name in only], into)


def _build(cases: list[Case], into: Path) -> list[Case]:
    into.mkdir(parents=True, exist_ok=True)
    for case in cases:
        case.build(into / case.name)
    return cases


def _resign(folder: Path, name: str, data: bytes) -> None:
    (folder / f"{name}.parquet").write_bytes(data)
    s = _summary(folder)
    s["tables"][name]["sha256"] = file_sha256(folder / f"{name}.parquet")
    _put_summary(folder, s, rehash=True)


# ---------------------------------------------------------------------------------------------------------- configs
GOOD_CONFIG = "name: ok\nmodel: builtin:tiny-llama\n"
OK = "name: a\nmodel: builtin:tiny-llama\n"  # the valid head most bad configs start from


def _text(text: str | bytes) -> Callable[[Path], None]:
    data = text.encode() if isinstance(text, str) else text
    return lambda p: p.write_bytes(data)


def _alias_bomb() -> str:
    """The billion-laughs shape: 9 levels of 9 aliases each (~370 bytes)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "name: a\nmodel: builtin:tiny-llama\nprompts:\n  column: *a8\n" + "\n".join(lines) + "\n"


def build_bad_configs(into: Path) -> list[Case]:
    """Create every bad experiment file under `into`; returns the cases (at least 35)."""
    sweep_bomb = (
        OK
        + "sweep:\n"
        + "".join(
            f"  {k}: [{', '.join(str(i + 1) for i in range(200))}]\n"
            for k in ("batching.batch_size", "max_output_tokens", "max_input_tokens", "warmup_requests")
        )
    )
    cases = [
        Case("empty.yaml", "the file is empty", _text("")),
        Case("only-comments.yaml", "the file is empty", _text("# name: a\n")),
        Case("top-level-list.yaml", "must hold a mapping of fields", _text("- name: a\n- model: b\n")),
        Case("top-level-scalar.yaml", "must hold a mapping of fields", _text("just text\n")),
        Case(
            "alias.yaml",
            "YAML alias *m is not allowed",
            _text("name: a\nmodel: &m builtin:tiny-llama\nprompts: {column: *m}\n"),
        ),
        Case("alias-bomb.yaml", "YAML alias", _text(_alias_bomb())),
        Case(
            "nested-10000.yaml",
            "nested deeper than 20 levels",
            _text(OK + "sweep: " + "[" * 10_000 + "]" * 10_000 + "\n"),
        ),
        Case("duplicate-key.yaml", "line 3: duplicate key 'name' (first on line 1)", _text(OK + "name: b\n")),
        Case(
            "duplicate-nested-key.yaml",
            "duplicate key 'batch_size'",
            _text(OK + "batching:\n  batch_size: 1\n  batch_size: 2\n"),
        ),
        Case("sweep-4x200.yaml", "200 x 200 x 200 x 200 = 1600000000 sweep points exceed the limit", _text(sweep_bomb)),
        Case("sweep-1001.yaml", "1001 sweep points exceed", _text(OK + f"sweep: {{seed: {list(range(1001))}}}\n")),
        Case("unknown-key.yaml", "batchsize: unknown key; did you mean 'batching'?", _text(OK + "batchsize: 4\n")),
        Case(
            "unknown-nested-key.yaml",
            "batching.batch_sise: unknown key; did you mean 'batch_size'?",
            _text(OK + "batching: {batch_sise: 4}\n"),
        ),
        Case(
            "python-tag.yaml", "YAML tag not allowed", _text("name: a\nmodel: !!python/object/apply:os.system ['id']\n")
        ),
        Case("bad-syntax.yaml", "invalid YAML", _text("name: a\nmodel: [unclosed\n")),
        Case("latin1.yaml", "not UTF-8", _text(b"name: caf\xe9\nmodel: builtin:tiny-llama\n")),
        Case("binary.yaml", "not UTF-8", _text(bytes(range(256)) * 4)),
        Case("over-1mib.yaml", "exceeds the 1048576-byte limit", _text(OK + "#" + "x" * (1 << 20) + "\n")),
        Case(
            "idle-below-a-step.yaml",
            "energy.idle_baseline_s: 0.3 s is shorter than 0.5 s",
            _text(OK + "energy: {idle_baseline_s: 0.3}\n"),
        ),
        Case("idle-negative.yaml", "energy.idle_baseline_s", _text(OK + "energy: {idle_baseline_s: -1}\n")),
        Case("name-dotdot.yaml", "name: String should match pattern", _text("name: '..'\nmodel: builtin:tiny-llama\n")),
        Case("hardware-dotdot.yaml", "hardware.0: String should match pattern", _text(OK + "hardware: ['..']\n")),
        Case("hardware-dot.yaml", "hardware.0: String should match pattern", _text(OK + "hardware: ['.']\n")),
        Case("hardware-pipe.yaml", "hardware.0: String should match pattern", _text(OK + "hardware: ['h100|x']\n")),
        Case("unknown-builtin.yaml", "unknown builtin model", _text("name: a\nmodel: builtin:giant\n")),
        Case("missing-model-folder.yaml", "no such folder", _text("name: a\nmodel: ./no/such/model\n")),
        Case(
            "batch-size-negative.yaml",
            "batching.batch_size: Input should be greater than or equal to 1",
            _text(OK + "batching: {batch_size: -1}\n"),
        ),
        Case("cycles-zero.yaml", "cycles: Input should be greater than or equal to 1", _text(OK + "cycles: 0\n")),
        Case(
            "backend-unknown.yaml",
            "backend: Input should be 'pytorch', 'vllm' or 'tensorrt'",
            _text(OK + "backend: onnx\n"),
        ),
        Case("sweep-run-field.yaml", "sweep.model: fixed for the whole run", _text(OK + "sweep: {model: [a, b]}\n")),
        Case(
            "sweep-unknown-field.yaml",
            "sweep.batching.bogus: unknown field",
            _text(OK + "sweep: {batching.bogus: [1]}\n"),
        ),
        Case("sweep-empty-axis.yaml", "sweep.precision: empty list", _text(OK + "sweep: {precision: []}\n")),
        Case(
            "min-above-max.yaml",
            "min_output_tokens (64) exceeds max_output_tokens (32)",
            _text(OK + "min_output_tokens: 64\nmax_output_tokens: 32\n"),
        ),
        Case(
            "poisson-without-rate.yaml",
            "traffic.mode 'poisson' needs traffic.rate",
            _text(OK + "traffic: {mode: poisson}\n"),
        ),
        Case("precision-fp8.yaml", "precision: Input should be", _text(OK + "precision: fp8\n")),
        Case(
            "vllm-block-on-pytorch.yaml",
            "a 'vllm:' block is set but backend is 'pytorch'",
            _text(OK + "vllm: {max_num_seqs: 8}\n"),
        ),
        Case("gpus-twice.yaml", "gpus lists a GPU twice", _text(OK + "gpus: [0, 0]\n")),
        Case("schedule-at-25h.yaml", "schedule.at must be a time of day", _text(OK + "schedule: {at: '25:00'}\n")),
        Case(
            "huge-model-string.yaml",
            "model: String should have at most 512 characters",
            _text("name: a\nmodel: " + "x" * 100_000 + "\n"),
        ),
        Case("long-key.yaml", "unknown key", _text(OK + "k" * 1000 + ": 1\n")),
        Case("over-long-key.yaml", "invalid YAML", _text(OK + "k" * 100_000 + ": 1\n")),
        Case("link-to-dev-zero.yaml", "not a regular file", lambda p: p.symlink_to("/dev/zero")),
        Case("fifo.yaml", "not a regular file", lambda p: os.mkfifo(p)),
        Case("folder.yaml", "not a regular file", lambda p: p.mkdir()),
        Case(os.fsdecode(b"caf\xe9.yaml"), "the file name is not printable UTF-8", _text(GOOD_CONFIG), inbox_only=True),
    ]
    return _build(cases, into)
